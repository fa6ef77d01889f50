//! One series per site: the registry fixes each site's granularity, the hub
//! refuses any other period kind with FAILED_PRECONDITION, and changing the
//! registry's granularity withdraws the site's old series at start-up.

use lacnet_core::Period;
use lacnet_hub::Registry;
use lacnet_proto::hub::v1::ReceiptStatus;
use lacnet_testkit::hub::*;
use tonic::Code;

/// The shipped registry with Thurrock publishing months instead of quarters.
fn thurrock_monthly() -> Registry {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/registry.toml")).unwrap();
    let quarterly = "adult_population = 134_700\ngranularity = \"quarter\"";
    assert!(text.contains(quarterly));
    Registry::parse(&text.replace(
        quarterly,
        "adult_population = 134_700\ngranularity = \"month\"",
    ))
    .unwrap()
}

#[tokio::test]
async fn a_month_from_a_quarter_site_is_a_failed_precondition() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let agg = aggregates(200, 100, 40, 20);
    let status = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-01", 1, &agg))
        .await
        .expect_err("a month from a quarterly site");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let m = status.message();
    for needle in [THURROCK, "month", "quarter", "submission.period"] {
        assert!(m.contains(needle), "{m:?} should name {needle:?}");
    }
    assert!(
        hub.hub
            .revisions(THURROCK, Period::parse("2024-01").unwrap())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        hub.hub
            .metrics()
            .refusals
            .get(lacnet_hub::ErrorKind::WrongSeries),
        1
    );
    // Its own series is accepted.
    let r = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 1, &agg))
        .await
        .unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
    hub.stop().await;
}

#[tokio::test]
async fn changing_a_sites_granularity_withdraws_its_old_series() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let jan = Period::parse("2024-01").unwrap();
    let agg = aggregates(200, 100, 40, 20);
    let monthly = submission(THURROCK, "2024-01", 1, &agg);
    let hub = TestHub::start(&pki, dir.path(), |o| o.registry = thurrock_monthly()).await;
    let r = hub.submit(&pki.thurrock, monthly.clone()).await.unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
    // Derby (still quarterly) keeps its release through the change.
    hub.submit(&pki.derby, submission(DERBY, "2024-Q1", 1, &agg))
        .await
        .unwrap();
    let status = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 1, &agg))
        .await
        .expect_err("a quarter from a monthly site");
    assert_eq!(status.code(), Code::FailedPrecondition);
    drop(hub.stop().await);

    // The registry now says quarters: the months are withdrawn at start-up.
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    assert!(hub.hub.revisions(THURROCK, jan).unwrap().is_empty());
    assert_eq!(hub.hub.current_revision(THURROCK, jan), None);
    assert_eq!(
        hub.hub
            .current_revision(DERBY, Period::parse("2024-Q1").unwrap()),
        Some(1)
    );
    let log = hub.hub.audit_log().unwrap();
    let withdrawn: Vec<_> = log.iter().filter(|e| e.outcome == "withdrawn").collect();
    assert_eq!(withdrawn.len(), 1, "{log:?}");
    assert_eq!(withdrawn[0].site.as_deref(), Some(THURROCK));
    assert_eq!(withdrawn[0].period.as_deref(), Some("2024-01"));
    assert_eq!(
        withdrawn[0].digest.as_deref(),
        Some(monthly.digest.as_str())
    );
    assert!(withdrawn[0].reason.as_deref().unwrap().contains("quarter"));
    // The new series is accepted, and the old one refused.
    let r = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 1, &agg))
        .await
        .unwrap();
    assert_eq!(r.status(), ReceiptStatus::New);
    let status = hub
        .submit(&pki.thurrock, monthly)
        .await
        .expect_err("the old series");
    assert_eq!(status.code(), Code::FailedPrecondition);
    drop(hub.stop().await);
    // A second start withdraws nothing more.
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let again = hub.hub.audit_log().unwrap();
    assert_eq!(again.iter().filter(|e| e.outcome == "withdrawn").count(), 1);
    hub.stop().await;
}
