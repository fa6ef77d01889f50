//! Revision numbers at the real hub: a revision no honest agent could send is
//! refused (it would freeze the period for good), an honest one still lands
//! afterwards, and content re-sent under an old number while other content is
//! current is answered SUPERSEDED, so the sender learns it is not reported.
//! The hub keeps only the current release: a superseded one leaves its files.

use lacnet_core::Period;
use lacnet_hub::submissions::MAX_REVISION_SKEW_MS;
use lacnet_proto::hub::v1::ReceiptStatus;
use lacnet_testkit::hub::*;
use tonic::Code;

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn assert_refused_revision<T: std::fmt::Debug>(r: Result<T, tonic::Status>, why: &str) {
    let status = r.expect_err(why);
    assert_eq!(status.code(), Code::InvalidArgument, "{why}: {status:?}");
    assert_eq!(
        lacnet_proto::status::refused_fields(&status),
        vec!["submission.revision"],
        "{why}: {:?} should name the field",
        status.message()
    );
}

#[tokio::test]
async fn implausible_revisions_are_refused_and_an_honest_one_still_lands() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let q1 = Period::parse("2024-Q1").unwrap();
    let agg = aggregates(200, 100, 40, 20);

    let r = hub
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", u64::MAX, &agg),
        )
        .await;
    assert_refused_revision(r, "2^64 - 1");
    let a_year = 365 * 24 * 60 * 60 * 1000;
    let r = hub
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", now_ms() + a_year, &agg),
        )
        .await;
    assert_refused_revision(r, "now + 1 year");
    let r = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 0, &agg))
        .await;
    assert_refused_revision(r, "0 (unset)");
    let r = hub
        .submit(
            &pki.thurrock,
            submission(
                THURROCK,
                "2024-Q1",
                now_ms() + 2 * MAX_REVISION_SKEW_MS,
                &agg,
            ),
        )
        .await;
    assert_refused_revision(r, "beyond the skew bound");
    // Nothing was stored, and each refusal was counted.
    assert!(hub.hub.revisions(THURROCK, q1).unwrap().is_empty());
    assert_eq!(
        hub.hub
            .metrics()
            .refusals
            .get(lacnet_hub::ErrorKind::InvalidArgument),
        4,
        "every refusal counted"
    );

    // An honest agent's revision (its clock in ms) lands, and a later one
    // with new figures becomes current: the period is not frozen.
    let honest = now_ms();
    let r = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", honest, &agg))
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::New, honest)
    );
    // A clock somewhat ahead (an hour) is within the skew bound.
    let ahead = now_ms() + 3_600_000;
    let r = hub
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", ahead, &aggregates(200, 100, 50, 20)),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::New, ahead)
    );
    assert_eq!(
        hub.hub.revisions(THURROCK, q1).unwrap(),
        vec![ahead],
        "the superseded revision is deleted"
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_old_revision_resent_while_other_content_is_current_is_superseded() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let q1 = Period::parse("2024-Q1").unwrap();
    let v1 = submission(THURROCK, "2024-Q1", 1, &aggregates(200, 100, 40, 20));
    let v2 = submission(THURROCK, "2024-Q1", 2, &aggregates(200, 100, 50, 20));
    hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    hub.submit(&pki.thurrock, v2.clone()).await.unwrap();

    // An agent played back from a backup re-sends revision 1: the hub
    // deleted it when 2 arrived and reports revision 2, so the answer is
    // SUPERSEDED, and 1 is not stored again.
    let r = hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Superseded, 2)
    );
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![2]);
    assert_eq!(hub.hub.current_revision(THURROCK, q1), Some(2));

    // Re-sending the current revision, or its content under another number,
    // is still a plain duplicate.
    let r = hub.submit(&pki.thurrock, v2.clone()).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Duplicate, 2)
    );
    let mut v2_renumbered = v2.clone();
    v2_renumbered.revision = 7;
    let r = hub.submit(&pki.thurrock, v2_renumbered).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Duplicate, 2)
    );

    // The agent re-issues revision 1's content above 2: it becomes current.
    let mut v1_again = v1;
    v1_again.revision = 3;
    let r = hub.submit(&pki.thurrock, v1_again).await.unwrap();
    assert_eq!((r.status(), r.current_revision), (ReceiptStatus::New, 3));
    hub.stop().await;
}

