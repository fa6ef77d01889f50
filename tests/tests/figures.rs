//! The figures sites publish about themselves, through the whole network:
//! spans (the financial year, the programme to date), Level 2 alone, outcomes
//! counted once, cost avoided, and the council's own exact evaluation table.
//!
//! Thurrock follows the seeds' evaluation: 256 people aged 18 to 98 in the
//! programme's first 14 months, 31% older people, 27% mental health, 19
//! alternatives to day services, 18 volunteering. Derby has about 50 people
//! at Level 2 in a financial year (plus Level 1 contacts), whose cases stay
//! open across all four quarters, some introduced twice and achieving the
//! same outcome twice. Every expected figure is worked out here from the
//! records the test sends, with plain dates and sets, not with lacnet-core's
//! aggregation.

use lacnet_clock::MockClock;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lacnet_core::disclosure::Count;
use lacnet_core::{Date, Granularity, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::period_to_proto;
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{AgentOptions, HubTarget};
use lacnet_testkit::network::*;
use tonic::transport::Channel;

/// A month after FY2024 closed: every period the test reads is past its embargo.
const TODAY: &str = "2025-04-30";
const THURROCK_START: &str = "2023-06-01";
const DERBY_START: &str = "2024-04-01";
/// Thurrock's first 14 months: June 2023 to July 2024.
const THURROCK_WINDOW: &str = "PTD2024-07";
const FY: &str = "FY2024";
const FY_QUARTERS: [&str; 4] = ["2024-Q2", "2024-Q3", "2024-Q4", "2025-Q1"];

const DAY_SERVICES: i32 = pb::Outcome::AlternativeToDayServices as i32;
const VOLUNTEERING: i32 = pb::Outcome::Volunteering as i32;
const GP: i32 = pb::Outcome::ReducedGpAeUse as i32;
const CRISIS: i32 = pb::Outcome::CrisisAvoided as i32;

const THURROCK_2023: u64 = 135_000;
const THURROCK_2024: u64 = 136_500;

fn registry() -> String {
    let mut r = format!(
        r#"
[policy]
threshold = 7
rounding_base = 5
secondary_suppression = true

[[sites]]
code = "{DERBY}"
name = "Derby"
granularity = "quarter"
adult_population = {DERBY_ADULTS}

[[sites]]
code = "{THURROCK}"
name = "Thurrock"
granularity = "month"
adult_population = {THURROCK_2024}
populations = [{{ year = 2023, adults = {THURROCK_2023} }}, {{ year = 2024, adults = {THURROCK_2024} }}]

[[unit_costs]]
outcome = "alternative_to_day_services"
pence = {DAY_SERVICES_PENCE}
source = "test figure"

[[unit_costs]]
outcome = "reduced_gp_ae_use"
pence = {GP_PENCE}
source = "test figure"
"#
    );
    for o in [
        "crisis_avoided",
        "community_connection",
        "volunteering",
        "tenancy_sustained",
        "social_care_referral_avoided",
        "training_employment",
        "carer_supported",
    ] {
        r.push_str(&format!(
            "\n[[unit_cost_exclusions]]\noutcome = \"{o}\"\nreason = \"not costed in this test\"\n"
        ));
    }
    r
}

fn day(d: &str) -> Date {
    Date::parse(d).unwrap()
}

fn plus(d: &str, days: i64) -> String {
    Date::from_days_since_epoch(day(d).days_since_epoch() + days).to_string()
}

/// One introduction as the test sends it and models it.
#[derive(Clone)]
struct Intro {
    case: String,
    nhs: String,
    introduced_on: String,
    closed_on: Option<String>,
    last_contact_on: String,
    level: i32,
    age: u32,
    need: i32,
    source: i32,
    dated: Vec<(i32, String)>,
}

impl Intro {
    fn to_proto(&self) -> site::Record {
        site::Record {
            local_case_id: self.case.clone(),
            nhs_number: self.nhs.clone(),
            introduced_on: self.introduced_on.clone(),
            closed_on: self.closed_on.clone().unwrap_or_default(),
            support_level: self.level,
            age: Some(site::record::Age::AgeYears(self.age)),
            primary_need: self.need,
            introduction_source: self.source,
            ward_code: "E05002035".into(),
            last_contact_on: self.last_contact_on.clone(),
            dated_outcomes: self
                .dated
                .iter()
                .map(|(o, on)| site::DatedOutcome {
                    outcome: *o,
                    achieved_on: on.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Open at some time in `[start, end]` (these records never go quiet:
    /// the last contact is recent enough, checked in the test).
    fn active(&self, start: &str, end: &str) -> bool {
        self.introduced_on.as_str() <= end && self.closed_on.as_deref().is_none_or(|c| c >= start)
    }
}

/// Thurrock's first 14 months, as the seeds describe them.
fn thurrock() -> Vec<Intro> {
    (0..256u32)
        .map(|i| {
            let introduced_on = plus(THURROCK_START, i64::from(i) * 426 / 256);
            let need = if i < 79 {
                1 // older people / frailty: 79 of 256 = 31%
            } else if i < 148 {
                2 // mental health: 69 of 256 = 27%
            } else {
                3 + (i % 8) as i32
            };
            let mut dated = Vec::new();
            // 19 alternatives to day services and 18 volunteering, within the window.
            if i % 12 == 3 && i < 3 + 12 * 19 {
                dated.push((DAY_SERVICES, plus(&introduced_on, 30)));
            }
            if i % 12 == 8 && i < 8 + 12 * 18 {
                dated.push((VOLUNTEERING, plus(&introduced_on, 30)));
            }
            // One more volunteer after the window: in the later programme to date only.
            if i == 250 {
                dated.push((VOLUNTEERING, "2024-09-15".into()));
            }
            Intro {
                case: format!("THK-{i:05}"),
                nhs: nhs(401_300_000 + 7919 * u64::from(i)),
                closed_on: (i % 3 == 0).then(|| plus(&introduced_on, 90)),
                last_contact_on: plus(&introduced_on, 60),
                introduced_on,
                level: if i % 20 < 11 { 2 } else { 1 },
                age: 18 + i * 80 / 255,
                need,
                source: 1 + (i % 9) as i32,
                dated,
            }
        })
        .collect()
}

/// Derby's financial year 2024/25: 50 people at Level 2, open across the
/// year and in touch in March; 7 of them introduced a second time and
/// achieving reduced GP use again; 30 Level 1 contacts closed the next day.
fn derby() -> Vec<Intro> {
    let mut out = Vec::new();
    for k in 0..50u32 {
        let introduced_on = plus("2024-04-02", i64::from(k) * 3);
        let mut dated = Vec::new();
        if k < 12 {
            dated.push((DAY_SERVICES, plus(&introduced_on, 100)));
        }
        if (10..32).contains(&k) {
            dated.push((GP, plus(&introduced_on, 40)));
        }
        if k % 4 == 0 {
            dated.push((CRISIS, plus(&introduced_on, 10)));
        }
        out.push(Intro {
            case: format!("DBY/{:06}", 500_000 + k),
            nhs: nhs(612_100_000 + 4099 * u64::from(k)),
            closed_on: (k % 5 == 0).then(|| "2025-02-15".to_owned()),
            last_contact_on: "2025-02-15".into(),
            introduced_on,
            level: 2,
            age: 30 + k,
            need: if k % 3 == 0 { 2 } else { 1 + (k % 10) as i32 },
            source: 1 + (k % 9) as i32,
            dated,
        });
    }
    for k in 10..17u32 {
        out.push(Intro {
            case: format!("DBY/{:06}", 600_000 + k),
            nhs: nhs(612_100_000 + 4099 * u64::from(k)),
            introduced_on: "2024-11-01".into(),
            closed_on: None,
            last_contact_on: "2025-03-01".into(),
            level: 2,
            age: 30 + k,
            need: 2,
            source: 3,
            dated: vec![(GP, "2025-01-10".into())],
        });
    }
    for m in 0..30u32 {
        let introduced_on = plus("2024-05-01", i64::from(m) * 5);
        out.push(Intro {
            case: format!("DBY/{:06}", 700_000 + m),
            nhs: nhs(612_900_000 + 4099 * u64::from(m)),
            closed_on: Some(plus(&introduced_on, 1)),
            last_contact_on: introduced_on.clone(),
            dated: if m < 15 {
                vec![(GP, introduced_on.clone())]
            } else {
                vec![]
            },
            introduced_on,
            level: 1,
            age: 40 + m,
            need: 9,
            source: 1,
        });
    }
    out
}

/// Distinct people (NHS numbers) at `level` (0: any) who achieved `outcome` in `[start, end]`.
fn achieved(records: &[Intro], level: i32, outcome: i32, start: &str, end: &str) -> u64 {
    records
        .iter()
        .filter(|r| level == 0 || r.level == level)
        .filter(|r| {
            r.dated
                .iter()
                .any(|(o, on)| *o == outcome && start <= on.as_str() && on.as_str() <= end)
        })
        .map(|r| r.nhs.clone())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

/// Distinct people at `level` (0: any) active in `[start, end]`.
fn active_people(records: &[Intro], level: i32, start: &str, end: &str) -> u64 {
    records
        .iter()
        .filter(|r| (level == 0 || r.level == level) && r.active(start, end))
        .map(|r| r.nhs.clone())
        .collect::<BTreeSet<_>>()
        .len() as u64
}

fn bounds(p: &str) -> (String, String) {
    let p = Period::parse(p).unwrap();
    (p.start().to_string(), p.end().to_string())
}

fn period_pb(p: &str) -> Option<pb::Period> {
    Some(period_to_proto(Period::parse(p).unwrap()))
}

struct Council {
    agent: TestAgent,
    client: SiteAgentClient<Channel>,
    operator: SiteAgentClient<Channel>,
    pki: CouncilPki,
}

async fn council(
    net: &NetworkPki,
    hub: &TestHub,
    code: &str,
    name: &str,
    start: &str,
    granularity: Granularity,
    root: &std::path::Path,
) -> Council {
    let pki = CouncilPki::new(name);
    let key_path = root.join(format!("{name}-hmac.key"));
    random_key_file(&key_path, "k1");
    let keys = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path)]).unwrap();
    let mut o = AgentOptions::new(
        root.join(format!("{name}-agent")),
        code,
        keys,
        pki.agent.clone(),
    );
    o.hub = Some(HubTarget {
        url: hub.url(),
        server_name: HUB_NAME.into(),
        tls: net.site(code),
    });
    o.granularity = granularity;
    o.programme_start = Some(day(start));
    o.publish_debounce = Duration::from_millis(50);
    o.push_backoff_base = Duration::from_millis(20);
    o.push_backoff_cap = Duration::from_millis(200);
    o.cache_bytes = 8 * 1024 * 1024;
    o.clock = std::sync::Arc::new(MockClock::at_date(TODAY).unwrap());
    let agent = TestAgent::start(&pki, o).await;
    let client = agent.client(&pki.council).await;
    let operator = agent.client(&pki.operator).await;
    Council {
        agent,
        client,
        operator,
        pki,
    }
}

impl Council {
    async fn upsert(&mut self, records: &[Intro]) {
        let reply = self
            .client
            .upsert_records(site::UpsertRecordsRequest {
                records: records.iter().map(Intro::to_proto).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.rejected, 0, "{:?}", reply.verdicts);
    }

    async fn evaluation(&self, span: &str) -> BTreeMap<String, u64> {
        let e = self
            .operator
            .clone()
            .get_local_evaluation(site::LocalEvaluationRequest {
                span: period_pb(span),
            })
            .await
            .unwrap()
            .into_inner();
        e.cells.into_iter().map(|c| (c.metric, c.value)).collect()
    }
}

/// The hub's summary for `period` once it shows what `site`'s agent would send now.
async fn synced_summary(
    reports: &ReportsClient<Channel>,
    c: &Council,
    code: &str,
    period: &str,
) -> hub::NetworkSummaryResponse {
    poll(&format!("{code} {period} at the hub"), || async {
        if c.agent.agent.store().outbox_len() != 0 {
            return None;
        }
        // Settled: the outbox is empty and the agent has nothing new to
        // publish (its release is at the hub, or held, or embargoed).
        let preview = c
            .operator
            .clone()
            .preview_submission(site::PreviewSubmissionRequest {
                period: period_pb(period),
            })
            .await
            .ok()?
            .into_inner();
        if preview.decision == "publish" {
            return None;
        }
        let s = reports
            .clone()
            .network_summary(hub::NetworkSummaryRequest {
                period: period_pb(period),
            })
            .await
            .ok()?
            .into_inner();
        s.metrics
            .first()?
            .comparison
            .as_ref()?
            .sites
            .iter()
            .find(|r| r.site_code == code)?;
        Some(s)
    })
    .await
}

fn cell(s: &hub::NetworkSummaryResponse, code: &str, metric: &str) -> Count {
    // The summary lists only the figures the period kind carries.
    let Some(snap) = s
        .metrics
        .iter()
        .find(|m| m.metric.as_ref().unwrap().id == metric)
    else {
        return Count::NotReleased;
    };
    let row = snap
        .comparison
        .as_ref()
        .unwrap()
        .sites
        .iter()
        .find(|r| r.site_code == code)
        .unwrap_or_else(|| panic!("no {code} in {metric}"));
    count_of(row.value.as_ref())
}

/// Published within what rounding to 5 allows (or withheld), never further off.
fn within_rounding(published: Count, truth: u64, what: &str) {
    match published {
        Count::Value(v) => assert!(
            v.abs_diff(truth) <= 2 && v % 5 == 0,
            "{what}: {v} vs {truth}"
        ),
        Count::Suppressed => assert!(truth <= 7, "{what}: {truth} suppressed"),
        Count::NotReleased => panic!("{what}: not released for this kind of period"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_level_2_and_outcomes_counted_once_across_the_network() {
    let logs = LogCapture::default();
    logs.install();
    let root = tempfile::tempdir().unwrap();
    let net = NetworkPki::new();
    let registry_path = root.path().join("registry.toml");
    std::fs::write(&registry_path, registry()).unwrap();
    let hub = TestHub::start(&net, &root.path().join("hub"), &registry_path).await;
    let reports = hub.reports(&net.analyst).await;

    let mut thk = council(
        &net,
        &hub,
        THURROCK,
        "thurrock",
        THURROCK_START,
        Granularity::Month,
        root.path(),
    )
    .await;
    let mut dby = council(
        &net,
        &hub,
        DERBY,
        "derby",
        DERBY_START,
        Granularity::Quarter,
        root.path(),
    )
    .await;
    let thurrock = thurrock();
    let derby = derby();
    thk.upsert(&thurrock).await;
    dby.upsert(&derby).await;

    // 1. Thurrock's own evaluation table: exactly the seeds' figures.
    let (from, to) = (THURROCK_START, "2024-07-31");
    let ev = thk.evaluation(THURROCK_WINDOW).await;
    assert_eq!(ev["people_new"], 256);
    assert_eq!(ev["people_active"], 256);
    assert_eq!(ev["primary_need.older_people_frailty"], 79);
    assert_eq!(ev["primary_need.mental_health"], 69);
    assert_eq!((79.0f64 * 100.0 / 256.0).round(), 31.0);
    assert_eq!((69.0f64 * 100.0 / 256.0).round(), 27.0);
    assert_eq!(ev["outcome.alternative_to_day_services"], 19);
    assert_eq!(ev["outcome.volunteering"], 18);
    assert_eq!(achieved(&thurrock, 0, VOLUNTEERING, from, to), 18);
    let level_2 = thurrock.iter().filter(|r| r.level == 2).count() as u64;
    assert_eq!(ev["level_2.people_new"], level_2);
    assert_eq!(ev["support_level.level_2"], level_2);
    let full = thk
        .operator
        .clone()
        .get_local_evaluation(site::LocalEvaluationRequest {
            span: period_pb(THURROCK_WINDOW),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((full.from.as_str(), full.to.as_str()), (from, to));
    assert_eq!(
        (full.youngest_band.as_str(), full.oldest_band.as_str()),
        ("18_24", "85_plus")
    );
    assert_eq!(full.inactivity_months, 12);
    // The volunteer after the window counts in the later programme to date only.
    assert_eq!(
        thk.evaluation("PTD2024-09").await["outcome.volunteering"],
        19
    );

    // Only the council's operators read it; the case system and months are refused.
    let denied = thk
        .client
        .clone()
        .get_local_evaluation(site::LocalEvaluationRequest {
            span: period_pb(THURROCK_WINDOW),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let month = thk
        .operator
        .clone()
        .get_local_evaluation(site::LocalEvaluationRequest {
            span: period_pb("2024-07"),
        })
        .await
        .unwrap_err();
    assert_eq!(month.code(), tonic::Code::InvalidArgument);
    assert!(month.message().contains("span"), "{}", month.message());
    let _ = &thk.pki;

    // 2. The hub shows Thurrock's programme to date at the end of its first
    // financial year (June 2023 to March 2024), within rounding: the
    // programme to date is published at financial-year ends only, and counts
    // people (its events are the years' sums). The 14-month window the
    // seeds quote is the site's own evaluation above.
    let (w_start, w_end) = (THURROCK_START, "2024-03-31");
    let window: Vec<Intro> = thurrock
        .iter()
        .filter(|r| r.introduced_on.as_str() <= w_end)
        .cloned()
        .collect();
    let s = synced_summary(&reports, &thk, THURROCK, "PTD2024-03").await;
    let people_new = window.len() as u64;
    let level_2_new = window.iter().filter(|r| r.level == 2).count() as u64;
    for (metric, truth) in [
        ("people_new", people_new),
        ("people_active", active_people(&thurrock, 0, w_start, w_end)),
        ("level_2.people_new", level_2_new),
        (
            "level_2.people_active",
            active_people(&thurrock, 2, w_start, w_end),
        ),
    ] {
        within_rounding(cell(&s, THURROCK, metric), truth, metric);
    }
    let mut shown = 0;
    for (metric, outcome) in [
        ("outcome.alternative_to_day_services", DAY_SERVICES),
        ("outcome.volunteering", VOLUNTEERING),
    ] {
        let truth = achieved(&thurrock, 0, outcome, w_start, w_end);
        let c = cell(&s, THURROCK, metric);
        if let Count::Value(_) = c {
            shown += 1;
            within_rounding(c, truth, metric);
        } else {
            assert_eq!(c, Count::Suppressed, "{metric}");
        }
    }
    println!("Thurrock PTD2024-03: {shown} of 2 outcome figures published");
    // Needs are events, published for financial years, not the programme to date.
    assert_eq!(
        cell(&s, THURROCK, "primary_need.mental_health"),
        Count::NotReleased
    );
    assert!(
        s.metrics[0]
            .comparison
            .as_ref()
            .unwrap()
            .sites
            .iter()
            .all(|r| r.site_code == THURROCK),
        "Derby's programme starts in April 2024"
    );
    // A programme to date that does not end on 31 March is never published.
    let refused = dby
        .operator
        .clone()
        .preview_submission(site::PreviewSubmissionRequest {
            period: period_pb(THURROCK_WINDOW),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("31 March"),
        "{}",
        refused.message()
    );
    let asked = reports
        .clone()
        .network_summary(hub::NetworkSummaryRequest {
            period: period_pb(THURROCK_WINDOW),
        })
        .await
        .unwrap_err();
    assert_eq!(asked.code(), tonic::Code::InvalidArgument);
    assert!(
        asked.message().contains("PTD2025-03"),
        "{}",
        asked.message()
    );
    // Derby's programme started on 1 April 2024: its first programme to date
    // is its financial year, person for person.
    let derby_people = derby
        .iter()
        .filter(|r| r.introduced_on.as_str() <= "2025-03-31")
        .map(|r| r.nhs.clone())
        .collect::<BTreeSet<_>>()
        .len() as u64;
    let d = synced_summary(&reports, &dby, DERBY, "PTD2025-03").await;
    within_rounding(
        cell(&d, DERBY, "people_new"),
        derby_people,
        "Derby PTD2025-03",
    );

    // 3. Derby's financial year: distinct people, not the sum of its quarters.
    let fy = synced_summary(&reports, &dby, DERBY, FY).await;
    let (fy_start, fy_end) = bounds(FY);
    let l2_year = active_people(&derby, 2, &fy_start, &fy_end);
    assert_eq!(l2_year, 50);
    within_rounding(
        cell(&fy, DERBY, "level_2.people_active"),
        l2_year,
        "FY L2 people",
    );
    let mut quarter_sum = 0;
    for q in FY_QUARTERS {
        let (qs, qe) = bounds(q);
        let s = synced_summary(&reports, &dby, DERBY, q).await;
        let truth = active_people(&derby, 2, &qs, &qe);
        within_rounding(cell(&s, DERBY, "level_2.people_active"), truth, q);
        if let Count::Value(v) = cell(&s, DERBY, "level_2.people_active") {
            quarter_sum += v;
        }
    }
    let Count::Value(year_value) = cell(&fy, DERBY, "level_2.people_active") else {
        panic!("Derby's Level 2 people are withheld");
    };
    assert!(
        year_value * 3 <= quarter_sum,
        "{year_value} vs quarters {quarter_sum}"
    );

    // 4. Cost avoided at Level 2, recomputed here: each person's outcome once.
    let mut expected = 0;
    let mut per_quarter_open = 0;
    for (outcome, pence) in [(DAY_SERVICES, DAY_SERVICES_PENCE), (GP, GP_PENCE)] {
        let people = achieved(&derby, 2, outcome, &fy_start, &fy_end);
        expected += hand_protect(people).unwrap() * pence;
        // The old way: every quarter each person's open case carried the outcome.
        for q in FY_QUARTERS {
            let (qs, qe) = bounds(q);
            let carried: BTreeSet<&str> = derby
                .iter()
                .filter(|r| r.level == 2 && r.active(&qs, &qe))
                .filter(|r| r.dated.iter().any(|(o, _)| *o == outcome))
                .map(|r| r.nhs.as_str())
                .collect();
            per_quarter_open += carried.len() as u64 * pence;
        }
    }
    assert_eq!(
        achieved(&derby, 2, GP, &fy_start, &fy_end),
        22,
        "re-introductions count once"
    );
    let derby_cost = fy
        .cost_avoided
        .iter()
        .find(|c| c.site_code == DERBY)
        .unwrap();
    assert_eq!(derby_cost.level_2_cost_avoided_pence, expected);
    assert!(!derby_cost.level_2_partial);
    assert!(
        expected * 2 < per_quarter_open,
        "{expected} vs {per_quarter_open}"
    );
    // Level 1 contacts add to the all-levels figure only.
    let all_gp = achieved(&derby, 0, GP, &fy_start, &fy_end);
    assert_eq!(all_gp, 37);
    assert_eq!(
        derby_cost.cost_avoided_pence,
        hand_protect(achieved(&derby, 0, DAY_SERVICES, &fy_start, &fy_end)).unwrap()
            * DAY_SERVICES_PENCE
            + hand_protect(all_gp).unwrap() * GP_PENCE
    );
    // Crisis avoided is excluded, with the reason shown.
    let crisis = fy
        .metrics
        .iter()
        .find(|m| m.metric.as_ref().unwrap().id == "level_2.outcome.crisis_avoided")
        .unwrap()
        .metric
        .clone()
        .unwrap();
    assert_eq!(crisis.unit_cost_pence, None);
    assert!(!crisis.unit_cost_excluded_reason.is_empty());
    assert_eq!(crisis.across_periods, "distinct");
    assert_eq!(crisis.support_level, "level_2");

    // 5. Comparisons over spans: rates by the period's year, ranks, medians,
    // funnel limits and trends. People supported, a headline, is published
    // for both sites; a figure by level may be withheld to protect the other
    // level's (Thurrock's Level 2 people in FY2024, with the release plan in
    // which months carry no introductions by level).
    let _ = synced_summary(&reports, &thk, THURROCK, FY).await;
    let cmp = reports
        .clone()
        .compare_metric(hub::CompareMetricRequest {
            metric: "people_active".into(),
            from: period_pb("FY2023"),
            to: period_pb(FY),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cmp.periods.len(), 2);
    let fy23 = &cmp.periods[0];
    let t23 = fy23.sites.iter().find(|r| r.site_code == THURROCK).unwrap();
    assert_eq!(
        (t23.adult_population, t23.population_year),
        (THURROCK_2023, 2023)
    );
    assert!(
        fy23.sites.iter().all(|r| r.site_code != DERBY),
        "Derby has no FY2023"
    );
    let fy24 = &cmp.periods[1];
    assert_eq!(fy24.sites.len(), 2);
    let t24 = fy24.sites.iter().find(|r| r.site_code == THURROCK).unwrap();
    assert_eq!(
        (t24.adult_population, t24.population_year),
        (THURROCK_2024, 2024)
    );
    let d24 = fy24.sites.iter().find(|r| r.site_code == DERBY).unwrap();
    assert_eq!(
        (d24.adult_population, d24.population_year),
        (DERBY_ADULTS, 0)
    );
    for r in [t24, d24] {
        let v = match count_of(r.value.as_ref()) {
            Count::Value(v) => v,
            Count::Suppressed | Count::NotReleased => panic!("{} withheld", r.site_code),
        };
        let rate = r.rate_per_10k.unwrap();
        assert!((rate - v as f64 * 10_000.0 / r.adult_population as f64).abs() < 1e-9);
    }
    let mut ranks: Vec<u32> = fy24.sites.iter().map(|r| r.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, [1, 2]);
    let summary = fy24.rate_summary.as_ref().unwrap();
    assert_eq!(summary.sites_known, 2);
    let mid = (t24.rate_per_10k.unwrap() + d24.rate_per_10k.unwrap()) / 2.0;
    assert!((summary.median.unwrap() - mid).abs() < 1e-9);

    // Level 2's share of new introductions: a proportion with funnel limits.
    let share = reports
        .clone()
        .compare_metric(hub::CompareMetricRequest {
            metric: "support_level.level_2".into(),
            from: period_pb(FY),
            to: period_pb(FY),
        })
        .await
        .unwrap()
        .into_inner();
    let p = &share.periods[0];
    assert!(p.funnel_target.is_some());
    // Linked protection may withhold a site's Level 2 introductions for its
    // year (a quarterly site's quarters carry them). Derby (quarterly) shows.
    let shown: Vec<_> = p
        .sites
        .iter()
        .filter(|r| r.site_code == DERBY || r.share.is_some())
        .collect();
    assert!(shown.iter().any(|r| r.site_code == DERBY));
    for r in shown {
        assert!(r.share.is_some(), "{}", r.site_code);
        assert_ne!(
            r.funnel_flag,
            hub::FunnelFlag::NotApplicable as i32,
            "{}",
            r.site_code
        );
        assert!(r.funnel_limits.is_some());
    }

    // Trends over the programme to date, a financial year at a time.
    let _ = synced_summary(&reports, &thk, THURROCK, "PTD2025-03").await;
    let trend = reports
        .clone()
        .compare_metric(hub::CompareMetricRequest {
            metric: "level_2.people_new".into(),
            from: period_pb("PTD2024-03"),
            to: period_pb("PTD2025-03"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trend.periods.len(), 2, "March 2024 and March 2025");
    for t in &trend.trends {
        // Derby's programme began in April 2024: one point.
        let points = if t.site_code == THURROCK { 2 } else { 1 };
        assert_eq!(t.points_known, points, "{}", t.site_code);
    }

    // 6. Every evaluation call is in the audit log, with the caller and no figures.
    let text = String::from_utf8_lossy(&logs.bytes()).to_string();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("lacnet::audit") && l.contains("GetLocalEvaluation"))
        .collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("operator:thurrock") && l.contains("served"))
    );
    assert!(audit.iter().any(|l| l.contains("refused")));
    assert!(
        !text.contains(&thurrock[0].nhs),
        "an NHS number reached the log"
    );

    dby.agent.stop().await;
    thk.agent.stop().await;
    hub.stop().await;
}
