//! Packed cells (the compact form agents send from this release on) at the
//! real hub: the same figures sent packed and named are one release (same
//! digest, same report values, a re-send in the other form is a duplicate),
//! and malformed packed cells are refused with the field named and nothing
//! stored.

use lacnet_core::Period;
use lacnet_core::metrics::catalogue;
use lacnet_proto::convert::with_packed_cells;
use lacnet_proto::hub::v1::ReceiptStatus;
use lacnet_testkit::hub::*;
use tonic::Code;

#[tokio::test]
async fn packed_and_named_cells_are_one_release() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let agg = aggregates(200, 100, 40, 20);

    let packed = with_packed_cells(submission(THURROCK, "2024-Q1", 1, &agg));
    assert!(packed.cells.is_empty() && packed.packed.is_some());
    let r = hub.submit(&pki.thurrock, packed.clone()).await.unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
    assert_eq!(r.current_digest, packed.digest);
    let r = hub
        .submit(&pki.derby, submission(DERBY, "2024-Q1", 1, &agg))
        .await
        .unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);

    // The same content named, under a new revision, is the release the hub holds.
    let r = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 2, &agg))
        .await
        .unwrap();
    assert_eq!(r.status(), ReceiptStatus::Duplicate);
    assert_eq!(r.current_revision, 1);

    // Every figure reads the same for the packed site as for the named one.
    let mut reports = hub.reports(&pki.analyst).await;
    let mut compared = 0;
    for def in catalogue().metrics() {
        let req = compare_request(&def.id, "2024-Q1", "2024-Q1");
        let Ok(r) = reports.compare_metric(req).await else {
            continue; // a figure a quarter does not carry
        };
        let sites = &r.into_inner().periods[0].sites;
        let of = |code: &str| sites.iter().find(|s| s.site_code == code).map(|s| s.value);
        assert_eq!(of(THURROCK), of(DERBY), "{}", def.id);
        assert!(of(THURROCK).is_some(), "{}", def.id);
        compared += 1;
    }
    assert!(compared > 20, "only {compared} figures compared");
}

#[tokio::test]
async fn malformed_packed_cells_are_refused_by_field_and_store_nothing() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let agg = aggregates(200, 100, 40, 20);
    let good = with_packed_cells(submission(THURROCK, "2024-Q1", 1, &agg));

    let mut short = good.clone();
    short.packed.as_mut().unwrap().counts.pop();
    let mut long = good.clone();
    long.packed
        .as_mut()
        .unwrap()
        .counts
        .extend(std::iter::repeat_n(2, 100_000));
    let mut other_catalogue = good.clone();
    other_catalogue.packed.as_mut().unwrap().catalogue = "0000000000000000".into();
    let mut hostile_catalogue = good.clone();
    hostile_catalogue.packed.as_mut().unwrap().catalogue =
        format!("\n\u{1b}[31mforged log line{}", "x".repeat(10_000));
    let mut both = good.clone();
    both.cells = submission(THURROCK, "2024-Q1", 1, &agg).cells;
    // A packed figure changed after the digest was taken.
    let mut tampered = good.clone();
    tampered.packed.as_mut().unwrap().counts[0] += 5;

    for (name, sub, field) in [
        ("one count short", short, "submission.packed.counts"),
        ("100,000 counts too many", long, "submission.packed.counts"),
        (
            "another catalogue",
            other_catalogue,
            "submission.packed.catalogue",
        ),
        (
            "a hostile catalogue string",
            hostile_catalogue,
            "submission.packed.catalogue",
        ),
        ("packed beside named cells", both, "submission.packed"),
        ("a changed figure", tampered, "submission.digest"),
    ] {
        let status = hub.submit(&pki.thurrock, sub).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert_eq!(
            lacnet_proto::status::refused_fields(&status),
            vec![field],
            "{name}: {:?} should name {field}",
            status.message()
        );
        assert!(!status.message().contains("forged"), "{name}: echoed input");
    }
    let q1 = Period::parse("2024-Q1").unwrap();
    assert!(hub.hub.revisions(THURROCK, q1).unwrap().is_empty());
    let log = hub.hub.audit_log().unwrap();
    assert!(
        log.iter()
            .all(|e| !format!("{e:?}").contains("forged log line")),
        "a refused catalogue string reached the audit log"
    );

    // The good one still lands.
    let r = hub.submit(&pki.thurrock, good).await.unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
}
