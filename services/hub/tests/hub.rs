//! The real hub over mTLS on 127.0.0.1:0: authorisation, revisions,
//! refusals, report numbers checked by hand, and a restart.

use std::sync::Arc;

use lacnet_core::disclosure::{self, Count, DisclosurePolicy};
use lacnet_core::metrics::{self, catalogue};
use lacnet_core::period::Period;
use lacnet_core::vocab::{Outcome, SupportLevel};
use lacnet_hub::clock::MockClock;
use lacnet_hub::metrics::SubmissionOutcome;
use lacnet_proto::hub::v1 as hub;
use lacnet_testkit::hub::*;
use tonic::Code;

const DAY: &str = "outcome.alternative_to_day_services";

fn assert_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = r.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} should mention {needle:?}",
        status.message()
    );
    // A refused field is named in the typed details too, not only in words.
    if code == Code::InvalidArgument {
        let fields = lacnet_proto::status::refused_fields(&status);
        assert_eq!(fields.len(), 1, "{status:?}");
        assert!(status.message().contains(&fields[0]), "{status:?}");
    }
}

#[tokio::test]
async fn authorisation_cases() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let agg = aggregates(200, 100, 40, 20);

    // A site submits for itself.
    let ok = hub
        .submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 1, &agg))
        .await
        .unwrap();
    assert_eq!(ok.status, hub::ReceiptStatus::New as i32);

    // A site submitting as another site.
    assert_code(
        hub.submit(&pki.thurrock, submission(DERBY, "2024-Q1", 1, &agg))
            .await,
        Code::PermissionDenied,
        "may submit only for itself",
    );
    // An analyst submitting.
    assert_code(
        hub.submit(&pki.analyst, submission(THURROCK, "2024-Q2", 1, &agg))
            .await,
        Code::PermissionDenied,
        "analysts",
    );
    // A council identity (meant for site agents) submitting.
    assert_code(
        hub.submit(&pki.council, submission(THURROCK, "2024-Q2", 1, &agg))
            .await,
        Code::PermissionDenied,
        "council",
    );
    // A certificate from the network CA that names no lacnet caller.
    assert_code(
        hub.submit(&pki.anonymous, submission(THURROCK, "2024-Q2", 1, &agg))
            .await,
        Code::Unauthenticated,
        "no lacnet identity",
    );
    // Two identities in one certificate, or a malformed one, name nobody.
    for uris in [
        &[
            "spiffe://lacnet/site/E06000034",
            "spiffe://lacnet/site/E06000015",
        ][..],
        &[
            "spiffe://lacnet/site/E06000034",
            "spiffe://elsewhere/site/E06000034",
        ][..],
        &["spiffe://lacnet/site/e06000034"][..],
    ] {
        let pem = lacnet_tls::dev::bundle(&pki.ca, &pki.ca.issue_with_uris(uris).unwrap());
        assert_code(
            hub.submit(&pem, submission(THURROCK, "2024-Q2", 1, &agg))
                .await,
            Code::Unauthenticated,
            "no lacnet identity",
        );
    }
    // A Thurrock certificate from another CA: refused in the TLS handshake,
    // before any gRPC exchange, so the client sees a failed call.
    let rogue = hub
        .submit(&pki.rogue, submission(THURROCK, "2024-Q2", 1, &agg))
        .await;
    assert!(rogue.is_err(), "{rogue:?}");
    // No client certificate at all: also refused in the handshake.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca.ca_pem()))
        .domain_name("localhost");
    let no_cert = async {
        let channel = tonic::transport::Endpoint::from_shared(hub.url())?
            .tls_config(tls)?
            .connect()
            .await?;
        lacnet_proto::hub::v1::submissions_client::SubmissionsClient::new(channel)
            .submit(hub::SubmitRequest {
                submission: Some(submission(THURROCK, "2024-Q2", 1, &agg)),
            })
            .await
            .map_err(Box::<dyn std::error::Error>::from)
    }
    .await;
    assert!(no_cert.is_err());
    let q2 = Period::parse("2024-Q2").unwrap();
    assert!(hub.hub.revisions(THURROCK, q2).unwrap().is_empty());
    assert_eq!(
        hub.hub
            .current_revision(DERBY, Period::parse("2024-Q1").unwrap()),
        None
    );

    // Reading: analysts and (by default) sites see the network; councils and
    // unidentified callers do not.
    let req = compare_request(DAY, "2024-Q1", "2024-Q1");
    let analyst = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(req.clone())
        .await
        .unwrap();
    assert_eq!(analyst.into_inner().periods[0].sites.len(), 1);
    assert!(
        hub.reports(&pki.derby)
            .await
            .compare_metric(req.clone())
            .await
            .is_ok()
    );
    assert_code(
        hub.reports(&pki.council)
            .await
            .compare_metric(req.clone())
            .await,
        Code::PermissionDenied,
        "council",
    );
    assert_code(
        hub.reports(&pki.anonymous)
            .await
            .list_sites(hub::ListSitesRequest {})
            .await,
        Code::Unauthenticated,
        "no lacnet identity",
    );

    // Every refusal is in the audit log with the caller's identity.
    let log = hub.hub.audit_log().unwrap();
    let refused: Vec<_> = log.iter().filter(|e| e.outcome == "refused").collect();
    let peers: Vec<&str> = refused.iter().map(|e| e.peer.as_str()).collect();
    assert!(peers.contains(&"site:E06000034"), "{peers:?}");
    assert!(peers.contains(&"analyst:alice"), "{peers:?}");
    assert!(peers.contains(&"council:thurrock"), "{peers:?}");
    assert!(peers.contains(&"unknown"), "{peers:?}");
    assert_eq!(refused.len(), 9, "{refused:#?}");
    assert!(
        log.iter()
            .any(|e| e.outcome == "new" && e.site.as_deref() == Some(THURROCK))
    );
    let m = hub.hub.metrics();
    assert_eq!(
        m.submissions
            .get(SubmissionOutcome::RejectedPermissionDenied),
        3
    );
    assert_eq!(
        m.submissions
            .get(SubmissionOutcome::RejectedUnauthenticated),
        4
    );
    hub.stop().await;
}

