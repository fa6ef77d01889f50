//! The whole network in one process, every part real: a network CA, the hub
//! (`lacnet-hub`) with a two-site registry, and two site agents
//! (`lacnet-site-agent`) for Thurrock and Derby, each with its own council CA,
//! HMAC key file and sled directory, pushing over mTLS to the hub.
//!
//! A council client loads realistic records into each agent (repeat
//! introductions, one erasure); the test waits until the analyst's Reports
//! show the agents' latest revisions, then checks every published number
//! against counts it works out itself from the records it sent (the default
//! policy applied by hand), rates per 10,000 adults against the registry,
//! network summaries and cost avoided. It then erases a person at Derby and
//! checks the hub follows. Finally, with everything shut down, it scans every
//! byte the hub and the agents stored, the audit log and the process logs for
//! raw identifiers, their unkeyed SHA-256, and (at the hub) their HMAC pseudonyms.

use lacnet_clock::MockClock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lacnet_core::disclosure::{self, Count, DisclosurePolicy};
use lacnet_core::metrics::{METRIC_COUNT, catalogue};
use lacnet_core::pseudonym::{Pseudonymiser, Secret};
use lacnet_core::validate::PersonId;
use lacnet_core::{Granularity, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{period_from_proto, period_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{AgentOptions, HubTarget};
use lacnet_testkit::network::*;
use tonic::transport::Channel;

/// The agents' fixed "today": a month after 2026-Q3 closed, so both periods
/// the records touch (2026-Q2 and 2026-Q3) are past their embargo, and
/// nothing depends on when the test runs.
const TODAY: &str = "2026-10-31";
const Q2: &str = "2026-Q2";
const Q3: &str = "2026-Q3";
const PERIODS: [(&str, &str, &str); 2] = [
    (Q2, "2026-04-01", "2026-06-30"),
    (Q3, "2026-07-01", "2026-09-30"),
];

// Proto enum numbers used by the record generators.
const COMMUNITY_CONNECTION: i32 = pb::Outcome::CommunityConnection as i32;
const VOLUNTEERING: i32 = pb::Outcome::Volunteering as i32;
const DAY_SERVICES: i32 = pb::Outcome::AlternativeToDayServices as i32;
const GP: i32 = pb::Outcome::ReducedGpAeUse as i32;
const CRISIS: i32 = pb::Outcome::CrisisAvoided as i32;

/// Thurrock: 60 introductions, 24 in Q2 (some closed in Q2, some in Q3, the
/// rest open) and 36 in Q3. Records 56..=59 re-introduce the people of
/// records 0..=3 in Q3; record 55 is a second Q3 introduction of record 54's
/// person. Records 9, 19, 29, 39 and 49 carry no NHS number; the test erases
/// record 39 (Q3) by case id, which changes Thurrock's published Q3 table.
fn thurrock_records() -> Vec<CaseRecord> {
    const AGES: [u32; 15] = [19, 27, 36, 44, 48, 53, 59, 63, 66, 71, 77, 82, 90, 45, 50];
    const NEEDS: [i32; 10] = [2, 2, 1, 9, 4, 2, 8, 3, 1, 2];
    const SOURCES: [i32; 10] = [1, 3, 3, 4, 2, 8, 5, 3, 6, 1];
    let nhs_of = |i: usize| nhs(401_223_000 + 7919 * i as u64);
    (0..60usize)
        .map(|i| {
            let q2 = i < 24;
            let month = if q2 { 4 + i % 3 } else { 7 + i % 3 };
            let day = 1 + (i * 5) % 28;
            let closed_on = match (q2, i % 4, i % 5) {
                (true, 0, _) => Some("2026-06-29"),
                (true, 1, _) => Some("2026-08-14"),
                (false, _, 0) => Some("2026-09-30"),
                _ => None,
            };
            let nhs = match i {
                56..=59 => Some(nhs_of(i - 56)),
                55 => Some(nhs_of(54)),
                _ if i % 10 == 9 => None,
                _ => Some(nhs_of(i)),
            };
            let mut outcomes = Vec::new();
            for (on, o) in [
                (i % 13 == 0, CRISIS),
                (i % 2 == 0, COMMUNITY_CONNECTION),
                (i % 3 == 0, VOLUNTEERING),
                (i % 4 == 2, DAY_SERVICES),
                (i % 6 == 1, GP),
            ] {
                if on {
                    outcomes.push(o);
                }
            }
            CaseRecord {
                case: format!("THK-LAC-{:05}", 31_870 + 13 * i),
                nhs,
                introduced_on: format!("2026-{month:02}-{day:02}"),
                closed_on: closed_on.map(str::to_owned),
                level: if i % 3 == 0 { 1 } else { 2 },
                age: AGES[i % AGES.len()],
                need: NEEDS[i % NEEDS.len()],
                source: SOURCES[i % SOURCES.len()],
                outcomes,
                ward: format!("E05002{:03}", 300 + i % 9),
            }
        })
        .collect()
}

/// Derby: 25 introductions, 5 in Q2 (record 1 closed in Q2, the others open)
/// and 20 in Q3. Record 24 re-introduces record 0's person in Q3. Outcomes
/// are undated, so each counts in its introduction's quarter: exactly 8
/// people volunteer in Q3 (records 5..=11, and 24 for person 0 again), so
/// erasing person 0 takes volunteering from 8 (published 10) to 7
/// (suppressed), and people active from 23 (25) to 22 (20).
fn derby_records() -> Vec<CaseRecord> {
    const AGES: [u32; 10] = [34, 41, 68, 72, 85, 29, 55, 47, 61, 80];
    const NEEDS: [i32; 7] = [1, 2, 6, 8, 9, 2, 7];
    const SOURCES: [i32; 6] = [3, 4, 1, 2, 7, 9];
    let nhs_of = |j: usize| nhs(612_905_000 + 4099 * j as u64);
    (0..25usize)
        .map(|j| {
            let q2 = j < 5;
            let (month, day) = if q2 {
                (4 + j % 3, 3 + j * 4)
            } else {
                (7 + j % 3, 2 + (j * 3) % 27)
            };
            let closed_on = if j == 1 {
                Some("2026-06-20")
            } else if !q2 && j % 4 == 0 {
                Some("2026-09-30")
            } else {
                None
            };
            let nhs = match j {
                24 => Some(nhs_of(0)),
                7 | 17 => None,
                _ => Some(nhs_of(j)),
            };
            let mut outcomes = Vec::new();
            if j < 12 || j == 24 {
                outcomes.push(VOLUNTEERING);
            }
            if j % 5 == 0 {
                outcomes.push(DAY_SERVICES);
            }
            if j % 2 == 1 {
                outcomes.push(COMMUNITY_CONNECTION);
            }
            CaseRecord {
                case: format!("DBY/{:06}", 770_041 + 29 * j),
                nhs,
                introduced_on: format!("2026-{month:02}-{day:02}"),
                closed_on: closed_on.map(str::to_owned),
                level: if j % 4 == 1 { 1 } else { 2 },
                age: AGES[j % AGES.len()],
                need: NEEDS[j % NEEDS.len()],
                source: SOURCES[j % SOURCES.len()],
                outcomes,
                ward: format!("E05001{:03}", 500 + j % 6),
            }
        })
        .collect()
}

/// One council: its PKI, key, agent, a case-system client and an operator client.
struct Council {
    code: &'static str,
    key: Vec<u8>,
    data_dir: PathBuf,
    agent: TestAgent,
    /// As the case system: pushes records.
    client: SiteAgentClient<Channel>,
    /// As the operator: previews and erases.
    operator: SiteAgentClient<Channel>,
}

impl Council {
    async fn start(
        net: &NetworkPki,
        hub: &TestHub,
        code: &'static str,
        name: &str,
        root: &Path,
    ) -> Council {
        let pki = CouncilPki::new(name);
        let key_path = root.join(format!("{name}-hmac.key"));
        let key = random_key_file(&key_path, "k1");
        let keys = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path)]).unwrap();
        let data_dir = root.join(format!("{name}-agent"));
        let mut o = AgentOptions::new(&data_dir, code, keys, pki.agent.clone());
        o.hub = Some(HubTarget {
            url: hub.url(),
            server_name: HUB_NAME.into(),
            tls: net.site(code),
        });
        o.granularity = Granularity::Quarter;
        // Long enough that the records and Thurrock's erasure below land in
        // the first release: a later single erasure would be held.
        o.publish_debounce = Duration::from_millis(1000);
        o.push_backoff_base = Duration::from_millis(20);
        o.push_backoff_cap = Duration::from_millis(200);
        o.cache_bytes = 8 * 1024 * 1024;
        o.clock = std::sync::Arc::new(MockClock::at_date(TODAY).unwrap());
        let agent = TestAgent::start(&pki, o).await;
        let client = agent.client(&pki.council).await;
        let operator = agent.client(&pki.operator).await;
        Council {
            code,
            key,
            data_dir,
            agent,
            client,
            operator,
        }
    }

    async fn upsert(&mut self, records: &[CaseRecord]) {
        let reply = self
            .client
            .upsert_records(site::UpsertRecordsRequest {
                records: records.iter().map(CaseRecord::to_proto).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.rejected, 0, "{:?}", reply.verdicts);
        assert_eq!(reply.accepted as usize, records.len());
        assert!(
            reply
                .verdicts
                .iter()
                .all(|v| v.verdict() == site::Verdict::AcceptedNew),
            "{:?}",
            reply.verdicts
        );
    }

    async fn erase(&mut self, id: site::erase_person_request::Identifier) -> u32 {
        self.operator
            .erase_person(site::ErasePersonRequest {
                identifier: Some(id),
            })
            .await
            .unwrap()
            .into_inner()
            .records_erased
    }
}

