//! SIGKILL on the update and re-key write paths. Records written under key
//! `k1` are updated after a rotation to `k2` (each update re-keys its record:
//! a new copy under the new pseudonym, the old segment rewritten without the
//! old one) while the agent is killed mid-stream, several times. After each
//! restart every acknowledged update must be there with its new content, and
//! no record may exist twice (once under each key), which is what a crash
//! between writing the new copy and rewriting the old segment would leave.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;
use tonic::transport::Channel;

const BATCHES: usize = 60;
const PER_BATCH: usize = 100;

fn batch(b: usize, updated: bool) -> Vec<site::Record> {
    (0..PER_BATCH)
        .map(|i| {
            let mut r = rec(&format!("RK-{b}-{i}"), "", "2025-01-10");
            if updated {
                r.outcomes = vec![pb::Outcome::Volunteering as i32];
            }
            r
        })
        .collect()
}

async fn client(p: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    wait_serving(&p.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    SiteAgentClient::new(
        lacnet_tls::connect(&p.url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_rekeys_survive_sigkill_without_duplicates() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);
    key_file(dir.path(), "k2", 2);
    let data = dir.path().join("data");

    // Everything under k1 first.
    {
        let p = AgentProcess::spawn(dir.path(), &data, &[]);
        let mut c = client(&p, &pki).await;
        for b in 0..BATCHES {
            assert_eq!(
                upsert(&mut c, batch(b, false)).await.accepted as usize,
                PER_BATCH
            );
        }
    }
    let rotated = format!(
        "k2={},k1={}",
        dir.path().join("k2").display(),
        dir.path().join("k1").display()
    );
    let env = [("LACNET_AGENT_KEY_FILES", rotated.as_str())];

    // Rotate, update in small batches, SIGKILL part-way; three rounds.
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut next = 0;
    for round in 0..3 {
        let mut p = AgentProcess::spawn(dir.path(), &data, &env);
        let c = client(&p, &pki).await;
        let acked_w = acked.clone();
        let start = next;
        let writer = tokio::spawn(async move {
            let mut c = c;
            for b in start..BATCHES {
                match c
                    .upsert_records(site::UpsertRecordsRequest {
                        records: batch(b, true),
                    })
                    .await
                {
                    Ok(r) if r.get_ref().accepted as usize == PER_BATCH => {
                        acked_w.lock().unwrap().push(b)
                    }
                    _ => return,
                }
            }
        });
        // Kill once a few more batches are acknowledged, with the next in flight.
        let target = (start + 8 * (round + 1)).min(BATCHES);
        for _ in 0..3000 {
            if acked.lock().unwrap().len() >= target || writer.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        p.kill();
        writer.await.unwrap();
        next = acked.lock().unwrap().iter().max().map_or(0, |m| m + 1);
    }

    // Finish the updates, then check everything.
    let p = AgentProcess::spawn(dir.path(), &data, &env);
    let mut c = client(&p, &pki).await;
    // No record twice: the count is exactly the records written.
    assert_eq!(
        status(&mut operator(&p, &pki).await).await.record_count as usize,
        BATCHES * PER_BATCH
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 8,
        "only {} update batches acknowledged",
        acked.len()
    );
    for b in 0..BATCHES {
        let reply = upsert(&mut c, batch(b, true)).await;
        if acked.contains(&b) {
            assert!(
                reply
                    .verdicts
                    .iter()
                    .all(|v| v.verdict() == Verdict::AcceptedUnchanged),
                "update batch {b} was acknowledged but is not all there"
            );
        } else {
            assert!(
                reply
                    .verdicts
                    .iter()
                    .all(|v| v.verdict() != Verdict::AcceptedNew),
                "batch {b} lost a record"
            );
        }
    }
    // And still no duplicates after every record has moved to k2.
    assert_eq!(
        status(&mut operator(&p, &pki).await).await.record_count as usize,
        BATCHES * PER_BATCH
    );
    // Nothing is left under k1: a restart with k2 alone starts.
    drop(c);
    drop(p);
    let k2_only = format!("k2={}", dir.path().join("k2").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lacnet-site-agent"))
        .env_clear()
        .env("LACNET_AGENT_DATA_DIR", &data)
        .arg("retire-key")
        .arg("k1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = AgentProcess::spawn(
        dir.path(),
        &data,
        &[("LACNET_AGENT_KEY_FILES", k2_only.as_str())],
    );
    wait_serving(&p.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    assert_eq!(
        status(&mut operator(&p, &pki).await).await.record_count as usize,
        BATCHES * PER_BATCH
    );
}

/// An operator's client: status and preview need the operator role.
async fn operator(agent: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    SiteAgentClient::new(
        lacnet_tls::connect(&agent.url, &pki.operator, "agent.lacnet")
            .await
            .unwrap(),
    )
}