#[tokio::test]
async fn sites_see_only_their_own_rows_when_the_switch_is_off() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |o| o.sites_see_network = false).await;
    for (pem, site) in [(&pki.thurrock, THURROCK), (&pki.derby, DERBY)] {
        hub.submit(
            pem,
            submission(site, "2024-Q1", 1, &aggregates(200, 100, 40, 20)),
        )
        .await
        .unwrap();
    }
    let req = compare_request(DAY, "2024-Q1", "2024-Q1");
    let own = hub
        .reports(&pki.thurrock)
        .await
        .compare_metric(req.clone())
        .await
        .unwrap();
    let rows = &own.get_ref().periods[0].sites;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].site_code, THURROCK);
    assert_eq!(
        own.get_ref().periods[0].value_summary.unwrap().sites_known,
        1
    );
    let sites = hub
        .reports(&pki.thurrock)
        .await
        .list_sites(hub::ListSitesRequest {})
        .await
        .unwrap();
    assert_eq!(sites.get_ref().sites.len(), 1);
    let summary = hub
        .reports(&pki.thurrock)
        .await
        .network_summary(hub::NetworkSummaryRequest {
            period: quarter("2024-Q1"),
        })
        .await
        .unwrap();
    assert_eq!(summary.get_ref().sites_submitted, 1);
    // Analysts still see everyone.
    let all = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(req)
        .await
        .unwrap();
    assert_eq!(all.get_ref().periods[0].sites.len(), 2);
    hub.stop().await;
}

