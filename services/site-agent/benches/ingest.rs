//! Ingest benchmark, against the real server in this process over gRPC with
//! mTLS and durable acknowledgements:
//!
//! 1. 1,000,000 new records through StreamRecords into a fresh store;
//! 2. the same records again, each changed, as updates;
//! 3. 16 concurrent UpsertRecords clients sending batches of 500 new records;
//!
//! then the RSS after ingest and after aggregating every period, and, in the
//! same run, bare sled writes of the same bytes under sequential keys and the
//! raw HMAC-SHA256 rate, so the figures can be compared as ratios.
//!
//! `cargo bench -p lacnet-site-agent --bench ingest` (set `LACNET_BENCH_RECORDS` to change the
//! count, `LACNET_BENCH_CACHE_MB` the sled page cache of both the agent and the floor).
//! Run it with `MALLOC_ARENA_MAX=2`, as the Kubernetes manifests do, to see the RSS a
//! deployed agent has; glibc's default of one arena per thread roughly doubles it.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{Agent, AgentOptions};
use lacnet_tls::Peer;
use lacnet_tls::dev::{DevCa, bundle};
use sha2::Sha256;

fn record(i: u64) -> site::Record {
    // About 1.4 introductions per person; 70% with an NHS number.
    let person = i * 5 / 7;
    let day = 1 + (i % 28) as u32;
    let month = 1 + ((i / 28) % 12) as u32;
    let year = 2024 + (i % 2) as u32;
    site::Record {
        local_case_id: format!("BENCH-{i:08}"),
        nhs_number: if person % 10 < 7 {
            lacnet_core::validate::synthetic_nhs_number(400_000_000 + person * 7)
        } else {
            String::new()
        },
        introduced_on: format!("{year}-{month:02}-{day:02}"),
        closed_on: if i % 3 == 0 {
            format!("{year}-{month:02}-28")
        } else {
            String::new()
        },
        support_level: 1 + (i % 2) as i32,
        age: Some(site::record::Age::AgeYears(18 + (i % 80) as u32)),
        primary_need: 1 + (i % 10) as i32,
        introduction_source: 1 + (i % 9) as i32,
        outcomes: if i % 4 == 0 {
            vec![pb::Outcome::CommunityConnection as i32]
        } else {
            vec![]
        },
        ward_code: format!("E05{:06}", i % 500),
        ..Default::default()
    }
}

