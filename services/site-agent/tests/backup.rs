//! Online backup and restore, with the real binary: ingest into a running
//! agent, back it up through `lacnet-site-agent backup` while it serves, keep
//! ingesting, restore the backup into an empty directory with
//! `lacnet-site-agent restore`, start an agent on it, and get the preview and
//! status of the moment of the backup. A second backup taken in the middle of
//! concurrent ingest holds whole batches only.

use std::path::Path;
use std::process::Command;

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;
use tonic::transport::Channel;

/// Exact counts, so a single extra record changes the preview.
const EXACT: &[(&str, &str)] = &[
    ("LACNET_AGENT_POLICY_THRESHOLD", "0"),
    ("LACNET_AGENT_POLICY_ROUNDING_BASE", "1"),
    ("LACNET_AGENT_POLICY_SECONDARY", "false"),
];

const BATCH: usize = 100;

fn batch(tag: &str, b: usize) -> Vec<site::Record> {
    (0..BATCH)
        .map(|i| {
            let day = 1 + (b * BATCH + i) % 28;
            rec(&format!("{tag}-{b}-{i}"), "", &format!("2025-02-{day:02}"))
        })
        .collect()
}

/// Runs the agent binary with only a data directory, as `kubectl exec` would.
fn agent_cmd(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lacnet-site-agent"))
        .env_clear()
        .env("LACNET_AGENT_DATA_DIR", data)
        .env("LACNET_AGENT_CACHE_MB", "16")
        .args(args)
        .output()
        .unwrap()
}

/// What a preview publishes: the cells and the policy (the revision and the
/// time it was generated move with the clock).
fn content(sub: &lacnet_proto::common::v1::Submission) -> impl PartialEq + std::fmt::Debug {
    (
        sub.site_code.clone(),
        sub.period,
        sub.policy,
        sub.cells.clone(),
    )
}

async fn client(agent: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let channel = lacnet_tls::connect(&agent.url, &pki.council, "agent.lacnet")
        .await
        .unwrap();
    SiteAgentClient::new(channel)
}

fn stop(mut agent: AgentProcess) {
    agent.terminate();
    let status = agent
        .wait_for_exit(std::time::Duration::from_secs(60))
        .expect("the agent did not stop");
    assert!(status.success(), "the agent exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_restores_the_state_at_the_backup() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);
    let data = dir.path().join("data");
    let agent = AgentProcess::spawn(dir.path(), &data, EXACT);
    let mut c = client(&agent, &pki).await;

    for b in 0..3 {
        let r = upsert(&mut c, batch("A", b)).await;
        assert_eq!(r.accepted as usize, BATCH);
    }
    let before = preview(&mut operator(&agent, &pki).await, "2025-Q1").await;
    let status_before = status(&mut operator(&agent, &pki).await).await;
    assert_eq!(status_before.record_count, 3 * BATCH as u64);

    // Online: the running agent answers on its control socket.
    let b1 = dir.path().join("backups/b1");
    let out = agent_cmd(&data, &["backup", "--to", b1.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("by the running agent"), "{stdout}");
    assert!(b1.join("MANIFEST").exists());

    // Written after the backup: must not be in it.
    upsert(&mut c, batch("B", 0)).await;
    let after = preview(&mut operator(&agent, &pki).await, "2025-Q1").await;
    assert_ne!(
        cell(&before, "introductions_new"),
        cell(&after, "introductions_new"),
        "the later batch must change the preview, or the test proves nothing"
    );

    // A second backup in the middle of concurrent ingest: each batch is one
    // write job, so the copy holds whole batches.
    let channel = lacnet_tls::connect(&agent.url, &pki.council, "agent.lacnet")
        .await
        .unwrap();
    let ingest = tokio::spawn(async move {
        let mut c = SiteAgentClient::new(channel);
        for b in 0..20 {
            let r = upsert(&mut c, batch("C", b)).await;
            assert_eq!(r.accepted as usize, BATCH);
        }
    });
    let b2 = dir.path().join("backups/b2");
    let data2 = data.clone();
    let b2_path = b2.clone();
    let out = tokio::task::spawn_blocking(move || {
        agent_cmd(&data2, &["backup", "--to", b2_path.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ingest.await.unwrap();

    // The offline path refuses while the agent holds the directory, and a
    // backup never goes into a directory that holds something.
    let out = agent_cmd(&data, &["backup", "--to", b1.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    stop(agent);

    // Restore b1 into an empty directory and serve it.
    let restored = dir.path().join("restored");
    let out = agent_cmd(&restored, &["restore", "--from", b1.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("restored: "));
    // Never into a directory that holds data.
    let out = agent_cmd(&restored, &["restore", "--from", b1.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    let agent = AgentProcess::spawn(dir.path(), &restored, EXACT);
    let mut c = client(&agent, &pki).await;
    assert_eq!(
        content(&preview(&mut operator(&agent, &pki).await, "2025-Q1").await),
        content(&before)
    );
    let s = status(&mut operator(&agent, &pki).await).await;
    assert_eq!(s.record_count, status_before.record_count);
    assert_eq!(
        s.active_key_fingerprint,
        status_before.active_key_fingerprint
    );
    // The restored agent takes new writes: the later batch is NEW again.
    let r = upsert(&mut c, batch("B", 0)).await;
    assert!(
        verdicts(&r)
            .iter()
            .all(|v| *v == site::Verdict::AcceptedNew)
    );
    assert_eq!(
        content(&preview(&mut operator(&agent, &pki).await, "2025-Q1").await),
        content(&after)
    );
    stop(agent);

    // The concurrent backup: whole batches, at least those acknowledged before it.
    let restored2 = dir.path().join("restored2");
    let out = agent_cmd(&restored2, &["restore", "--from", b2.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = AgentProcess::spawn(dir.path(), &restored2, EXACT);
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let n = status(&mut operator(&agent, &pki).await).await.record_count as usize;
    assert!(
        n % BATCH == 0 && (4 * BATCH..=24 * BATCH).contains(&n),
        "{n} records: a torn batch or a lost one"
    );
    stop(agent);
}

/// An operator's client: status and preview need the operator role.
async fn operator(agent: &AgentProcess, pki: &Pki) -> SiteAgentClient<Channel> {
    SiteAgentClient::new(
        lacnet_tls::connect(&agent.url, &pki.operator, "agent.lacnet")
            .await
            .unwrap(),
    )
}
