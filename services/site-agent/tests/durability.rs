//! SIGKILL durability: run the real binary, ingest in batches, kill it with
//! SIGKILL mid-ingest, restart it on the same data directory, and check that
//! every acknowledged record is there (re-sending it is UNCHANGED, not NEW).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;

fn batch(b: usize) -> Vec<site::Record> {
    (0..200)
        .map(|i| rec(&format!("K-{b}-{i}"), "", "2025-01-10"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);

    let data = dir.path().join("data");
    let mut agent = AgentProcess::spawn(dir.path(), &data, &[]);
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let channel = lacnet_tls::connect(&agent.url, &pki.council, "agent.lacnet")
        .await
        .unwrap();
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let acked_writer = acked.clone();
    let ingest = tokio::spawn(async move {
        let mut c = SiteAgentClient::new(channel);
        for b in 0.. {
            match c
                .upsert_records(site::UpsertRecordsRequest { records: batch(b) })
                .await
            {
                Ok(r) if r.get_ref().accepted == 200 => acked_writer.lock().unwrap().push(b),
                _ => return,
            }
        }
    });
    // Kill once a few batches are acknowledged, while the next is in flight.
    for _ in 0..6000 {
        if acked.lock().unwrap().len() >= 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    agent.kill(); // SIGKILL
    ingest.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "only {} batches acknowledged",
        acked.len()
    );

    let mut agent = AgentProcess::spawn(dir.path(), &data, &[]);
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    let mut op = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url, &pki.operator, "agent.lacnet")
            .await
            .unwrap(),
    );
    let count = status(&mut op).await.record_count;
    assert!(
        count >= (acked.len() * 200) as u64,
        "{count} records after restart"
    );
    for b in &acked {
        let reply = upsert(&mut c, batch(*b)).await;
        assert!(
            reply
                .verdicts
                .iter()
                .all(|v| v.verdict() == Verdict::AcceptedUnchanged),
            "batch {b} was acknowledged but is not all there"
        );
    }
    // SIGTERM: a graceful stop.
    agent.terminate();
    let exit = agent
        .wait_for_exit(Duration::from_secs(60))
        .expect("the agent did not exit after SIGTERM");
    assert!(exit.success(), "graceful stop failed: {exit:?}");
}
