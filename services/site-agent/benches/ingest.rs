//! Ingest benchmark: 1,000,000 generated records over gRPC with mTLS through
//! StreamRecords into a fresh store, with durable acknowledgement, against the
//! real server in this process. Prints records per second, the raw
//! HMAC-SHA256 rate measured in the same run (one core and all cores), their
//! ratio, and the process RSS afterwards.
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

/// The store's floor: the same sled writes a new record costs the agent (one
/// 32-byte random key with its encoded record in `records`, one 64-byte key in
/// `persons`, one existence check), with nothing else, then a flush. Measured
/// in a fresh sled directory with the agent's cache, so the ingest
/// rate can be read as a share of what sled allows on this machine.
/// With `with_index` false only the `records` tree is written: the ceiling for
/// any layout that stores each record under its pseudonym.
fn sled_floor_rate(n: u64, value_len: usize, cache_bytes: u64, with_index: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_bytes)
        .open()
        .unwrap();
    let records = db.open_tree("records").unwrap();
    let persons = db.open_tree("persons").unwrap();
    let key = Hmac::<Sha256>::new_from_slice(&[9u8; 32]).unwrap();
    let value = vec![0x5au8; value_len];
    let started = Instant::now();
    for i in 0..n {
        let mut m = key.clone();
        m.update(&i.to_le_bytes());
        let r: [u8; 32] = m.finalize().into_bytes().into();
        let mut m = key.clone();
        m.update(&(i * 5 / 7).to_be_bytes());
        let mut pk = [0u8; 64];
        pk[..32].copy_from_slice(&m.finalize().into_bytes());
        pk[32..].copy_from_slice(&r);
        assert!(records.get(r).unwrap().is_none());
        if with_index {
            persons.insert(&pk[..], &[][..]).unwrap();
        }
        records.insert(&r[..], &value[..]).unwrap();
    }
    db.flush().unwrap();
    n as f64 / started.elapsed().as_secs_f64()
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
    std::fs::write(&key, [42u8; 32]).unwrap();
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

    let agg_started = Instant::now();
    let enqueued = agent.publish_now().await.unwrap();
    let agg_secs = agg_started.elapsed().as_secs_f64();
    let rss_final = rss_mb();

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
    let floor = sled_floor_rate(n, record_len, cache_bytes, true);
    let records_only = sled_floor_rate(n, record_len, cache_bytes, false);

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
    println!("ingest rate:             {rate:.0} records/s (StreamRecords, mTLS, durable acks)");
    println!("raw HMAC-SHA256:         {one:.0}/s on one core, {all:.0}/s on {cores} cores");
    println!(
        "ingest / HMAC ratio:     {:.3} of one core's raw HMAC rate, {:.3} of all cores'",
        rate / one,
        rate / all
    );
    println!(
        "sled floor:              {floor:.0} records/s (bare sled writes per new record, {record_len}-byte values); ingest is {:.2} of it",
        rate / floor
    );
    println!(
        "sled, records tree only: {records_only:.0} records/s (its existence check and insert, no person index)"
    );
    println!(
        "aggregation after:       {enqueued} periods recomputed and enqueued in {agg_secs:.2} s"
    );
    println!(
        "RSS:                     {rss_before:.0} MB before, {rss_after:.0} MB after ingest, {rss_final:.0} MB after aggregation (sled cache {} MiB, MALLOC_ARENA_MAX={})",
        cache_bytes >> 20,
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
}
