//! Many callers at once against the real binary: 64 concurrent UpsertRecords
//! callers with erasures, previews and status calls in between, for a bounded
//! amount of work. Nothing may stall, every acknowledged record must be there
//! afterwards, and SIGTERM under the same load must end the process within
//! its drain timeout. (sled 0.34's `flush_async` racing `apply_batch` used to
//! hang every call from about 8 callers on.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;
use tonic::transport::Channel;

const CALLERS: usize = 64;
const ROUNDS: usize = 12;
const PER_BATCH: usize = 40;

fn batch(caller: usize, round: usize) -> Vec<site::Record> {
    (0..PER_BATCH)
        .map(|i| {
            let mut r = rec(&format!("C{caller}-R{round}-{i}"), "", "2025-01-10");
            r.age = Some(site::record::Age::AgeYears(20 + (i % 60) as u32));
            r
        })
        .collect()
}

/// A client as the case system (pushes records).
async fn connect(p: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    connect_as(p, &pki.council).await
}

/// A client as the operator (status, preview, erase).
async fn operator(p: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    connect_as(p, &pki.operator).await
}

async fn connect_as(p: &AgentProcess, pem: &lacnet_tls::PemBundle) -> SiteAgentClient<Channel> {
    SiteAgentClient::new(
        lacnet_tls::connect(&p.url, pem, "agent.lacnet")
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_callers_with_erasures_and_previews_never_stall() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);
    let data = dir.path().join("data");
    let mut agent = AgentProcess::spawn(
        dir.path(),
        &data,
        &[("LACNET_AGENT_DRAIN_TIMEOUT_SECS", "3")],
    );
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;

    // (caller, round) of every acknowledged batch; erased case ids.
    let acked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let erased: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        // A few connections shared by many callers, as a case system's pool would.
        let mut c = connect(&agent, &pki).await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let reply = c
                    .upsert_records(site::UpsertRecordsRequest {
                        records: batch(caller, round),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(reply.accepted as usize, PER_BATCH);
                acked.lock().unwrap().push((caller, round));
            }
        }));
    }
    for eraser in 0..4 {
        let mut c = operator(&agent, &pki).await;
        let erased = erased.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Erase a record another caller may or may not have written yet.
                let case = format!("C{}-R{round}-0", eraser * 16);
                c.erase_person(site::ErasePersonRequest {
                    identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
                        case.clone(),
                    )),
                })
                .await
                .unwrap();
                erased.lock().unwrap().push(case);
                preview(&mut c, "2025-Q1").await;
                status(&mut c).await;
            }
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    // Bounded: a stall fails here instead of hanging CI.
    tokio::time::timeout(Duration::from_secs(240), all)
        .await
        .expect("concurrent callers stalled");

    // Every acknowledged record is there: re-sending it changes nothing,
    // except the ones erased (which an erasure racing the write may have removed).
    let erased = erased.lock().unwrap().clone();
    let mut c = connect(&agent, &pki).await;
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), CALLERS * ROUNDS);
    for (caller, round) in &acked {
        let records = batch(*caller, *round);
        let reply = upsert(&mut c, records.clone()).await;
        for (r, v) in records.iter().zip(reply.verdicts.iter()) {
            if erased.contains(&r.local_case_id) {
                continue;
            }
            assert_eq!(
                v.verdict(),
                Verdict::AcceptedUnchanged,
                "{} was acknowledged but is not stored",
                r.local_case_id
            );
        }
    }
    // Erasures after all writes leave exactly the rest.
    let mut op = operator(&agent, &pki).await;
    for case in &erased {
        op.erase_person(site::ErasePersonRequest {
            identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
                case.clone(),
            )),
        })
        .await
        .unwrap();
    }
    let mut distinct = erased.clone();
    distinct.sort();
    distinct.dedup();
    let expected = (CALLERS * ROUNDS * PER_BATCH - distinct.len()) as u64;
    assert_eq!(status(&mut op).await.record_count, expected);

    // SIGTERM while 64 callers are writing: the process ends within its drain timeout.
    let mut load = Vec::new();
    for caller in 0..CALLERS {
        let mut c = connect(&agent, &pki).await;
        load.push(tokio::spawn(async move {
            for round in ROUNDS.. {
                if c.upsert_records(site::UpsertRecordsRequest {
                    records: batch(caller, round),
                })
                .await
                .is_err()
                {
                    return;
                }
            }
        }));
    }
    // Let the load reach the server before the signal.
    let mut c2 = operator(&agent, &pki).await;
    for _ in 0..200 {
        if status(&mut c2).await.record_count > expected + 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.terminate();
    let exit = agent
        .wait_for_exit(Duration::from_secs(30))
        .expect("SIGTERM under load did not end the agent");
    assert!(exit.success(), "unclean exit under load: {exit:?}");
    for t in load {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }

    // And everything it acknowledged before is still there after a restart.
    let restarted = AgentProcess::spawn(dir.path(), &data, &[]);
    wait_serving(&restarted.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = connect(&restarted, &pki).await;
    assert!(
        status(&mut operator(&restarted, &pki).await)
            .await
            .record_count
            >= expected
    );
    let reply = upsert(&mut c, batch(3, 0)).await;
    assert!(
        reply
            .verdicts
            .iter()
            .all(|v| v.verdict() == Verdict::AcceptedUnchanged)
    );
}
