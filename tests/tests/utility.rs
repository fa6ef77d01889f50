//! The utility report: what disclosure control leaves analysts, measured on
//! what real site agents publish (every release of every period kind, as it
//! would reach the hub), for the demo network and for each generated site
//! profile reporting monthly with its programme to date.
//!
//! For each scenario it prints the share of cells withheld, the share of
//! cells whose true count is 8 or more that are published, and each headline
//! figure's publication rate over the releases where its true count is 8 or
//! more. `docs/disclosure.md` quotes the table:
//!
//! ```text
//! cargo test -p lacnet-e2e --test utility -- --nocapture
//! ```
//!
//! It also asserts the rule every release must keep whatever the design: no
//! published value stands for a true count at or below the threshold.

use lacnet_clock::MockClock;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lacnet_cli::csv_format::Layout;
use lacnet_cli::generate::{self, Plan, Profile};
use lacnet_cli::mapping::Mapping;
use lacnet_core::Date;
use lacnet_core::disclosure::Count;
use lacnet_core::metrics::{METRIC_COUNT, catalogue};
use lacnet_core::period::{Granularity, Period};
use lacnet_proto::convert::period_from_proto;
use lacnet_proto::site::v1 as site;
use lacnet_site_agent::AgentOptions;
use lacnet_testkit::network::*;

/// The headline figures whose publication rate the report gives.
const HEADLINES: &[&str] = &[
    "people_active",
    "people_new",
    "introductions_new",
    "level_1.people_active",
    "level_2.people_active",
    "level_1.people_new",
    "level_2.people_new",
    "age_group.18_64",
    "age_group.65_plus",
    "outcome.crisis_avoided",
    "outcome.community_connection",
    "outcome.volunteering",
    "outcome.alternative_to_day_services",
    "outcome.reduced_gp_ae_use",
    "outcome.tenancy_sustained",
    "outcome.social_care_referral_avoided",
    "outcome.training_employment",
    "outcome.carer_supported",
];

/// One site's run: a profile, its series, and whether it publishes the
/// programme to date (from the profile's start).
struct SiteRun {
    profile: &'static Profile,
    granularity: Granularity,
    programme: bool,
    until: Date,
}

/// Counts over every release of a scenario.
#[derive(Default)]
struct Tally {
    releases: usize,
    cells: usize,
    withheld: usize,
    large: usize,
    large_published: usize,
    /// By headline id: (releases with a true count of 8 or more, published).
    headlines: BTreeMap<&'static str, (usize, usize)>,
    /// Releases by period kind.
    kinds: BTreeMap<&'static str, usize>,
    /// Cells and cells withheld by period kind.
    by_kind: BTreeMap<&'static str, (usize, usize)>,
}

impl Tally {
    fn pct(n: usize, d: usize) -> f64 {
        if d == 0 {
            100.0
        } else {
            n as f64 * 100.0 / d as f64
        }
    }
}

fn kind_name(period: Period) -> &'static str {
    match period.granularity() {
        Granularity::Month => "months",
        Granularity::Quarter => "quarters",
        Granularity::FinancialYear => "financial years",
        Granularity::ProgrammeToDate => "programmes to date",
    }
}

fn records(profile: &'static Profile, until: Date) -> Vec<site::Record> {
    let plan = Plan {
        profile,
        seed: 1,
        until: Some(until),
        rows: None,
    };
    let mut csv = Vec::new();
    generate::write_csv(&plan, &mut csv, until).unwrap();
    let mapping = Mapping::default();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let layout = Layout::from_header(reader.headers().unwrap(), &mapping).unwrap();
    reader
        .records()
        .map(|row| layout.parse(&row.unwrap(), &mapping).unwrap())
        .collect()
}

/// Runs one real agent over the site's records, publishes every period, and
/// adds what it would send the hub to `tally`.
async fn run_site(run: &SiteRun, root: &Path, tally: &mut Tally) {
    let name = run.profile.key;
    let pki = CouncilPki::new(name);
    let key_path = root.join(format!("{name}.key"));
    random_key_file(&key_path, "k1");
    let keys = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path)]).unwrap();
    let mut o = AgentOptions::new(root.join(name), run.profile.code, keys, pki.agent.clone());
    o.granularity = run.granularity;
    o.publish_debounce = Duration::from_secs(3600);
    // Far enough past the data that every period's embargo has passed.
    o.clock = std::sync::Arc::new(MockClock::at_ms(
        u64::try_from(run.until.days_since_epoch() + 60).unwrap() * 86_400_000,
    ));
    if run.programme {
        o.programme_start = Some(run.profile.start_date());
    }
    let agent = TestAgent::start(&pki, o).await;
    let mut client = agent.client(&pki.council).await;
    for chunk in records(run.profile, run.until).chunks(2_000) {
        let r = client
            .upsert_records(site::UpsertRecordsRequest {
                records: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.rejected, 0, "generated records are valid");
    }
    lacnet_site_agent::publish::publish_once(&agent.agent)
        .await
        .unwrap();
    let store = agent.agent.store();
    let cat = catalogue();
    let subs = store.last_submissions().unwrap();
    assert!(!subs.is_empty(), "{name} published nothing");
    for sub in subs {
        let period: Period = period_from_proto(sub.period.as_ref(), "period").unwrap();
        let truth = store.published_truth(period).unwrap().unwrap();
        assert_eq!(truth.len(), METRIC_COUNT);
        tally.releases += 1;
        *tally.kinds.entry(kind_name(period)).or_default() += 1;
        for cell in &sub.cells {
            let i = cat.index_of(&cell.metric).unwrap();
            let count =
                lacnet_proto::convert::count_from_proto(cell.count.as_ref(), "count").unwrap();
            if count == Count::NotReleased {
                // Not part of this kind of release: neither published nor withheld.
                continue;
            }
            let t = truth[i];
            tally.cells += 1;
            let kind = tally.by_kind.entry(kind_name(period)).or_default();
            kind.0 += 1;
            kind.1 += usize::from(count == Count::Suppressed);
            let published = matches!(count, Count::Value(_));
            if let Count::Value(v) = count {
                assert!(
                    t > 7 || (t == 0 && v == 0),
                    "{name} {period} {}: published {v} for a true count of {t}",
                    cell.metric
                );
            } else {
                tally.withheld += 1;
            }
            if t >= 8 {
                tally.large += 1;
                tally.large_published += usize::from(published);
            }
            if let Some(h) = HEADLINES.iter().find(|h| **h == cell.metric) {
                if t >= 8 {
                    let e = tally.headlines.entry(h).or_default();
                    e.0 += 1;
                    e.1 += usize::from(published);
                }
            }
        }
    }
    drop(client);
    drop(agent.stop().await);
}