#[tokio::test]
async fn duplicate_superseding_and_late_old_revisions() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let q1 = Period::parse("2024-Q1").unwrap();
    let v1 = submission(THURROCK, "2024-Q1", 1, &aggregates(200, 100, 40, 20));
    let v2 = submission(THURROCK, "2024-Q1", 2, &aggregates(200, 100, 50, 20));
    let v3 = submission(THURROCK, "2024-Q1", 3, &aggregates(200, 100, 60, 20));

    let r = hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    assert_eq!(
        (r.status, r.current_revision),
        (hub::ReceiptStatus::New as i32, 1)
    );
    let r = hub.submit(&pki.thurrock, v1.clone()).await.unwrap();
    assert_eq!(
        (r.status, r.current_revision),
        (hub::ReceiptStatus::Duplicate as i32, 1)
    );
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![1]);

    let r = hub.submit(&pki.thurrock, v3.clone()).await.unwrap();
    assert_eq!(
        (r.status, r.current_revision),
        (hub::ReceiptStatus::New as i32, 3)
    );
    // Revision 2 arrives late: refused, not stored (the hub keeps only the current release).
    let r = hub.submit(&pki.thurrock, v2).await.unwrap();
    assert_eq!(
        (r.status, r.current_revision),
        (hub::ReceiptStatus::Superseded as i32, 3)
    );
    assert_eq!(hub.hub.revisions(THURROCK, q1).unwrap(), vec![3]);
    assert_eq!(hub.hub.current_revision(THURROCK, q1), Some(3));

    // Reports use the latest revision only.
    let report = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request(DAY, "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    let row = &report.periods[0].sites[0];
    assert_eq!((value(&row.value), row.revised), (Some(60), true));

    // Same revision, different content: refused, nothing overwritten.
    let mut clash = submission(THURROCK, "2024-Q1", 3, &aggregates(200, 100, 70, 20));
    clash.generated_at_unix += 1;
    assert_code(
        hub.submit(&pki.thurrock, clash).await,
        Code::AlreadyExists,
        "revision 3",
    );
    assert_eq!(hub.hub.current_revision(THURROCK, q1), Some(3));
    let m = hub.hub.metrics();
    assert_eq!(
        (
            m.submissions.get(SubmissionOutcome::New),
            m.submissions.get(SubmissionOutcome::Duplicate),
            m.submissions.get(SubmissionOutcome::Superseded)
        ),
        (2, 1, 1)
    );
    hub.stop().await;
}

