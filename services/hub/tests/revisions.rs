//! Revision numbers at the real hub: a revision no honest agent could send is
//! refused (it would freeze the period for good), an honest one still lands
//! afterwards, and content re-sent under an old number while other content is
//! current is answered SUPERSEDED, so the sender learns it is not reported.

mod common;

use common::*;
use lacnet_core::Period;
use lacnet_hub::submissions::MAX_REVISION_SKEW_MS;
use lacnet_proto::hub::v1::ReceiptStatus;
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
    assert!(
        status.message().contains("submission.revision"),
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
        hub.hub.metrics().refusals.get("invalid_argument"),
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
        vec![honest, ahead]
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

    // An agent played back from a backup re-sends revision 1: the hub already
    // has it, but reports revision 2, so the answer is SUPERSEDED.
    let r = hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    assert_eq!(
        (r.status(), r.current_revision),
        (ReceiptStatus::Superseded, 2)
    );
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![1, 2]);
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
