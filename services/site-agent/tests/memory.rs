//! Hostile sizes: whatever the message limits allow, the agent's peak memory
//! stays within 100 MiB of its idle baseline. Measured on the real binary
//! (VmHWM, the kernel's record of the process's peak resident set).

use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::process::AgentProcess;
use lacnet_testkit::agent::*;

const LIMIT_KIB: u64 = 100 * 1024;

fn repeated_outcomes(case: &str, n: usize) -> site::Record {
    let mut r = rec(case, "", "2025-01-10");
    r.outcomes = vec![pb::Outcome::CommunityConnection as i32; n];
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_and_streams_keep_memory_bounded() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);
    let agent = AgentProcess::spawn(dir.path(), &dir.path().join("data"), &[]);
    wait_serving(&agent.url, &pki.council, "lacnet.site.v1.SiteAgent").await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url, &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    )
    .max_decoding_message_size(64 * 1024 * 1024)
    .max_encoding_message_size(64 * 1024 * 1024);
    // A little normal work first, so the baseline is a working agent's.
    upsert(&mut c, vec![rec("WARM-1", "", "2025-01-10")]).await;
    let baseline = agent.rss_kib();

    // One record repeating an outcome until the 16 MiB message limit.
    let reply = c
        .upsert_records(site::UpsertRecordsRequest {
            records: vec![repeated_outcomes("HOSTILE-1", 15_000_000)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.rejected, 1);
    let violations = reply.verdicts[0].violations.len();
    assert!(violations <= 10, "{violations} violations for one record");

    // A 30 MB stream of such records.
    let records = (0..10).map(|i| repeated_outcomes(&format!("HOSTILE-S{i}"), 3_000_000));
    let summary = c
        .stream_records(tokio_stream::iter(records))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.rejected, 10);

    // The largest batch of the longest strings the limits allow.
    let mut big = Vec::new();
    for i in 0..10_000 {
        let mut r = rec(&format!("LONG-{i}-{}", "x".repeat(1500)), "", "2025-01-10");
        r.ward_code = "W".repeat(50);
        big.push(r);
    }
    let reply = c
        .upsert_records(site::UpsertRecordsRequest { records: big })
        .await;
    assert!(reply.is_ok() || reply.unwrap_err().code() == tonic::Code::InvalidArgument);

    let peak = agent.peak_rss_kib();
    assert!(
        peak.saturating_sub(baseline) < LIMIT_KIB,
        "peak RSS {} MiB against a baseline of {} MiB",
        peak / 1024,
        baseline / 1024
    );
    // Still serving normally afterwards.
    let ok = upsert(&mut c, vec![rec("AFTER-1", "", "2025-01-10")]).await;
    assert_eq!(ok.accepted, 1);
}