fn until(y: i32, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utility_report() {
    let (y, m, d) = lacnet_cli::demo::DEMO_UNTIL;
    let demo_until = until(y, m, d);
    let quarterly = |profile| SiteRun {
        profile,
        granularity: Granularity::Quarter,
        programme: false,
        until: demo_until,
    };
    // Each profile over its first window (the seeds' evaluation: Thurrock's
    // first 14 months, Derby's first year) plus a year, monthly, with its
    // programme to date, as a site quoting "N people in the first M months".
    let monthly = |profile: &'static Profile| {
        let end = profile.first_window_end();
        SiteRun {
            profile,
            granularity: Granularity::Month,
            programme: true,
            until: Date::from_days_since_epoch(end.days_since_epoch() + 364),
        }
    };
    let scenarios: Vec<(&str, Vec<SiteRun>)> = vec![
        (
            "demo network (quarterly)",
            vec![
                quarterly(&generate::DERBY),
                quarterly(&generate::THURROCK),
                quarterly(&generate::SWANSEA),
            ],
        ),
        ("Derby profile (monthly)", vec![monthly(&generate::DERBY)]),
        (
            "Thurrock profile (monthly)",
            vec![monthly(&generate::THURROCK)],
        ),
        (
            "Swansea profile (monthly)",
            vec![monthly(&generate::SWANSEA)],
        ),
    ];
    let root = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for (k, (name, runs)) in scenarios.iter().enumerate() {
        let mut tally = Tally::default();
        let dir = root.path().join(k.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        for run in runs {
            run_site(run, &dir, &mut tally).await;
        }
        assert!(tally.cells > 0 && tally.withheld <= tally.cells);
        rows.push((name, tally));
    }
    println!("\nutility report (every release the agents would send the hub)\n");
    println!(
        "{:<28} {:>8} {:>7} {:>9} {:>10} {:>16}",
        "scenario", "releases", "cells", "withheld", "withheld %", "8+ published %"
    );
    for (name, t) in &rows {
        println!(
            "{:<28} {:>8} {:>7} {:>9} {:>9.1}% {:>15.1}%",
            name,
            t.releases,
            t.cells,
            t.withheld,
            Tally::pct(t.withheld, t.cells),
            Tally::pct(t.large_published, t.large)
        );
        let kinds: Vec<String> = t
            .kinds
            .iter()
            .map(|(k, n)| {
                let (cells, withheld) = t.by_kind.get(k).copied().unwrap_or_default();
                format!(
                    "{n} {k} ({:.0}% of {cells} cells withheld)",
                    Tally::pct(withheld, cells)
                )
            })
            .collect();
        println!("{:<28} releases: {}", "", kinds.join(", "));
    }
    // The utility the release design promises (issue 19): few withheld
    // cells at real council sizes, and what is large, published.
    for (name, t) in &rows {
        let (n, p) = t
            .headlines
            .values()
            .fold((0, 0), |(n, p), (a, b)| (n + a, p + b));
        println!(
            "{name}: headline figures with a true count of 8 or more published in {:.1}% of {n}",
            Tally::pct(p, n)
        );
        assert!(Tally::pct(t.large_published, t.large) >= 95.0, "{name}");
        assert!(Tally::pct(p, n) >= 95.0, "{name}");
    }
    let withheld = |k: usize| Tally::pct(rows[k].1.withheld, rows[k].1.cells);
    assert!(withheld(0) <= 40.0, "demo network: {:.1}%", withheld(0));
    assert!(withheld(2) <= 60.0, "Thurrock: {:.1}%", withheld(2));
    println!("\nheadline figures published, of releases where the true count is 8 or more:\n");
    print!("{:<38}", "figure");
    for (name, _) in &rows {
        print!(" {:>14}", name.split(' ').next().unwrap_or(name));
    }
    println!();
    for h in HEADLINES {
        print!("{h:<38}");
        for (_, t) in &rows {
            match t.headlines.get(h) {
                Some((n, p)) => print!(" {:>8.0}% of {:>3}", Tally::pct(*p, *n), n),
                None => print!(" {:>14}", "-"),
            }
        }
        println!();
    }
}