/// Every byte under `dir` (sled's log and snapshot files), for scanning.
fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(bytes_under(&path));
        } else {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The cells of a submission as the hub's store encodes them.
fn encoded_counts(sub: &lacnet_proto::common::v1::Submission) -> Vec<u8> {
    let counts: Vec<lacnet_core::disclosure::Count> = sub
        .cells
        .iter()
        .map(|c| lacnet_proto::convert::count_from_proto(c.count.as_ref(), "cell").unwrap())
        .collect();
    serde_json::to_vec(&counts).unwrap()
}

#[tokio::test]
async fn a_superseded_release_is_deleted_from_the_hubs_store() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let q1 = Period::parse("2024-Q1").unwrap();
    // Revision 2 is revision 1 after ten people (with identical attributes)
    // were erased at the site: 40 fewer introductions.
    let v1 = submission(THURROCK, "2024-Q1", 1, &aggregates(200, 100, 40, 20));
    let v2 = submission(THURROCK, "2024-Q1", 2, &aggregates(190, 90, 40, 20));
    let (old, new) = (encoded_counts(&v1), encoded_counts(&v2));
    assert_ne!(old, new);
    hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    let hub = {
        let stopped = hub.stop().await;
        drop(stopped);
        let on_disk = bytes_under(dir.path());
        assert!(contains(&on_disk, &old), "the scan finds a stored release");
        TestHub::start(&pki, dir.path(), |_| {}).await
    };
    let r = hub.submit(&pki.thurrock, v2.clone()).await.unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![2]);

    // A replay of revision 1 is refused and not stored again; the current
    // one re-sent is idempotent.
    let r = hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Superseded, 2)
    );
    let r = hub.submit(&pki.thurrock, v2.clone()).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Duplicate, 2)
    );
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![2]);

    // The audit log keeps the deleted release's digest and dates, nothing more.
    let log = hub.hub.audit_log().unwrap();
    let deleted: Vec<_> = log.iter().filter(|e| e.outcome == "deleted").collect();
    assert_eq!(deleted.len(), 1, "{log:?}");
    assert_eq!(deleted[0].digest.as_deref(), Some(v1.digest.as_str()));
    assert_eq!(deleted[0].generated_at_unix, Some(v1.generated_at_unix));
    assert!(deleted[0].received_at_unix.is_some());

    drop(hub.stop().await);
    let on_disk = bytes_under(dir.path());
    assert!(contains(&on_disk, &new), "the current release is stored");
    assert!(
        !contains(&on_disk, &old),
        "the superseded release's content is still in the hub's files"
    );
    // Its digest survives only in the audit log.
    let db = sled::open(dir.path()).unwrap();
    let submissions = db.open_tree("submissions").unwrap();
    for entry in submissions.iter() {
        let (_, v) = entry.unwrap();
        assert!(!contains(&v, v1.digest.as_bytes()));
    }
}

/// Every run of digits in `text`, as numbers (the ones that fit a u64).
fn numbers_in(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|run| run.parse().ok())
        .collect()
}

#[tokio::test]
async fn analysts_see_the_publication_day_and_revised_never_revisions_or_times() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = now_ms();
    let second = first + 5_000;
    let v1 = submission(THURROCK, "2024-Q1", first, &aggregates(200, 100, 40, 20));
    let v2 = submission(THURROCK, "2024-Q1", second, &aggregates(190, 90, 40, 20));
    let derby = submission(DERBY, "2024-Q1", first + 1, &aggregates(100, 50, 20, 10));
    for (pem, sub) in [
        (&pki.thurrock, &v1),
        (&pki.thurrock, &v2),
        (&pki.derby, &derby),
    ] {
        assert_eq!(
            hub.submit(pem, sub.clone()).await.unwrap().status(),
            ReceiptStatus::New
        );
    }
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let today = lacnet_core::Date::from_unix_seconds(started as i64).to_string();

    let mut reports = hub.reports(&pki.analyst).await;
    let cmp = reports
        .compare_metric(compare_request("people_active", "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    let summary = reports
        .network_summary(lacnet_proto::hub::v1::NetworkSummaryRequest {
            period: quarter("2024-Q1"),
        })
        .await
        .unwrap()
        .into_inner();
    let sites = reports
        .list_sites(lacnet_proto::hub::v1::ListSitesRequest {})
        .await
        .unwrap()
        .into_inner();

    // What they show: the day, and whether the figure was revised.
    let row = |code: &str| {
        cmp.periods[0]
            .sites
            .iter()
            .find(|s| s.site_code == code)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (row(THURROCK).published_on.as_str(), row(THURROCK).revised),
        (today.as_str(), true)
    );
    assert_eq!(
        (row(DERBY).published_on.as_str(), row(DERBY).revised),
        (today.as_str(), false)
    );
    let last = |code: &str| {
        sites
            .sites
            .iter()
            .find(|s| s.code == code)
            .unwrap()
            .last_submission
            .clone()
            .unwrap()
    };
    assert_eq!(
        (last(THURROCK).published_on, last(THURROCK).revised),
        (today.clone(), true)
    );
    let snapshot = &summary.metrics[0].comparison.as_ref().unwrap().sites;
    assert!(
        snapshot
            .iter()
            .any(|s| s.site_code == THURROCK && s.revised)
    );

    // What they never show: a revision number, the site's generation time or
    // the hub's receipt time, in any field.
    let seen = format!("{cmp:?}\n{summary:?}\n{sites:?}");
    assert!(!seen.contains("revision"), "a revision field");
    assert!(!seen.contains("_at"), "a timestamp field");
    for n in numbers_in(&seen) {
        assert!(
            n != first && n != second && n != first + 1,
            "a revision number ({n}) reached the analyst"
        );
        assert!(
            n != v1.generated_at_unix as u64,
            "the generation time reached the analyst"
        );
        assert!(
            !(started..=ended).contains(&n),
            "the receipt time ({n}) reached the analyst"
        );
    }
    hub.stop().await;
}
