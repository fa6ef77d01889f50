//! The privacy byte-scan: ingest records with distinctive identifiers, capture
//! every log line at TRACE as JSON, close the store, then search every byte of
//! the sled directory and the logs for each identifier, in plain text and as
//! unkeyed SHA-256 (hex and raw). Nothing may be found.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lacnet_proto::site::v1 as site;
use lacnet_testkit::agent::*;
use sha2::{Digest, Sha256};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn all_bytes(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_bytes(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_reaches_sled_or_the_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Capture stops before the runtime is torn down: a library that logs from
    // a destructor while a worker thread's thread-locals are being destroyed
    // would reach the formatter's own, already destroyed, thread-local buffer,
    // and that panic aborts the whole test binary. Other crates are captured
    // at DEBUG for the same reason: their TRACE events fire from such drops.
    static CAPTURING: AtomicBool = AtomicBool::new(true);
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "debug,lacnet_site_agent=trace,lacnet_core=trace,lacnet_server=trace,lacnet_tls=trace,lacnet_proto=trace",
        ))
        .with(tracing_subscriber::filter::filter_fn(|_| {
            CAPTURING.load(Ordering::Relaxed)
        }))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || sink.clone()),
        )
        .try_init()
        .unwrap();

    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(&pki, options(&pki, &data, ring(&[("k1", &k1)]))).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;

    let cases = ["ZEBRA-CASE-88421", "QUOKKA-CASE-55309", "OKAPI-CASE-77120"];
    let nhs_numbers = [nhs(987654321), nhs(876543219), nhs(765432198)];
    let wards = ["E05011234", "E05098765", "W05000991"];
    let mut records = Vec::new();
    for i in 0..3 {
        let mut r = rec(cases[i], &nhs_numbers[i], "2025-01-10");
        r.ward_code = wards[i].into();
        r.age = Some(site::record::Age::AgeYears(93 + i as u32));
        records.push(r);
    }
    let reply = upsert(&mut c, records.clone()).await;
    assert_eq!(reply.accepted, 3);
    // Stream them too, update one, reject one with a bad ward, erase one, preview.
    let mut bad = records[0].clone();
    bad.ward_code = "E0501123X".into();
    c.stream_records(tokio_stream::iter(vec![records[1].clone(), bad]))
        .await
        .unwrap();
    let spaced = format!(
        "{} {} {}",
        &nhs_numbers[2][..3],
        &nhs_numbers[2][3..6],
        &nhs_numbers[2][6..]
    );
    op.erase_person(site::ErasePersonRequest {
        identifier: Some(site::erase_person_request::Identifier::NhsNumber(spaced)),
    })
    .await
    .unwrap();
    op.erase_person(site::ErasePersonRequest {
        identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
            "NOBODY-CASE-31337".into(),
        )),
    })
    .await
    .unwrap();
    let _ = preview(&mut op, "2025-Q1").await;
    agent.agent.publish_now().await.unwrap();
    let stopped = agent.stop().await;
    // Ages are stored as bands only.
    for r in stopped.store().records() {
        assert_eq!(
            r.unwrap().facts.age_band,
            lacnet_core::vocab::AgeBand::From85
        );
    }
    drop(stopped);
    drop(c);
    drop(op);
    CAPTURING.store(false, Ordering::Relaxed);

    let mut files = Vec::new();
    all_bytes(&data, &mut files);
    assert!(files.iter().map(|(_, b)| b.len()).sum::<usize>() > 0);
    let logs = captured.0.lock().unwrap().clone();
    assert!(logs.len() > 1000, "logs were not captured");
    // The scan can see what is there: the site code is logged on purpose.
    assert!(contains(&logs, b"E06000034"));
    files.push(("<logs>".into(), logs));

    let mut needles: Vec<String> = Vec::new();
    needles.extend(cases.iter().map(|s| s.to_string()));
    needles.push("NOBODY-CASE-31337".into());
    for n in &nhs_numbers {
        needles.push(n.clone());
        needles.push(format!("{} {} {}", &n[..3], &n[3..6], &n[6..]));
    }
    needles.extend(wards.iter().map(|s| s.to_string()));
    let mut found = Vec::new();
    for needle in &needles {
        let sha = Sha256::digest(needle.as_bytes());
        let sha_hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        for (name, bytes) in &files {
            for (form, pattern) in [
                ("plain", needle.as_bytes().to_vec()),
                ("sha256-hex", sha_hex.as_bytes().to_vec()),
                ("sha256-raw", sha.to_vec()),
            ] {
                if contains(bytes, &pattern) {
                    found.push(format!("{form} of an identifier in {name}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "identifiers leaked: {found:#?}");
}
