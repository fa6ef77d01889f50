//! A full disk. The agent's data directory sits on a tmpfs of a few MiB;
//! ingest fills it. The failing write gets UNAVAILABLE with a clear message,
//! health fails (the in-process agent's `/healthz` answers 503), and the
//! agent does not limp on: `serve` returns an error and the binary exits
//! non-zero, for Kubernetes to restart it. sled 0.34 keeps failing once its
//! log could not be written, so recovering in place is not an option. After
//! space is freed, a restart finds every acknowledged record intact.
//!
//! Needs root to mount the tmpfs (CI runs as root). Without root it says so
//! on stderr and passes without checking anything.

use std::time::Duration;

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;
use lacnet_testkit::tmpfs::{Tmpfs, is_root};

fn batch(b: usize) -> Vec<site::Record> {
    (0..500)
        .map(|i| rec(&format!("FULL-{b}-{i}"), "", "2025-01-10"))
        .collect()
}

/// Upserts batches until one fails; returns the acknowledged batches and the failure.
async fn fill(c: &mut SiteAgentClient<tonic::transport::Channel>) -> (Vec<usize>, tonic::Status) {
    let mut acked = Vec::new();
    for b in 0..2000 {
        match c
            .upsert_records(site::UpsertRecordsRequest { records: batch(b) })
            .await
        {
            Ok(_) => acked.push(b),
            Err(status) => return (acked, status),
        }
    }
    panic!("2000 batches fitted on a tmpfs of a few MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_health_and_exits_and_keeps_what_was_acknowledged() {
    if !is_root() {
        eprintln!("disk_full: not checked: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);

    // In process: health and /healthz follow the store.
    let fs = Tmpfs::mount(&dir.path().join("mnt-a"), "6m").expect("mount a tmpfs as root");
    let keys = ring(&[("k1", &dir.path().join("k1"))]);
    let agent = TestAgent::start(&pki, options(&pki, &fs.path().join("data"), keys)).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let probe = agent.agent.clone();
    let admin_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(lacnet_server::admin::serve_with_health(
        admin,
        agent.agent.metrics().registry(),
        std::sync::Arc::new(move || probe.healthy()),
        admin_stop.clone(),
    ));
    assert!(agent.agent.healthy());
    let mut c = agent.client(&pki.council).await;
    let (acked, failure) = fill(&mut c).await;
    assert!(!acked.is_empty());
    assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
    assert!(failure.message().contains("disk"), "{}", failure.message());
    assert!(!agent.agent.healthy());
    let healthz = http_get(admin_addr, "/healthz").await;
    assert!(healthz.starts_with("HTTP/1.1 503"), "{healthz}");
    // Further writes are refused at once, not attempted.
    let again = c
        .upsert_records(site::UpsertRecordsRequest {
            records: batch(9999),
        })
        .await;
    assert!(again.is_err());
    admin_stop.cancel();
    drop(c);
    drop(agent);
    drop(fs);

    // The binary: exits non-zero on its own, and a restart with space keeps everything.
    let fs = Tmpfs::mount(&dir.path().join("mnt-b"), "6m").expect("mount a tmpfs as root");
    let data = fs.path().join("data");
    let mut p = AgentProcess::spawn(
        dir.path(),
        &data,
        &[("LACNET_AGENT_DRAIN_TIMEOUT_SECS", "2")],
    );
    wait_serving(&p.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&p.url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    let (acked, failure) = fill(&mut c).await;
    assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
    drop(c);
    let exit = p
        .wait_for_exit(Duration::from_secs(30))
        .expect("the agent kept running on a failed disk");
    assert!(
        !exit.success(),
        "exit status {exit:?} should ask for a restart"
    );
    assert!(p.logged("the store cannot write"));

    fs.resize("256m");
    let p = AgentProcess::spawn(dir.path(), &data, &[]);
    wait_serving(&p.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&p.url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    for b in &acked {
        let reply = upsert(&mut c, batch(*b)).await;
        assert!(
            reply
                .verdicts
                .iter()
                .all(|v| v.verdict() == Verdict::AcceptedUnchanged),
            "batch {b} was acknowledged before the disk filled but is gone"
        );
    }
    drop(p);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
