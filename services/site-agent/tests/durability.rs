//! SIGKILL durability: run the real binary, ingest in batches, kill it with
//! SIGKILL mid-ingest, restart it on the same data directory, and check that
//! every acknowledged record is there (re-sending it is UNCHANGED, not NEW).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::*;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;

/// Starts the agent binary configured through env vars; returns it and its gRPC URL.
fn spawn_agent(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lacnet-site-agent"))
        .env_clear()
        .env("LACNET_AGENT_LISTEN", "127.0.0.1:0")
        .env("LACNET_AGENT_ADMIN_LISTEN", "127.0.0.1:0")
        .env("LACNET_AGENT_DATA_DIR", dir.join("data"))
        .env(
            "LACNET_AGENT_KEY_FILES",
            format!("k1={}", dir.join("k1").display()),
        )
        .env("LACNET_AGENT_SITE_CODE", THURROCK)
        .env("LACNET_AGENT_TLS_CA", dir.join("ca.pem"))
        .env("LACNET_AGENT_TLS_CERT", dir.join("agent.crt"))
        .env("LACNET_AGENT_TLS_KEY", dir.join("agent.key"))
        .env("LACNET_AGENT_JSON_LOGS", "true")
        .env("LACNET_AGENT_CACHE_MB", "16")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining so the child never blocks on a full pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if line.contains("\"listening\"") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the agent never said it was listening");
    let grpc = line
        .split("\"grpc\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (child, format!("https://{grpc}"))
}

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

    let (mut child, url) = spawn_agent(dir.path());
    wait_serving(&url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let channel = lacnet_tls::connect(&url, &pki.council, "agent.lacnet")
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
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    ingest.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "only {} batches acknowledged",
        acked.len()
    );

    let (mut child, url) = spawn_agent(dir.path());
    wait_serving(&url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    let count = status(&mut c).await.record_count;
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
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful stop failed: {exit:?}");
}