fn period_pb(p: &str) -> Option<pb::Period> {
    Some(period_to_proto(Period::parse(p).unwrap()))
}

fn compare(metric: &str) -> hub::CompareMetricRequest {
    hub::CompareMetricRequest {
        metric: metric.into(),
        from: period_pb(Q2),
        to: period_pb(Q3),
    }
}

/// Revisions the hub reports from, by (site, period), once they equal what
/// each agent would send now (its preview) for both periods and every
/// outbox is empty; `None` while anything is still in flight. The analyst's
/// report shows no revision numbers, so they come from the hub itself.
async fn in_sync(
    reports: &ReportsClient<Channel>,
    hub: &lacnet_hub::Hub,
    councils: &[&Council],
) -> Option<BTreeMap<(String, String), u64>> {
    let cmp = reports
        .clone()
        .compare_metric(compare("people_active"))
        .await
        .ok()?
        .into_inner();
    let mut at_hub = BTreeMap::new();
    for pc in &cmp.periods {
        let p = period_from_proto(pc.period.as_ref(), "period")
            .unwrap()
            .to_string();
        for row in &pc.sites {
            let period = Period::parse(&p).unwrap();
            at_hub.insert(
                (row.site_code.clone(), p.clone()),
                hub.current_revision(&row.site_code, period)?,
            );
        }
    }
    for c in councils {
        if c.agent.agent.store().outbox_len() != 0 {
            return None;
        }
        for (p, _, _) in PERIODS {
            let preview = c
                .operator
                .clone()
                .preview_submission(site::PreviewSubmissionRequest {
                    period: period_pb(p),
                })
                .await
                .ok()?
                .into_inner();
            match preview.decision.as_str() {
                // The hub has the agent's latest release.
                "unchanged" => {
                    let revision = preview.submission?.revision;
                    if at_hub.get(&(c.code.to_owned(), p.to_owned())) != Some(&revision) {
                        return None;
                    }
                }
                // Settled too: nothing more will be sent for now.
                "held" | "embargoed" => {}
                _ => return None,
            }
        }
    }
    Some(at_hub)
}

