//! Caller strings at the real hub are bounded before they are logged, stored
//! or echoed: a 3 MiB metric id (or site code) sent ten times used to add
//! tens of megabytes of log and audit data, because each refusal repeated it
//! in the status, the log line and the audit record.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use lacnet_proto::status::refused_fields;
use lacnet_testkit::hub::*;
use tonic::Code;

/// Every byte the hub logs in this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global subscriber that writes INFO and above into memory.
fn captured_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

const HUGE: usize = 3 * 1024 * 1024;
/// A generous bound on any one status message, log line or audit reason.
const ONE_MESSAGE: usize = 1024;

#[tokio::test]
async fn huge_caller_strings_are_refused_with_bounded_echo_log_and_audit() {
    let logs = captured_logs();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let logged_before = logs.0.lock().unwrap().len();
    let audit_before = hub.hub.audit_log().unwrap().len();
    let size_before = dir_size(dir.path());

    let agg = aggregates(100, 40, 10, 15);
    let huge_metric = "m".repeat(HUGE);
    for _ in 0..10 {
        let mut sub = submission(THURROCK, "2024-Q1", 1, &agg);
        sub.cells[0].metric = huge_metric.clone();
        let status = hub.submit(&pki.thurrock, sub).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{}",
            status.message().len()
        );
        assert!(
            status.message().len() < ONE_MESSAGE,
            "{} bytes",
            status.message().len()
        );
        assert_eq!(
            refused_fields(&status),
            vec!["submission.cells[0].metric"],
            "{}",
            status.message()
        );
    }
    for _ in 0..10 {
        let mut sub = submission(THURROCK, "2024-Q1", 1, &agg);
        sub.site_code = "E".repeat(HUGE);
        let status = hub.submit(&pki.thurrock, sub).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().len() < ONE_MESSAGE,
            "{} bytes",
            status.message().len()
        );
        assert_eq!(
            refused_fields(&status),
            vec!["submission.site_code"],
            "{}",
            status.message()
        );
    }
    let mut reports = hub.reports(&pki.analyst).await;
    for _ in 0..10 {
        let mut request = compare_request("people.active", "2024-Q1", "2024-Q2");
        request.metric = huge_metric.clone();
        let status = reports.compare_metric(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().len() < ONE_MESSAGE,
            "{} bytes",
            status.message().len()
        );
    }
    // A bad character is refused too, and quoted escaped, never raw.
    let mut sub = submission(THURROCK, "2024-Q1", 1, &agg);
    sub.cells[1].metric = "people.active\n\u{1b}[31mforged log line".into();
    let status = hub.submit(&pki.thurrock, sub).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(!status.message().contains('\n'), "{}", status.message());

    // Every refusal was logged and audited, each within bounds.
    let audit = hub.hub.audit_log().unwrap();
    let new: Vec<_> = audit[audit_before..].iter().collect();
    assert!(new.len() >= 31, "{} audit entries", new.len());
    for event in &new {
        let reason = event.reason.as_deref().unwrap_or("");
        assert!(
            reason.len() < ONE_MESSAGE,
            "audit reason of {} bytes",
            reason.len()
        );
    }
    let logged = logs.0.lock().unwrap().len() - logged_before;
    assert!(
        logged < 100 * ONE_MESSAGE,
        "{logged} bytes of log for 31 refusals"
    );
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("request refused"),
        "refusals are still logged"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no caller escape codes in the log"
    );

    hub.stop().await;
    let grown = dir_size(dir.path()).saturating_sub(size_before);
    assert!(
        grown < 16 * 1024 * 1024,
        "the data directory grew {grown} bytes"
    );
}

/// A submission inconsistent in many tables is refused as INVALID_ARGUMENT
/// naming `submission.cells`, in a status small enough for any tonic
/// client's trailers (16 KiB): the hub names at most a few findings, and
/// `lacnet_proto::status` cuts every text (its unit tests cut 64 KB). A
/// longer status reached the client as an `INTERNAL` h2 error, which an
/// agent retries for ever instead of setting the release aside.
#[tokio::test]
async fn a_submission_inconsistent_in_many_tables_is_refused_in_a_bounded_status() {
    use lacnet_core::disclosure::{self, Count, DisclosurePolicy};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let period = "2024-Q1";
    let policy = DisclosurePolicy::default();
    let kind = lacnet_core::Period::parse(period).unwrap().granularity();
    let carried = lacnet_core::release::carried(kind);
    let agg = aggregates(100, 40, 10, 15);
    let mut published = disclosure::release_alone(&agg, &carried, &policy);
    // Each figure larger the deeper it sits in the tables, so every
    // table's parts exceed its total.
    let tables = lacnet_core::metrics::catalogue().tables();
    let mut depth = vec![0u64; published.counts.len()];
    for _ in 0..tables.len() {
        for t in tables {
            for &part in &t.parts {
                depth[part] = depth[part].max(depth[t.total] + 1);
            }
        }
    }
    for (c, d) in published.counts.iter_mut().zip(&depth) {
        if *c != Count::NotReleased {
            *c = Count::Value(10 * (1 + d));
        }
    }
    let sub = submission_of(THURROCK, period, 1, &published, policy);
    let status = hub.submit(&pki.thurrock, sub).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(refused_fields(&status), vec!["submission.cells"]);
    assert!(
        status.message().contains("; table "),
        "{}",
        status.message()
    );
    let base64 = status.details().len().div_ceil(3) * 4;
    assert!(
        status.message().len() + base64 < 8 * 1024,
        "{} + {base64} bytes",
        status.message().len()
    );
    hub.stop().await;
}
