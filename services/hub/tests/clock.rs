//! The hub's clock is injected: "the future" is a period after the mock
//! clock's today, and it becomes acceptable when the test advances the
//! clock, not by waiting for a calendar year or writing 2999-Q1.

use std::sync::Arc;
use std::time::Duration;

use lacnet_hub::clock::{Clock, MockClock};
use lacnet_proto::hub::v1 as hub;
use lacnet_testkit::hub::*;
use tonic::Code;

#[tokio::test]
async fn a_period_is_refused_until_the_clock_reaches_it() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let clock = MockClock::at_date("2016-06-30").unwrap();
    let shared = clock.clone();
    let test_hub = TestHub::start(&pki, dir.path(), move |o| o.clock = Arc::new(shared)).await;
    let agg = aggregates(200, 100, 40, 20);

    // On 2016-06-30, 2016-Q3 is the future.
    let early = test_hub
        .submit(&pki.thurrock, submission(THURROCK, "2016-Q3", 1, &agg))
        .await
        .expect_err("a period that has not started");
    assert_eq!(early.code(), Code::InvalidArgument, "{early:?}");
    assert_eq!(
        lacnet_proto::status::refused_fields(&early),
        vec!["submission.period"]
    );
    assert!(
        early.message().contains("2016-06-30"),
        "{}",
        early.message()
    );
    // The quarter in progress is fine.
    let now = test_hub
        .submit(&pki.thurrock, submission(THURROCK, "2016-Q2", 1, &agg))
        .await
        .unwrap();
    assert_eq!(now.status, hub::ReceiptStatus::New as i32);
    assert_eq!(now.received_at_unix, clock.now_unix());

    // One day later the quarter has started.
    clock.advance(Duration::from_secs(86_400));
    let later = test_hub
        .submit(&pki.thurrock, submission(THURROCK, "2016-Q3", 1, &agg))
        .await
        .unwrap();
    assert_eq!(later.status, hub::ReceiptStatus::New as i32);
    assert_eq!(later.received_at_unix, 1_467_331_200);
    test_hub.stop().await;
}