async fn summary(reports: &ReportsClient<Channel>, p: &str) -> hub::NetworkSummaryResponse {
    reports
        .clone()
        .network_summary(hub::NetworkSummaryRequest {
            period: period_pb(p),
        })
        .await
        .unwrap()
        .into_inner()
}

fn truth(records: &[CaseRecord], period: &str) -> lacnet_core::metrics::Aggregates {
    let (_, start, end) = PERIODS.iter().find(|(p, _, _)| *p == period).unwrap();
    true_counts(records, start, end)
}

fn idx(id: &str) -> usize {
    catalogue().index_of(id).unwrap()
}

/// Metrics checked against the hand rule: those in no additive table (so
/// secondary suppression never touches them) and the introductions total.
fn hand_checked() -> Vec<&'static str> {
    vec![
        "people_active",
        "people_new",
        "introductions_new",
        "closures",
        "outcome.crisis_avoided",
        "outcome.community_connection",
        "outcome.volunteering",
        "outcome.alternative_to_day_services",
        "outcome.reduced_gp_ae_use",
    ]
}

/// Checks one site's published table at the hub against the truth.
fn check_table(
    summary: &hub::NetworkSummaryResponse,
    site: &str,
    t: &lacnet_core::metrics::Aggregates,
) {
    let tables = published_by_site(summary);
    let published = tables
        .get(site)
        .unwrap_or_else(|| panic!("{site} is missing from the summary"));
    let what = |id: &str| format!("{site} {id} (true count {})", t.counts[idx(id)]);
    for id in hand_checked() {
        // A published figure is the hand rule's; secondary suppression may
        // withhold more (subsets tie outcomes to people supported).
        if let Count::Value(v) = published.counts[idx(id)] {
            assert_eq!(hand_protect(t.counts[idx(id)]), Some(v), "{}", what(id));
        }
    }
    // The periods here are quarters: a quarter carries the headline
    // figures, the age groups and the outcomes, and nothing else.
    let carried = lacnet_core::release::carried(lacnet_core::Granularity::Quarter);
    for (i, m) in catalogue().metrics().iter().enumerate() {
        let v = t.counts[i];
        if !carried[i] {
            assert_eq!(published.counts[i], Count::NotReleased, "{}", what(&m.id));
        } else if hand_protect(v).is_none() {
            // Small counts, zero included, are withheld.
            assert_eq!(published.counts[i], Count::Suppressed, "{}", what(&m.id));
        }
    }
    // The whole table, secondary suppression included, is exactly the
    // network policy applied to the independently computed truth.
    assert_eq!(
        *published,
        disclosure::release_alone(t, &carried, &DisclosurePolicy::default()),
        "{site}"
    );
}