#[tokio::test]
async fn invalid_and_non_disclosive_submissions_are_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // Today is fixed, so "the future" is the next quarter, not a far-off year.
    let clock = MockClock::at_date("2024-06-30").unwrap();
    let hub = TestHub::start(&pki, dir.path(), move |o| o.clock = Arc::new(clock)).await;
    let agg = aggregates(200, 100, 40, 20);
    let policy = DisclosurePolicy::default();

    // Unknown site (a valid certificate for a code not in the registry).
    assert_code(
        hub.submit(&pki.unlisted, submission(UNLISTED, "2024-Q1", 1, &agg))
            .await,
        Code::InvalidArgument,
        "not a site in the network registry",
    );
    // A period in the future: the quarter after the clock's today.
    assert_code(
        hub.submit(&pki.thurrock, submission(THURROCK, "2024-Q3", 1, &agg))
            .await,
        Code::InvalidArgument,
        "submission.period",
    );
    // Cumbria's code was retired on 2023-03-31: later periods are refused, earlier ones accepted.
    assert_code(
        hub.submit(&pki.cumbria, submission(CUMBRIA, "2023-Q2", 1, &agg))
            .await,
        Code::InvalidArgument,
        "retired on 2023-03-31",
    );
    hub.submit(&pki.cumbria, submission(CUMBRIA, "2023-Q1", 1, &agg))
        .await
        .unwrap();
    // Wrong digest.
    let mut wrong = submission(THURROCK, "2024-Q1", 1, &agg);
    wrong.digest = "0".repeat(64);
    assert_code(
        hub.submit(&pki.thurrock, wrong).await,
        Code::InvalidArgument,
        "submission.digest",
    );
    // Unknown metric.
    let mut unknown = submission(THURROCK, "2024-Q1", 1, &agg);
    unknown.cells[5].metric = "outcome.won_the_lottery".into();
    assert_code(
        hub.submit(&pki.thurrock, unknown).await,
        Code::InvalidArgument,
        "won_the_lottery",
    );
    // A 0 shown where the threshold withholds it is refused, unless the site
    // declares it a structural zero (a category it never serves); a
    // declaration must name a metric published as 0.
    let fy = "FY2023";
    let mut zero = disclosure::apply(&agg, &policy);
    let under_18 = lacnet_core::structural::NeverServed::parse(&["age_band.under_18"]).unwrap();
    let ids: Vec<String> = (0..metrics::METRIC_COUNT)
        .filter(|i| under_18.zero_cells()[*i])
        .map(|i| {
            zero.counts[i] = Count::Value(0);
            catalogue().def(i).id.clone()
        })
        .collect();
    assert_code(
        hub.submit(&pki.thurrock, submission_of(THURROCK, fy, 1, &zero, policy))
            .await,
        Code::FailedPrecondition,
        "age_band.under_18",
    );
    let mut declared = submission_of(THURROCK, fy, 1, &zero, policy);
    declared.structural_zeros = vec!["outcome.won_the_lottery".into()];
    assert_code(
        hub.submit(&pki.thurrock, declared.clone()).await,
        Code::InvalidArgument,
        "structural_zeros[0]",
    );
    // Hostile sizes: more declarations than the catalogue has figures, and
    // a 1 MiB name, are refused without echoing the name.
    declared.structural_zeros = vec!["age_band.under_18".into(); metrics::METRIC_COUNT + 1];
    assert_code(
        hub.submit(&pki.thurrock, declared.clone()).await,
        Code::InvalidArgument,
        "submission.structural_zeros",
    );
    declared.structural_zeros = vec!["x".repeat(1 << 20)];
    let huge = hub
        .submit(&pki.thurrock, declared.clone())
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::InvalidArgument);
    assert!(huge.message().len() < 200, "{}", huge.message().len());
    declared.structural_zeros = vec!["age_band.18_24".into()];
    assert_code(
        hub.submit(&pki.thurrock, declared.clone()).await,
        Code::InvalidArgument,
        "not published as 0",
    );
    // Declaring the band alone leaves its zero by level withheld, which the
    // published 0 pins: every figure of the category is declared.
    declared.structural_zeros = vec!["age_band.under_18".into()];
    assert_code(
        hub.submit(&pki.thurrock, declared.clone()).await,
        Code::FailedPrecondition,
        "level_1.age_group.under_18",
    );
    declared.structural_zeros = ids;
    hub.submit(&pki.thurrock, declared).await.unwrap();
    // A part larger than its total (digest correct, cells rounded and unsuppressed).
    let mut published = disclosure::apply(&agg, &policy);
    published.counts[metrics::support_level(SupportLevel::Level1)] = Count::Value(500);
    assert_code(
        hub.submit(
            &pki.thurrock,
            submission_of(THURROCK, "2024-Q1", 1, &published, policy),
        )
        .await,
        Code::InvalidArgument,
        "support_level",
    );
    // A count of 3 published unsuppressed breaks the threshold.
    let mut leaky = disclosure::apply(&agg, &policy);
    leaky.counts[metrics::outcome(Outcome::Volunteering)] = Count::Value(3);
    assert_code(
        hub.submit(
            &pki.thurrock,
            submission_of(THURROCK, "2024-Q1", 1, &leaky, policy),
        )
        .await,
        Code::FailedPrecondition,
        "metric outcome.volunteering: value 3 is within the suppression threshold 7",
    );
    // A value that is not rounded to the base.
    let mut unrounded = disclosure::apply(&agg, &policy);
    unrounded.counts[metrics::outcome(Outcome::Volunteering)] = Count::Value(12);
    assert_code(
        hub.submit(
            &pki.thurrock,
            submission_of(THURROCK, "2024-Q1", 1, &unrounded, policy),
        )
        .await,
        Code::FailedPrecondition,
        "must be rounded to base 5",
    );
    // A site policy looser than the network's.
    let loose = DisclosurePolicy {
        threshold: 5,
        ..policy
    };
    let published = disclosure::apply(&agg, &loose);
    assert_code(
        hub.submit(
            &pki.thurrock,
            submission_of(THURROCK, "2024-Q1", 1, &published, loose),
        )
        .await,
        Code::FailedPrecondition,
        "looser than the network policy",
    );
    let q1 = Period::parse("2024-Q1").unwrap();
    assert!(hub.hub.revisions(THURROCK, q1).unwrap().is_empty());
    let log = hub.hub.audit_log().unwrap();
    let refusals: Vec<_> = log.iter().filter(|e| e.outcome == "refused").collect();
    assert_eq!(refusals.len(), 15, "{refusals:#?}");
    assert!(refusals.iter().any(|e| {
        e.reason
            .as_deref()
            .unwrap_or("")
            .contains("outcome.volunteering")
            && e.peer == "site:E06000034"
            && e.period.as_deref() == Some("2024-Q1")
    }));
    assert_eq!(
        hub.hub
            .metrics()
            .submissions
            .get(SubmissionOutcome::RejectedPolicyViolation),
        5
    );
    hub.stop().await;
}