fn hmac_rate(n: u64) -> f64 {
    let key = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    let started = Instant::now();
    let mut acc = 0u8;
    for i in 0..n {
        let mut m = key.clone();
        m.update(b"case\0BENCH-");
        m.update(format!("{i:08}").as_bytes());
        acc ^= m.finalize().into_bytes()[0];
    }
    std::hint::black_box(acc);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Bare sled: the same record bytes inserted under sequential 8-byte keys
/// into a fresh tree, then one flush; no reads, no index, no network. The
/// ingest rate is read as a multiple of it, which stays comparable across
/// days when the machine's absolute speed does not.
fn sled_sequential_rate(records: &[Vec<u8>], cache_bytes: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_bytes)
        .open()
        .unwrap();
    let tree = db.open_tree("records").unwrap();
    let started = Instant::now();
    for (i, r) in records.iter().enumerate() {
        tree.insert((i as u64).to_be_bytes(), r.as_slice()).unwrap();
    }
    db.flush().unwrap();
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let n: u64 = std::env::var("LACNET_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("bench CA").unwrap();
    let server = bundle(&ca, &ca.issue_server(&["agent.lacnet"]).unwrap());
    let council = bundle(&ca, &ca.issue(&Peer::Council("bench".into()), &[]).unwrap());
    let key = dir.path().join("k1");
    let secret: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(42));
    std::fs::write(
        &key,
        lacnet_site_agent::keys::encode_key_file("k1", &secret, &[]),
    )
    .unwrap();
    let ring = lacnet_site_agent::keys::load_ring(&[("k1".into(), key)]).unwrap();
    let mut o = AgentOptions::new(dir.path().join("data"), "E06000034", ring, server);
    o.publish_debounce = Duration::from_secs(30);
    if let Some(mb) = std::env::var("LACNET_BENCH_CACHE_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        o.cache_bytes = mb * 1024 * 1024;
    }
    let cache_bytes = o.cache_bytes;
    let agent = Agent::open(o).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(lacnet_site_agent::serve(
        listener,
        agent.clone(),
        stop.clone().cancelled_owned(),
    ));
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = lacnet_tls::connect(&url, &council, "agent.lacnet").await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = SiteAgentClient::new(channel.expect("agent never came up"));

    let rss_before = rss_mb();
    let started = Instant::now();
    let summary = client
        .stream_records(tokio_stream::iter((0..n).map(record)))
        .await
        .unwrap()
        .into_inner();
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss_mb();
    assert_eq!(summary.accepted, n, "{summary:?}");
    let rate = n as f64 / secs;

    // The same records again, each changed (an outcome added): every one an update.
    let started = Instant::now();
    let updated = client
        .stream_records(tokio_stream::iter((0..n).map(|i| {
            let mut r = record(i);
            r.outcomes.push(pb::Outcome::Volunteering as i32);
            r
        })))
        .await
        .unwrap()
        .into_inner();
    let update_rate = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(updated.accepted, n, "{updated:?}");

    // 16 concurrent UpsertRecords clients, batches of 500 new records each.
    const CLIENTS: u64 = 16;
    const BATCH: u64 = 500;
    let per_client = (n / 4 / CLIENTS / BATCH).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let channel = lacnet_tls::connect(&url, &council, "agent.lacnet")
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut client = SiteAgentClient::new(channel);
            for b in 0..per_client {
                let base = n + (c * per_client + b) * BATCH;
                let records = (base..base + BATCH).map(record).collect();
                let reply = client
                    .upsert_records(site::UpsertRecordsRequest { records })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(reply.accepted as u64, BATCH);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let upserted = CLIENTS * per_client * BATCH;
    let upsert_rate = upserted as f64 / started.elapsed().as_secs_f64();
    let rss_after_all = rss_mb();

    let agg_started = Instant::now();
    let enqueued = agent.publish_now().await.unwrap();
    let agg_secs = agg_started.elapsed().as_secs_f64();
    let rss_final = rss_mb();
    let (segments, stored) = agent.store().segment_totals();
    let records = agent.store().record_count().unwrap();
    let record_len = agent
        .store()
        .records()
        .next()
        .expect("the store holds records")
        .unwrap()
        .encode()
        .len();

    stop.cancel();
    task.await.unwrap().unwrap();
    drop(agent);
    let bytes: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let r = record(i);
            let mut b = r.local_case_id.into_bytes();
            b.resize(record_len, 0x5a);
            b
        })
        .collect();
    let floor = sled_sequential_rate(&bytes, cache_bytes);
    drop(bytes);

    let one = hmac_rate(2_000_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_started = Instant::now();
    let per = 2_000_000 / cores as u64;
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| hmac_rate(per));
        }
    });
    let all = (per * cores as u64) as f64 / all_started.elapsed().as_secs_f64();

    println!(
        "records ingested:        {n} ({} accepted) in {secs:.2} s",
        summary.accepted
    );
    println!("ingest rate: {rate:.0} records/s");
    println!("update rate: {update_rate:.0} records/s (the same {n} records again, each changed)");
    println!(
        "upsert rate: {upsert_rate:.0} records/s ({CLIENTS} concurrent UpsertRecords clients, batches of {BATCH}, {upserted} new records)"
    );
    println!("rss after ingest: {rss_after:.0} MB");
    println!("rss after aggregation: {rss_final:.0} MB");
    println!(
        "  (RSS {rss_before:.0} MB before, {rss_after_all:.0} MB after all three loads; {records} records in {segments} segments holding {stored} entries; sled cache {} MiB; MALLOC_ARENA_MAX={})",
        cache_bytes >> 20,
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    println!(
        "aggregation:             {enqueued} periods recomputed and enqueued in {agg_secs:.2} s"
    );
    println!(
        "sled sequential floor: {floor:.0} records/s (bare sled inserts of {}-byte values under sequential keys, one flush); ingest is {:.2}x it",
        record_len,
        rate / floor
    );
    println!("raw HMAC-SHA256:         {one:.0}/s on one core, {all:.0}/s on {cores} cores");
    println!(
        "ingest / HMAC ratio:     {:.3} of one core's raw HMAC rate, {:.3} of all cores'",
        rate / one,
        rate / all
    );
}