fn value(c: Option<&pb::Count>) -> Option<u64> {
    match count_of(c) {
        Count::Value(v) => Some(v),
        Count::Suppressed | Count::NotReleased => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_councils_and_the_hub_end_to_end() {
    let logs = LogCapture::default();
    logs.install();
    let root = tempfile::tempdir().unwrap();

    // 1. The network: CA, hub with a two-site registry, an analyst.
    let net = NetworkPki::new();
    let registry = root.path().join("registry.toml");
    std::fs::write(&registry, registry_toml()).unwrap();
    let hub_dir = root.path().join("hub");
    let hub = TestHub::start(&net, &hub_dir, &registry).await;
    let reports = hub.reports(&net.analyst).await;

    // 2. Two councils, each with its own CA, key file and agent.
    let mut thurrock = Council::start(&net, &hub, THURROCK, "thurrock", root.path()).await;
    let mut derby = Council::start(&net, &hub, DERBY, "derby", root.path()).await;
    assert_ne!(thurrock.key, derby.key);

    // 3. Records in, in two batches at Thurrock, then one erasure by case id.
    let all_thurrock = thurrock_records();
    let all_derby = derby_records();
    thurrock.upsert(&all_thurrock[..30]).await;
    thurrock.upsert(&all_thurrock[30..]).await;
    derby.upsert(&all_derby).await;
    let erased_case = all_thurrock[39].case.clone();
    assert!(all_thurrock[39].nhs.is_none());
    let n = thurrock
        .erase(site::erase_person_request::Identifier::LocalCaseId(
            erased_case.clone(),
        ))
        .await;
    assert_eq!(n, 1);
    let thurrock_now: Vec<CaseRecord> = all_thurrock
        .iter()
        .filter(|r| r.case != erased_case)
        .cloned()
        .collect();

    // The design of the data, checked against the independent model.
    let d3 = truth(&all_derby, Q3);
    assert_eq!(d3.counts[idx("people_active")], 23);
    assert_eq!(d3.counts[idx("outcome.volunteering")], 8);
    assert_eq!(d3.counts[idx("introductions_new")], 20);
    assert_eq!(truth(&all_derby, Q2).counts[idx("people_active")], 5);
    let t3 = truth(&thurrock_now, Q3);
    // Thurrock's erasure shows in what is published, so the checks below see it.
    assert_ne!(
        disclosure::apply(&t3, &DisclosurePolicy::default()),
        disclosure::apply(&truth(&all_thurrock, Q3), &DisclosurePolicy::default())
    );
    assert!(t3.counts[idx("introductions_new")] > t3.counts[idx("people_new")]);

    // 4. Wait until the analyst sees what each agent would send now.
    let councils = [&thurrock, &derby];
    let (r, h, cs) = (&reports, &hub.hub, &councils);
    let revisions = poll("both sites' latest revisions at the hub", move || {
        in_sync(r, h, cs)
    })
    .await;
    assert_eq!(revisions.len(), 4, "{revisions:?}");

    for (p, _, _) in PERIODS {
        let s = summary(&reports, p).await;
        assert_eq!(s.sites_submitted, 2, "{p}");
        check_table(&s, THURROCK, &truth(&thurrock_now, p));
        check_table(&s, DERBY, &truth(&all_derby, p));
    }
    // Spot checks that make the data design visible.
    let s3 = summary(&reports, Q3).await;
    let d_tab = &published_by_site(&s3)[DERBY];
    assert_eq!(d_tab.counts[idx("people_active")], Count::Value(25));
    assert_eq!(d_tab.counts[idx("outcome.volunteering")], Count::Value(10));
    assert_eq!(
        d_tab.counts[idx("outcome.alternative_to_day_services")],
        Count::Suppressed
    );

    // Cost avoided: known outcome counts × unit cost; suppressed adds nothing but marks it partial.
    let mut network_pence = 0;
    for (code, records) in [(THURROCK, &thurrock_now), (DERBY, &all_derby)] {
        let t = truth(records, Q3);
        let mut pence = 0;
        let mut partial = false;
        for (id, unit) in [
            ("outcome.alternative_to_day_services", DAY_SERVICES_PENCE),
            ("outcome.reduced_gp_ae_use", GP_PENCE),
        ] {
            match hand_protect(t.counts[idx(id)]) {
                Some(v) => pence += v * unit,
                None => partial = true,
            }
        }
        let got = s3
            .cost_avoided
            .iter()
            .find(|c| c.site_code == code)
            .unwrap();
        assert_eq!(
            (got.cost_avoided_pence, got.partial),
            (pence, partial),
            "{code}"
        );
        network_pence += pence;
    }
    assert_eq!(s3.network_cost_avoided_pence, network_pence);

    // Rates per 10,000 adults, ranks and the network summary for people active.
    let cmp = reports
        .clone()
        .compare_metric(compare("people_active"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cmp.periods.len(), 2);
    let mut known_rates: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for (pc, (p, _, _)) in cmp.periods.iter().zip(PERIODS) {
        let mut rows = Vec::new();
        for (code, adults, records) in [
            (THURROCK, THURROCK_ADULTS, &thurrock_now),
            (DERBY, DERBY_ADULTS, &all_derby),
        ] {
            let row = pc.sites.iter().find(|r| r.site_code == code).unwrap();
            assert_eq!(row.adult_population, adults);
            assert!(
                !row.published_on.is_empty(),
                "{code} {p}: the publication day"
            );
            let expected = hand_protect(truth(records, p).counts[idx("people_active")]);
            assert_eq!(value(row.value.as_ref()), expected, "{code} {p}");
            match expected {
                Some(v) => {
                    let rate = v as f64 * 10_000.0 / adults as f64;
                    assert!(close(row.rate_per_10k.unwrap(), rate), "{code} {p}");
                    rows.push((code, v as f64, rate));
                }
                None => {
                    assert_eq!(row.rate_per_10k, None, "{code} {p}");
                    assert_eq!(row.rank, 0, "{code} {p}");
                }
            }
            known_rates.entry(code).or_default().push(row.rate_per_10k);
        }
        // Rank 1 is the highest rate.
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (rank, (code, _, _)) in rows.iter().enumerate() {
            let row = pc.sites.iter().find(|r| r.site_code == *code).unwrap();
            assert_eq!(row.rank as usize, rank + 1, "{code} {p}");
        }
        let median = |xs: Vec<f64>| match xs.len() {
            1 => xs[0],
            2 => (xs[0] + xs[1]) / 2.0,
            n => panic!("{n} known values"),
        };
        let values: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let rates: Vec<f64> = rows.iter().map(|r| r.2).collect();
        let vs = pc.value_summary.as_ref().unwrap();
        let rs = pc.rate_summary.as_ref().unwrap();
        assert_eq!(vs.sites_known as usize, rows.len(), "{p}");
        assert_eq!(vs.sites_known + vs.sites_suppressed, 2, "{p}");
        assert!(close(vs.median.unwrap(), median(values.clone())), "{p}");
        assert!(close(rs.median.unwrap(), median(rates.clone())), "{p}");
        assert!(close(rs.max.unwrap(), rates[0]), "{p}");
        assert!(close(rs.min.unwrap(), *rates.last().unwrap()), "{p}");
    }
    // Derby's Q2 is suppressed (5 people), so Derby has one known point in Q3 only.
    assert_eq!(
        cmp.periods[0]
            .value_summary
            .as_ref()
            .unwrap()
            .sites_suppressed,
        1
    );
    assert_eq!(known_rates[THURROCK].iter().flatten().count(), 2);
    assert_eq!(known_rates[DERBY].iter().flatten().count(), 1);
    for trend in &cmp.trends {
        let points = &known_rates[trend.site_code.as_str()];
        let known: Vec<f64> = points.iter().flatten().copied().collect();
        assert_eq!(
            trend.points_known as usize,
            known.len(),
            "{}",
            trend.site_code
        );
        // lacnet-core draws a trend from at least 3 known points
        // (`MIN_TREND_POINTS`); two periods are a difference, not a trend.
        assert_eq!(trend.direction(), hub::TrendDirection::Insufficient);
        assert_eq!(trend.slope_per_period, None);
    }

    // The registry as the analyst sees it.
    let sites = reports
        .clone()
        .list_sites(hub::ListSitesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sites.sites.len(), 2);
    for s in &sites.sites {
        assert_eq!(
            s.last_submission.as_ref().unwrap().published_on.len(),
            10,
            "{}: a day, YYYY-MM-DD",
            s.code
        );
        assert_eq!(s.policy.as_ref().unwrap().threshold, 7, "{}", s.code);
    }

    // 6. Erasure at Derby: person 0, introduced twice, erased by NHS
    // number (as the council writes it, with spaces). One person changes
    // Derby's Q3 figures by one or two people only, so the release gate
    // holds the revision: an analyst who keeps every release could
    // otherwise difference the two and learn that person's attributes. The
    // hub keeps the last release; the preview says why.
    let person0 = all_derby[0].nhs.clone().unwrap();
    assert_eq!(all_derby[24].nhs.as_deref(), Some(person0.as_str()));
    let spaced = format!("{} {} {}", &person0[..3], &person0[3..6], &person0[6..]);
    let q3 = Period::parse(Q3).unwrap();
    let stored_q3 = hub.hub.revisions(DERBY, q3).unwrap();
    assert_eq!(stored_q3.len(), 1, "the hub keeps only the current release");
    let n = derby
        .erase(site::erase_person_request::Identifier::NhsNumber(spaced))
        .await;
    assert_eq!(n, 2);
    lacnet_site_agent::publish::publish_once(&derby.agent.agent)
        .await
        .unwrap();
    let preview = derby
        .operator
        .clone()
        .preview_submission(site::PreviewSubmissionRequest {
            period: period_pb(Q3),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.decision, "held", "{}", preview.reason);
    assert!(preview.reason.contains("single out"), "{}", preview.reason);
    assert_eq!(derby.agent.agent.store().outbox_len(), 0);
    assert_eq!(hub.hub.revisions(DERBY, q3).unwrap(), stored_q3);
    check_table(&summary(&reports, Q3).await, DERBY, &truth(&all_derby, Q3));
    for p in [Q2, Q3] {
        let k = (THURROCK.to_owned(), p.to_owned());
        assert_eq!(
            hub.hub
                .current_revision(THURROCK, Period::parse(p).unwrap()),
            Some(revisions[&k])
        );
    }

    // 5. Privacy across the boundary, after a clean shutdown.
    drop(reports);
    let mut agent_dirs = Vec::new();
    let mut keys = Vec::new();
    for c in [thurrock, derby] {
        let Council {
            code,
            key,
            data_dir,
            agent,
            client,
            operator,
        } = c;
        drop((client, operator));
        let a = agent.stop().await;
        assert_eq!(a.store().outbox_len(), 0);
        drop(a);
        agent_dirs.push((code, data_dir));
        keys.push(key);
    }
    let hub = hub.stop().await;
    let audit = format!("{:?}", hub.audit_log().unwrap());
    let hub_metrics = hub.metrics().registry().render();
    drop(hub);

    let everyone: Vec<&CaseRecord> = all_thurrock.iter().chain(all_derby.iter()).collect();
    let mut needles = Needles::default();
    for r in &everyone {
        needles.add_identifier("local case id", &r.case);
        if let Some(n) = &r.nhs {
            needles.add_identifier("NHS number", n);
        }
        needles.add_identifier("ward code", &r.ward);
    }
    // The hub must not hold record-level pseudonyms either: only aggregates cross.
    let mut hub_needles = Needles::default();
    for r in &everyone {
        hub_needles.add_identifier("local case id", &r.case);
        if let Some(n) = &r.nhs {
            hub_needles.add_identifier("NHS number", n);
        }
        hub_needles.add_identifier("ward code", &r.ward);
    }
    for key in &keys {
        let p = Pseudonymiser::new(&Secret::new(key.clone()).unwrap());
        for r in &everyone {
            let person = match &r.nhs {
                Some(n) => PersonId::Nhs(n.clone()),
                None => PersonId::LocalCase(r.case.clone()),
            };
            for (what, ps) in [
                ("person", p.person(&person)),
                ("record", p.record(&r.case)),
                ("neighbourhood", p.neighbourhood(&r.ward)),
            ] {
                hub_needles.add(
                    ps.as_bytes().to_vec(),
                    format!("{what} pseudonym of {}", r.case),
                );
                hub_needles.add(
                    ps.to_string(),
                    format!("{what} pseudonym hex of {}", r.case),
                );
            }
        }
    }
    assert!(needles.len() > 500 && hub_needles.len() > needles.len());

    // Positive control: the scanner reads stored plaintext (site codes are stored in the clear).
    let mut site_codes = Needles::default();
    site_codes.add(THURROCK, "Thurrock's code");
    site_codes.add(DERBY, "Derby's code");

    let scan = scan_dir(&hub_dir, &hub_needles);
    assert!(scan.files > 0 && scan.bytes > 0, "{scan:?}");
    assert!(scan.hits.is_empty(), "the hub stored: {:#?}", scan.hits);
    assert!(scan_dir(&hub_dir, &site_codes).hits.len() >= 2);
    let found = needles.find_in(audit.as_bytes());
    assert!(found.is_empty(), "the hub's audit log holds {found:?}");
    // Successful submits are audited (successful report reads are not: only refusals).
    for code in [THURROCK, DERBY] {
        assert!(audit.contains(&format!("peer: \"site:{code}\"")), "{audit}");
    }
    let found = hub_needles.find_in(hub_metrics.as_bytes());
    assert!(found.is_empty(), "the hub's metrics hold {found:?}");

    for (code, dir) in &agent_dirs {
        let scan = scan_dir(dir, &needles);
        assert!(scan.files > 0 && scan.bytes > 0, "{code}: {scan:?}");
        assert!(
            scan.hits.is_empty(),
            "{code}'s agent stored: {:#?}",
            scan.hits
        );
        let mut own = Needles::default();
        own.add(*code, "site code");
        assert!(
            !scan_dir(dir, &own).hits.is_empty(),
            "{code}: scanner control"
        );
    }

    let log = logs.bytes();
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("hub serving gRPC over mTLS") && text.contains("upsert done"),
        "the log capture saw neither service"
    );
    let found = needles.find_in(&log);
    assert!(found.is_empty(), "the logs hold {found:?}");
    let found = hub_needles.find_in(&log);
    assert!(found.is_empty(), "the logs hold {found:?}");
}

#[test]
fn the_reference_model_matches_the_brief() {
    // The brief's example NHS number passes the generator's check.
    assert_eq!(nhs(943_476_591), "9434765919");
    // The hand rule: suppress 0..=7 (zero is a small count), round to 5.
    let rule: Vec<Option<u64>> = [0, 1, 7, 8, 10, 12, 13, 23, 22].map(hand_protect).to_vec();
    assert_eq!(
        rule,
        vec![
            None,
            None,
            None,
            Some(10),
            Some(10),
            Some(10),
            Some(15),
            Some(25),
            Some(20)
        ]
    );
    // The hand rule agrees with lacnet-core on single cells.
    let policy = DisclosurePolicy::default();
    for v in 0..200u64 {
        let mut a = lacnet_core::metrics::Aggregates::default();
        a.counts[0] = v;
        let got = disclosure::apply(&a, &policy).counts[0];
        let want = hand_protect(v).map_or(Count::Suppressed, Count::Value);
        assert_eq!(got, want, "{v}");
    }
    assert_eq!(METRIC_COUNT, catalogue().metrics().len());
}