const Z_95: f64 = 1.959964;
const Z_998: f64 = 3.090232;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn report_numbers_match_a_hand_computation() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    // Thurrock (134,700 adults): 200 active, 40 with an alternative to day services, 20 less GP use.
    hub.submit(
        &pki.thurrock,
        submission(THURROCK, "2024-Q1", 1, &aggregates(200, 100, 40, 20)),
    )
    .await
    .unwrap();
    // Derby (205,000 adults): 300 active, 30 and 15.
    hub.submit(
        &pki.derby,
        submission(DERBY, "2024-Q1", 1, &aggregates(300, 150, 30, 15)),
    )
    .await
    .unwrap();
    // Swansea (198,000 adults): 3 with an alternative to day services, so it is suppressed.
    hub.submit(
        &pki.swansea,
        submission(SWANSEA, "2024-Q1", 1, &aggregates(100, 50, 3, 10)),
    )
    .await
    .unwrap();
    // Thurrock's later quarters rise: 45 and 50 of 200.
    hub.submit(
        &pki.thurrock,
        submission(THURROCK, "2024-Q2", 1, &aggregates(200, 100, 45, 20)),
    )
    .await
    .unwrap();
    hub.submit(
        &pki.thurrock,
        submission(THURROCK, "2024-Q3", 1, &aggregates(200, 100, 50, 20)),
    )
    .await
    .unwrap();

    let report = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request(DAY, "2024-Q1", "2024-Q3"))
        .await
        .unwrap()
        .into_inner();
    let metric = report.metric.unwrap();
    assert_eq!(metric.denominator, "people_active");
    assert_eq!(metric.unit_cost_pence, Some(40_000));
    assert_eq!(report.periods.len(), 3);
    let q1 = &report.periods[0];
    let row = |code: &str| q1.sites.iter().find(|s| s.site_code == code).unwrap();
    let (t, d, s) = (row(THURROCK), row(DERBY), row(SWANSEA));

    // Values, rates per 10,000 adults and shares, by hand.
    assert_eq!((value(&t.value), value(&d.value)), (Some(40), Some(30)));
    assert!(is_suppressed(&s.value), "suppressed stays suppressed");
    let t_rate = 40.0 * 10_000.0 / 134_700.0; // 2.9695...
    let d_rate = 30.0 * 10_000.0 / 205_000.0; // 1.4634...
    assert!(close(t.rate_per_10k.unwrap(), t_rate));
    assert!(close(d.rate_per_10k.unwrap(), d_rate));
    assert_eq!(s.rate_per_10k, None);
    assert_eq!((t.share, d.share, s.share), (Some(0.2), Some(0.1), None));
    assert_eq!((t.rank, d.rank, s.rank), (1, 2, 0));
    assert_eq!((t.adult_population, t.revised), (134_700, false));
    assert_eq!(
        t.policy,
        Some(lacnet_proto::convert::policy_to_proto(
            &DisclosurePolicy::default()
        ))
    );
    assert_eq!(t.site_name, "Thurrock");

    // Network median and range.
    let v = q1.value_summary.unwrap();
    assert_eq!(
        (v.median, v.min, v.max),
        (Some(35.0), Some(30.0), Some(40.0))
    );
    assert_eq!((v.sites_known, v.sites_suppressed), (2, 1));
    let r = q1.rate_summary.unwrap();
    assert!(close(r.median.unwrap(), (t_rate + d_rate) / 2.0));
    assert!(close(r.min.unwrap(), d_rate) && close(r.max.unwrap(), t_rate));

    // Funnel: pooled target 70 / 500 = 0.14.
    let target = 0.14;
    assert!(close(q1.funnel_target.unwrap(), target));
    // Thurrock, n = 200: se = 0.024536, 95% upper 0.1881 < 0.2 < 99.8% upper 0.2158.
    let se_t = (target * (1.0 - target) / 200.0_f64).sqrt();
    let lt = t.funnel_limits.unwrap();
    assert!(close(lt.upper_95, target + Z_95 * se_t) && close(lt.upper_998, target + Z_998 * se_t));
    assert_eq!(t.funnel_flag, hub::FunnelFlag::Above95 as i32);
    // Derby, n = 300: 99.8% lower 0.0781 < 0.1 < 95% lower 0.1007.
    let se_d = (target * (1.0 - target) / 300.0_f64).sqrt();
    assert!(close(
        d.funnel_limits.unwrap().lower_95,
        target - Z_95 * se_d
    ));
    assert_eq!(d.funnel_flag, hub::FunnelFlag::Below95 as i32);
    assert_eq!(s.funnel_flag, hub::FunnelFlag::NotApplicable as i32);

    // Trends: Thurrock rises by 5 per 134,700 adults a quarter; Derby has one point.
    let trend = |code: &str| report.trends.iter().find(|t| t.site_code == code).unwrap();
    assert_eq!(
        trend(THURROCK).direction,
        hub::TrendDirection::Rising as i32
    );
    assert!(close(
        trend(THURROCK).slope_per_period.unwrap(),
        5.0 * 10_000.0 / 134_700.0
    ));
    assert_eq!(trend(THURROCK).points_known, 3);
    assert_eq!(
        trend(DERBY).direction,
        hub::TrendDirection::Insufficient as i32
    );
    // Sites in the registry with nothing submitted still get a (insufficient) trend.
    assert_eq!(report.trends.len(), shipped_registry().sites().len());

    // Estimated cost avoided: day services £400, GP visit £40, assessment £300 (not reported here).
    let summary = hub
        .reports(&pki.analyst)
        .await
        .network_summary(hub::NetworkSummaryRequest {
            period: quarter("2024-Q1"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.sites_submitted, 3);
    // A quarter's summary lists the figures a quarter carries.
    let carried = lacnet_core::release::carried(lacnet_core::Granularity::Quarter);
    assert_eq!(
        summary.metrics.len(),
        carried.iter().filter(|c| **c).count()
    );
    let cost = |code: &str| {
        summary
            .cost_avoided
            .iter()
            .find(|c| c.site_code == code)
            .unwrap()
    };
    // Partial: the priced outcomes Thurrock did not achieve are true zeros,
    // withheld as small counts, so the figure is "at least".
    assert_eq!(
        (cost(THURROCK).cost_avoided_pence, cost(THURROCK).partial),
        (40 * 40_000 + 20 * 4_000, true)
    );
    assert_eq!(
        (cost(DERBY).cost_avoided_pence, cost(DERBY).partial),
        (30 * 40_000 + 15 * 4_000, true)
    );
    // Swansea's day-service count is suppressed: only its GP figure counts, and it is partial.
    assert_eq!(
        (cost(SWANSEA).cost_avoided_pence, cost(SWANSEA).partial),
        (10 * 4_000, true)
    );
    assert_eq!(
        summary.network_cost_avoided_pence,
        1_680_000 + 1_260_000 + 40_000
    );

    // A plain count metric: rate but no share or funnel.
    let people = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request("people_new", "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    let t = people.periods[0]
        .sites
        .iter()
        .find(|s| s.site_code == THURROCK)
        .unwrap();
    assert!(close(t.rate_per_10k.unwrap(), 100.0 * 10_000.0 / 134_700.0));
    assert_eq!(
        (t.share, t.funnel_flag),
        (None, hub::FunnelFlag::NotApplicable as i32)
    );

    // ListSites names each site's policy and last submission.
    let sites = hub
        .reports(&pki.analyst)
        .await
        .list_sites(hub::ListSitesRequest {})
        .await
        .unwrap()
        .into_inner();
    let thurrock = sites.sites.iter().find(|s| s.code == THURROCK).unwrap();
    assert!(thurrock.policy.is_some());
    assert!(!thurrock.last_submission.as_ref().unwrap().revised);
    let cumbria = sites.sites.iter().find(|s| s.code == CUMBRIA).unwrap();
    assert_eq!(
        (cumbria.valid_until.as_str(), cumbria.policy),
        ("2023-03-31", None)
    );
    let metrics = hub
        .reports(&pki.analyst)
        .await
        .list_metrics(hub::ListMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metrics.metrics.len(), catalogue().metrics().len());

    // Bad report requests.
    let mut reports = hub.reports(&pki.analyst).await;
    assert_code(
        reports
            .compare_metric(compare_request("nope", "2024-Q1", "2024-Q1"))
            .await,
        Code::InvalidArgument,
        "metric",
    );
    assert_code(
        reports
            .compare_metric(compare_request(DAY, "2024-Q3", "2024-Q1"))
            .await,
        Code::InvalidArgument,
        "before",
    );
    assert_code(
        reports
            .compare_metric(compare_request(DAY, "2000-Q1", "2060-Q1"))
            .await,
        Code::InvalidArgument,
        "at most 200",
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let q1 = Period::parse("2024-Q1").unwrap();
    let first = TestHub::start(&pki, dir.path(), |_| {}).await;
    first
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", 1, &aggregates(200, 100, 40, 20)),
        )
        .await
        .unwrap();
    first
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", 3, &aggregates(200, 100, 50, 20)),
        )
        .await
        .unwrap();
    first
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", 2, &aggregates(200, 100, 45, 20)),
        )
        .await
        .unwrap();
    first
        .submit(
            &pki.derby,
            submission(DERBY, "2024-Q1", 1, &aggregates(300, 150, 30, 15)),
        )
        .await
        .unwrap();
    let _ = first
        .submit(
            &pki.analyst,
            submission(THURROCK, "2024-Q1", 9, &aggregates(1, 1, 1, 1)),
        )
        .await;
    let before = first
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request(DAY, "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    let audit_before = first.hub.audit_log().unwrap();
    drop(first.stop().await);

    let second = TestHub::start(&pki, dir.path(), |_| {}).await;
    assert_eq!(second.hub.revisions(THURROCK, q1).unwrap(), vec![3]);
    assert_eq!(second.hub.current_revision(THURROCK, q1), Some(3));
    assert_eq!(second.hub.current_revision(DERBY, q1), Some(1));
    let after = second
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request(DAY, "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after);
    assert_eq!(after.periods[0].sites.len(), 2);
    let last = audit_before.last().unwrap();
    assert_eq!(
        (
            last.event.as_str(),
            last.peer.as_str(),
            last.outcome.as_str()
        ),
        ("compare_metric", "analyst:alice", "served"),
        "a report served is audited with its reader"
    );
    // Everything audited before the restart is still there, in order; the
    // report read just now is audited after it.
    let audit_after = second.hub.audit_log().unwrap();
    assert_eq!(audit_after[..audit_before.len()], audit_before[..]);
    assert_eq!(audit_after.len(), audit_before.len() + 1);
    // Idempotency survives the restart.
    let again = second
        .submit(
            &pki.thurrock,
            submission(THURROCK, "2024-Q1", 3, &aggregates(200, 100, 50, 20)),
        )
        .await
        .unwrap();
    assert_eq!(again.status, hub::ReceiptStatus::Duplicate as i32);
    second.stop().await;
}

#[tokio::test]
async fn concurrent_revisions_of_one_period_settle_on_the_highest() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;
    let channel = hub.channel(&pki.thurrock).await;
    let mut tasks = Vec::new();
    for rev in 1..=24u64 {
        let mut client =
            lacnet_proto::hub::v1::submissions_client::SubmissionsClient::new(channel.clone());
        // Each revision has different content (active people 200 + 5·rev).
        let sub = submission(
            THURROCK,
            "2024-Q1",
            rev,
            &aggregates(200 + 5 * rev, 100, 40, 20),
        );
        tasks.push(tokio::spawn(async move {
            client
                .submit(hub::SubmitRequest {
                    submission: Some(sub),
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut new = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            r.current_revision >= r.revision || r.status == hub::ReceiptStatus::Superseded as i32
        );
        if r.status == hub::ReceiptStatus::New as i32 {
            new += 1;
        }
    }
    assert!(new >= 1);
    let q1 = Period::parse("2024-Q1").unwrap();
    assert_eq!(hub.hub.current_revision(THURROCK, q1), Some(24));
    assert_eq!(
        hub.hub.revisions(THURROCK, q1).unwrap(),
        vec![24],
        "only the current release is kept"
    );
    let report = hub
        .reports(&pki.analyst)
        .await
        .compare_metric(compare_request("people_active", "2024-Q1", "2024-Q1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(&report.periods[0].sites[0].value), Some(200 + 5 * 24));
    hub.stop().await;
}
