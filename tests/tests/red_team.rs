//! Red team: an attacker who keeps every release the network publishes and
//! owns an exact integer-programming solver, against the real agents and hub.
//!
//! Random small and skewed sites (8 to 60 people a month) are pushed through
//! real site agents (monthly, with the programme to date) into a real hub
//! over mTLS; the attacker reads only what an analyst reads
//! (`NetworkSummary`), and knows the catalogue's tables, the relations
//! between people by level, how spans relate to the periods inside them, and
//! the rounding rule. It is written here, independently of
//! `lacnet_core::disclosure`, `lacnet_core::relations` and
//! `lacnet_core::exact`: its own cell bounds, its own relations, its own
//! integer programs. No withheld cell that could be 7 or less may be
//! narrowed below 7 values (the default policy's protection interval):
//!
//! * single releases: every month, financial year and programme to date;
//! * the whole series, one `Sum` metric at a time: every month, year and
//!   programme to date of a site as difference constraints, solved exactly
//!   by shortest paths, every withheld cell;
//! * the whole series in one integer program per site: every release with
//!   its tables and people relations, every year tied to its months, every
//!   programme to date to the one before and the year since (the short run
//!   attacks every cell of the years and programmes to date and a sample of
//!   the months');
//! * differencing: after one person is added, erased, updated or given an
//!   outcome, the attacker compares the two releases and guesses that
//!   person's category; it may do no better than a guess from the published
//!   totals, plus 5 percentage points;
//! * a change of series (months to quarters on the same data directory) is
//!   refused by the agent, and by the hub if a quarter arrives anyway.
//!
//! Teeth: the same attackers narrow cells of the designs before this one
//! (releases published person by person; a year protected apart from its
//! months; programmes to date a month apart).
//!
//! The default (short) run is part of `cargo test`: 2 sites × 24 months. The
//! long run is 8 sites × 36 months, every cell:
//!
//! ```text
//! LACNET_RED_TEAM=full cargo test --release -p lacnet-e2e --test red_team -- --nocapture
//! ```

use lacnet_clock::MockClock;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use lacnet_core::Date;
use lacnet_core::disclosure::{Count, Published};
use lacnet_core::metrics::{self, METRIC_COUNT, catalogue};
use lacnet_core::period::Granularity;
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{AgentOptions, HubTarget};
use lacnet_testkit::network::*;
use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// The agents' "today": every month used below has closed and passed its embargo.
const TODAY: &str = "2026-11-29";
/// Largest value the attacker considers for a withheld cell.
const BIG: i32 = 10_000;
/// The default policy, as the attacker knows it.
const THRESHOLD: i64 = 7;
const BASE: i64 = 5;
const PROTECTION: i64 = 7;

/// How much to run: months per site (data sets), and one trial per month.
/// The short run has two sites, the long run eight.
fn months_per_site() -> usize {
    match std::env::var("LACNET_RED_TEAM").as_deref() {
        Ok("full") => 36,
        _ => 24,
    }
}

/// The long run's councils beyond Derby and Thurrock.
const MORE_SITES: [(&str, &str); 6] = [
    ("E06000046", "Isle of Wight"),
    ("W06000011", "Swansea"),
    ("E10000029", "Suffolk"),
    ("E10000007", "Derbyshire"),
    ("E10000024", "Nottinghamshire"),
    ("E10000018", "Leicestershire"),
];

/// The first day of the sites' programme: month 0 (January 2001), inside
/// FY2000, so the first programme to date (March 2001) covers three months
/// and every later one a year more.
fn programme_start() -> &'static str {
    "2001-01-01"
}

fn month_pb(i: usize) -> pb::Period {
    pb::Period {
        granularity: pb::Granularity::Month as i32,
        year: 2001 + (i / 12) as i32,
        index: (i % 12 + 1) as u32,
    }
}

fn span_pb(granularity: pb::Granularity, year: i32, index: u32) -> pb::Period {
    pb::Period {
        granularity: granularity as i32,
        year,
        index,
    }
}

/// The programme to date at the end of March of `year` (a financial-year end).
fn ptd_pb(year: i32) -> pb::Period {
    span_pb(pb::Granularity::ProgrammeToDate, year, 3)
}

/// One person's single introduction, inside one month.
#[derive(Debug, Clone)]
struct Person {
    record: CaseRecord,
}

/// A skewed category: one dominant value with probability `dominance`.
fn skewed(
    rng: &mut StdRng,
    values: std::ops::RangeInclusive<i32>,
    dominant: i32,
    dominance: f64,
) -> i32 {
    if rng.random_bool(dominance) {
        dominant
    } else {
        rng.random_range(values)
    }
}

/// A random site-month: 8 to 60 people (small ones likelier), skewed categories.
fn data_set(rng: &mut StdRng, site: &str, month: usize) -> Vec<Person> {
    let n = 8 + (rng.random::<f64>().powi(2) * 52.0) as usize;
    let dom_need = rng.random_range(1..=10);
    let dom_source = rng.random_range(1..=9);
    let dom_age = rng.random_range(18..=95);
    let dominance = rng.random_range(0.2..0.9);
    (0..n)
        .map(|i| {
            person(
                rng, site, month, i, dom_need, dom_source, dom_age, dominance,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn person(
    rng: &mut StdRng,
    site: &str,
    month: usize,
    i: usize,
    dom_need: i32,
    dom_source: i32,
    dom_age: i32,
    dominance: f64,
) -> Person {
    let (y, m) = (2001 + month / 12, month % 12 + 1);
    let from = rng.random_range(1..=14);
    let to = rng.random_range(15..=28);
    let age = if rng.random_bool(dominance) {
        dom_age
    } else {
        rng.random_range(16..=99)
    };
    let outcomes = (1..=9).filter(|_| rng.random_bool(0.12)).collect();
    Person {
        record: CaseRecord {
            case: format!("{site}-{month}-{i}"),
            nhs: None,
            introduced_on: format!("{y}-{m:02}-{from:02}"),
            closed_on: Some(format!("{y}-{m:02}-{to:02}")),
            level: if rng.random_bool(0.7) { 2 } else { 1 },
            age: age as u32,
            need: skewed(rng, 1..=10, dom_need, dominance),
            source: skewed(rng, 1..=9, dom_source, dominance),
            outcomes,
            ward: format!("E05{:06}", rng.random_range(0..999_999)),
        },
    }
}

// ---------------------------------------------------------------- the attacker

/// What the attacker knows of one cell from its published value alone.
fn cell_box(c: Count) -> (i32, i32) {
    match c {
        // Only under rules that publish zeros (the teeth test below).
        Count::Value(0) => (0, 0),
        // A published value r: a true value above the threshold that rounds to r.
        Count::Value(r) => {
            let r = r as i64;
            (
                (r - BASE / 2).max(THRESHOLD + 1) as i32,
                (r + BASE / 2) as i32,
            )
        }
        Count::Suppressed | Count::NotReleased => (0, BIG),
    }
}

/// Linear facts about one release, over variable indices `at..at + METRIC_COUNT`:
/// the catalogue's tables and the subsets an analyst knows from the metric names.
fn release_facts(at: usize) -> Vec<(Vec<(usize, f64)>, ComparisonOp)> {
    let mut facts = Vec::new();
    for t in catalogue().tables() {
        let mut terms = vec![(at + t.total, -1.0)];
        terms.extend(t.parts.iter().map(|&p| (at + p, 1.0)));
        facts.push((terms, ComparisonOp::Eq));
    }
    let whole =
        |part: usize, whole: usize| (vec![(at + part, 1.0), (at + whole, -1.0)], ComparisonOp::Le);
    facts.push(whole(metrics::PEOPLE_NEW, metrics::INTRODUCTIONS_NEW));
    facts.push(whole(metrics::PEOPLE_NEW, metrics::PEOPLE_ACTIVE));
    let id = |s: &str| catalogue().index_of(s).unwrap();
    // People by level, from the counting rules: a person is counted at each
    // level they are active (or new, or achieve an outcome) at, and once
    // overall. So each level's people are at most the whole, the whole at
    // most the levels' sum, and the people counted at both levels for being
    // new (or for an outcome) are among those active at both.
    let mut people = vec![
        ("people_active", "people_active"),
        ("people_new", "people_new"),
    ];
    let outcomes: Vec<String> = catalogue()
        .metrics()
        .iter()
        .filter(|d| d.group == "outcome")
        .map(|d| d.id.clone())
        .collect();
    for o in &outcomes {
        people.push((o.as_str(), o.as_str()));
    }
    let level = |k: u8, what: &str| id(&format!("level_{k}.{what}"));
    for (overall, what) in &people {
        let all = id(overall);
        for k in [1u8, 2] {
            facts.push(whole(level(k, what), all));
            if *what != "people_active" {
                facts.push(whole(level(k, what), level(k, "people_active")));
            }
        }
        facts.push((
            vec![
                (at + all, 1.0),
                (at + level(1, what), -1.0),
                (at + level(2, what), -1.0),
            ],
            ComparisonOp::Le,
        ));
        if *what != "people_active" {
            // both(what) <= both(active): l1 + l2 - all <= a1 + a2 - a.
            facts.push((
                vec![
                    (at + level(1, what), 1.0),
                    (at + level(2, what), 1.0),
                    (at + all, -1.0),
                    (at + level(1, "people_active"), -1.0),
                    (at + level(2, "people_active"), -1.0),
                    (at + metrics::PEOPLE_ACTIVE, 1.0),
                ],
                ComparisonOp::Le,
            ));
        }
    }
    // A person new at a level has a new introduction at it.
    for k in [1u8, 2] {
        facts.push(whole(
            level(k, "people_new"),
            id(&format!("support_level.level_{k}")),
        ));
    }
    facts
}

/// An integer program over one release's cells (and `extra` more variables).
struct Model {
    problem: Problem,
    vars: Vec<microlp::Variable>,
}

impl Model {
    fn release(
        counts: &[Count],
        direction: OptimizationDirection,
        objective: Option<usize>,
    ) -> Model {
        let mut problem = Problem::new(direction);
        let vars: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let coeff = if Some(i) == objective { 1.0 } else { 0.0 };
                problem.add_integer_var(coeff, cell_box(c))
            })
            .collect();
        let mut m = Model { problem, vars };
        m.add_facts(0);
        m
    }

    fn add_facts(&mut self, at: usize) {
        for (terms, op) in release_facts(at) {
            let t: Vec<_> = terms.iter().map(|&(v, k)| (self.vars[v], k)).collect();
            self.problem.add_constraint(t.as_slice(), op, 0.0);
        }
    }

    fn optimum(self) -> Option<i64> {
        let s = self.problem.solve().ok()?.into_solution().ok()?;
        (s.status() == SolutionStatus::Optimal).then(|| s.objective().round() as i64)
    }

    fn feasible(self) -> bool {
        self.problem.solve().is_ok_and(|o| o.solution().is_some())
    }
}

/// The exact range a withheld cell may take, given one release.
fn interval(counts: &[Count], cell: usize) -> (i64, i64) {
    let lo = Model::release(counts, OptimizationDirection::Minimize, Some(cell)).optimum();
    let hi = Model::release(counts, OptimizationDirection::Maximize, Some(cell)).optimum();
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => panic!("the published release has no consistent truth: {counts:?}"),
    }
}

/// How a span's cells tie to the releases that partition it, metric by
/// metric, as the catalogue declares each metric to behave across periods:
/// events add up; distinct people are at least any member's and at most
/// their sum; a stock on the last day is the last member's. When the first
/// member starts before the span (`first_partial`), its events and people
/// only bound the span's from above.
fn cover_facts(
    span: usize,
    members: &[usize],
    first_partial: bool,
) -> Vec<(Vec<(usize, f64)>, ComparisonOp)> {
    use lacnet_core::metrics::Additivity;
    let mut facts = Vec::new();
    let at = |slot: usize, i: usize| slot * METRIC_COUNT + i;
    for (i, def) in catalogue().metrics().iter().enumerate() {
        let mut sum = vec![(at(span, i), -1.0)];
        sum.extend(members.iter().map(|&m| (at(m, i), 1.0)));
        match def.across_periods {
            Additivity::Sum if first_partial => facts.push((sum, ComparisonOp::Ge)),
            Additivity::Sum => facts.push((sum, ComparisonOp::Eq)),
            Additivity::Distinct => {
                // span <= Σ members, i.e. Σ members - span >= 0.
                facts.push((sum, ComparisonOp::Ge));
                for &m in &members[usize::from(first_partial)..] {
                    facts.push((vec![(at(m, i), 1.0), (at(span, i), -1.0)], ComparisonOp::Le));
                }
            }
            Additivity::AtEnd => {
                let last = *members.last().unwrap();
                facts.push((
                    vec![(at(span, i), 1.0), (at(last, i), -1.0)],
                    ComparisonOp::Eq,
                ));
            }
        }
    }
    facts
}

/// A span and the releases that partition it, as slots of a [`Linked`] system.
struct CoverSlots {
    span: usize,
    members: Vec<usize>,
    first_partial: bool,
}

/// Releases as the attacker holds them, `None` for a period never published
/// (no activity: every count is 0), with the covers that tie them together.
/// A figure a release does not carry is no variable at all, and a fact that
/// names one is left out: the attacker knows nothing of it.
struct Linked {
    name: String,
    releases: Vec<Option<Vec<Count>>>,
    covers: Vec<CoverSlots>,
    /// Slots whose withheld cells are all attacked, even in a sample.
    always: Vec<bool>,
}

/// A cell in a [`Linked`] model: a variable, a known 0, or not published.
#[derive(Clone, Copy)]
enum Term {
    Var(microlp::Variable),
    Zero,
    Absent,
}

impl Linked {
    /// One span and the releases that partition it (slot 0 and the rest).
    fn cover(name: String, releases: Vec<Option<Vec<Count>>>) -> Linked {
        let n = releases.len();
        Linked {
            name,
            releases,
            covers: vec![CoverSlots {
                span: 0,
                members: (1..n).collect(),
                first_partial: false,
            }],
            always: (0..n).map(|k| k == 0).collect(),
        }
    }

    fn model(&self, direction: OptimizationDirection, objective: usize) -> (Problem, Vec<Term>) {
        let mut problem = Problem::new(direction);
        let mut terms = Vec::with_capacity(self.releases.len() * METRIC_COUNT);
        for release in &self.releases {
            for i in 0..METRIC_COUNT {
                let c = terms.len();
                let coeff = if c == objective { 1.0 } else { 0.0 };
                terms.push(match release.as_ref().map(|r| r[i]) {
                    None if c != objective => Term::Zero,
                    Some(Count::NotReleased) => Term::Absent,
                    other => {
                        Term::Var(problem.add_integer_var(coeff, other.map_or((0, 0), cell_box)))
                    }
                });
            }
        }
        let mut facts = Vec::new();
        for k in 0..self.releases.len() {
            facts.extend(release_facts(k * METRIC_COUNT));
        }
        for c in &self.covers {
            facts.extend(cover_facts(c.span, &c.members, c.first_partial));
        }
        for (fact, op) in facts {
            let mut t = Vec::with_capacity(fact.len());
            let mut complete = true;
            for (cell, k) in fact {
                match terms[cell] {
                    Term::Var(v) => t.push((v, k)),
                    Term::Zero => {}
                    Term::Absent => complete = false,
                }
            }
            if complete && !t.is_empty() {
                problem.add_constraint(t.as_slice(), op, 0.0);
            }
        }
        (problem, terms)
    }

    fn optimum(&self, direction: OptimizationDirection, objective: usize) -> Option<i64> {
        let (problem, _) = self.model(direction, objective);
        let s = problem.solve().ok()?.into_solution().ok()?;
        (s.status() == SolutionStatus::Optimal).then(|| s.objective().round() as i64)
    }

    /// Every withheld cell, or every withheld cell of the `always` slots and
    /// a sample of `sample` of the rest.
    fn targets(&self, sample: Option<usize>, rng: &mut StdRng) -> Vec<usize> {
        let withheld = |slot: usize| -> Vec<usize> {
            self.releases[slot].as_ref().map_or(Vec::new(), |r| {
                (0..METRIC_COUNT)
                    .filter(|&i| r[i] == Count::Suppressed)
                    .map(|i| slot * METRIC_COUNT + i)
                    .collect()
            })
        };
        let slots = 0..self.releases.len();
        let mut cells: Vec<usize> = slots
            .clone()
            .filter(|&k| self.always[k])
            .flat_map(withheld)
            .collect();
        let mut rest: Vec<usize> = slots
            .filter(|&k| !self.always[k])
            .flat_map(withheld)
            .collect();
        if let Some(n) = sample {
            for k in 0..n.min(rest.len()) {
                let j = rng.random_range(k..rest.len());
                rest.swap(k, j);
            }
            rest.truncate(n);
        }
        cells.extend(rest);
        cells
    }

    /// (cells attacked, narrowed below the protection interval, narrowest).
    fn attack(&self, sample: Option<usize>, rng: &mut StdRng) -> (usize, usize, i64) {
        let (mut attacked, mut narrowed, mut narrowest) = (0, 0, i64::MAX);
        for cell in self.targets(sample, rng) {
            let lo = self.optimum(OptimizationDirection::Minimize, cell);
            let hi = self.optimum(OptimizationDirection::Maximize, cell);
            let (Some(lo), Some(hi)) = (lo, hi) else {
                panic!(
                    "{}: the published releases have no consistent truth",
                    self.name
                );
            };
            attacked += 1;
            if lo <= THRESHOLD {
                narrowest = narrowest.min(hi - lo + 1);
                if hi - lo + 1 < PROTECTION {
                    narrowed += 1;
                    println!(
                        "{}: {} of slot {} narrowed to {lo}..={hi}",
                        self.name,
                        catalogue().metrics()[cell % METRIC_COUNT].id,
                        cell / METRIC_COUNT
                    );
                }
            }
        }
        (attacked, narrowed, narrowest)
    }
}

/// The whole series of one `Sum` metric of one site, as difference
/// constraints. Every month, financial year and programme to date counts
/// events dated in a run of whole months, so each published figure bounds a
/// difference of prefix sums `S[b] - S[a]` (events in months `a..b`), and a
/// withheld one is at least 0. Shortest paths over those constraints give the
/// exact range of every figure: a difference-constraint system with integer
/// bounds has an integer solution at each end of every range, so no integer
/// program is needed. Months outside the data read as 0, as an attacker may
/// assume an empty month.
struct Series {
    /// `dist[a][b]`: the least known upper bound of `S[b] - S[a]`.
    dist: Vec<Vec<i64>>,
    /// Withheld figures, as (name, a, b).
    withheld: Vec<(String, usize, usize)>,
}

impl Series {
    const UNKNOWN: i64 = i64::MAX / 4;

    fn new(months: usize) -> Series {
        let n = months + 1;
        let mut dist = vec![vec![Self::UNKNOWN; n]; n];
        for (i, row) in dist.iter_mut().enumerate() {
            row[i] = 0;
        }
        // Counts are never negative: S is non-decreasing.
        for i in 0..months {
            dist[i + 1][i] = 0;
        }
        Series {
            dist,
            withheld: Vec::new(),
        }
    }

    /// A published (or withheld) figure counting the events of months `a..b`.
    fn figure(&mut self, name: String, a: usize, b: usize, c: Count) {
        if a >= b || c == Count::NotReleased {
            return;
        }
        let (lo, hi) = cell_box(c);
        let (lo, hi) = (i64::from(lo), i64::from(hi));
        if c == Count::Suppressed {
            self.withheld.push((name, a, b));
        } else {
            self.dist[a][b] = self.dist[a][b].min(hi);
            self.dist[b][a] = self.dist[b][a].min(-lo);
        }
    }

    /// Closes the system (Floyd–Warshall); `None` when it has no solution.
    fn solve(mut self) -> Option<SolvedSeries> {
        let n = self.dist.len();
        for k in 0..n {
            for i in 0..n {
                if self.dist[i][k] >= Self::UNKNOWN {
                    continue;
                }
                for j in 0..n {
                    let via = self.dist[i][k] + self.dist[k][j];
                    if via < self.dist[i][j] {
                        self.dist[i][j] = via;
                    }
                }
            }
        }
        (0..n)
            .all(|i| self.dist[i][i] >= 0)
            .then_some(SolvedSeries(self))
    }
}

struct SolvedSeries(Series);

impl SolvedSeries {
    /// The exact range of events in months `a..b`.
    fn range(&self, a: usize, b: usize) -> (i64, i64) {
        let d = &self.0.dist;
        ((-d[b][a]).max(0), d[a][b])
    }

    /// (withheld figures attacked, narrowed below the protection interval
    /// among those that could be small, narrowest), printing each narrowed one.
    fn attack(&self, site: &str, metric: &str) -> (usize, usize, i64) {
        let (mut attacked, mut narrowed, mut narrowest) = (0, 0, i64::MAX);
        for (name, a, b) in &self.0.withheld {
            let (lo, hi) = self.range(*a, *b);
            attacked += 1;
            if lo <= THRESHOLD {
                let values = hi.min(i64::from(BIG)) - lo + 1;
                narrowest = narrowest.min(values);
                if values < PROTECTION {
                    narrowed += 1;
                    if narrowed <= 3 {
                        println!("  {site} {metric} {name}: narrowed to {lo}..={hi}");
                    }
                }
            }
        }
        (attacked, narrowed, narrowest)
    }
}

/// Every release an analyst can read for one site: each month (or quarter,
/// for a quarterly site) from April 2000 to the end of the last financial
/// year with data (`None` where the hub holds none: no activity), each
/// financial year, and each programme to date (published at financial-year
/// ends).
struct WholeSeries {
    site: String,
    /// Months or quarters in a year: 12 or 4.
    per_year: i64,
    /// Month or quarter slots; slot 0 is April 2000 (month index -9,
    /// quarter index -3, counting from January 2001).
    months: Vec<Option<Vec<Count>>>,
    /// (year, release) of FY`year`.
    years: Vec<(i32, Option<Vec<Count>>)>,
    /// (year, release) of the programme to date to March of `year`.
    ptds: Vec<(i32, Option<Vec<Count>>)>,
}

/// The month (`per_year` 12) or quarter (4) `i` counted from January 2001.
fn unit_pb(per_year: i64, i: usize) -> pb::Period {
    if per_year == 12 {
        return month_pb(i);
    }
    span_pb(
        pb::Granularity::Quarter,
        2001 + (i / 4) as i32,
        (i % 4 + 1) as u32,
    )
}

/// `units` months or quarters of releases from January 2001 (`first`, keyed
/// by site and unit), and the site's years and programmes to date.
async fn whole_series(
    hub: &TestHub,
    net: &NetworkPki,
    site: &str,
    (units, per_year): (usize, i64),
    first: &HashMap<(String, usize), Published>,
) -> WholeSeries {
    let last_year = 2001 + (units as i64 - 1) / per_year;
    let slots = ((last_year - 2000 + 1) * per_year) as usize;
    let first_slot = -(per_year * 3 / 4);
    let month_slots = (0..slots)
        .map(|k| {
            let m = k as i64 + first_slot;
            usize::try_from(m)
                .ok()
                .and_then(|m| first.get(&(site.to_owned(), m)))
                .map(|t| t.counts.to_vec())
        })
        .collect();
    let mut years = Vec::new();
    let last_year = last_year as i32;
    for y in 2000..=last_year {
        let fy = span_snapshot(hub, net, span_pb(pb::Granularity::FinancialYear, y, 1)).await;
        years.push((y, fy.get(site).map(|t| t.counts.to_vec())));
    }
    let mut ptds = Vec::new();
    for y in 2001..=last_year + 2 {
        let ptd = span_snapshot(hub, net, ptd_pb(y)).await;
        ptds.push((y, ptd.get(site).map(|t| t.counts.to_vec())));
    }
    WholeSeries {
        site: site.to_owned(),
        per_year,
        months: month_slots,
        years,
        ptds,
    }
}

impl WholeSeries {
    /// The slot of month or quarter index `m` (0 = January 2001).
    fn slot(&self, m: i64) -> usize {
        (m + self.per_year * 3 / 4) as usize
    }

    /// The slot of April of `year`, where its financial year starts.
    fn april(&self, year: i32) -> usize {
        self.slot(i64::from(year - 2001) * self.per_year + self.per_year / 4)
    }

    /// The difference-constraint system of one metric over the whole series.
    fn series(&self, metric: usize) -> Series {
        let mut s = Series::new(self.months.len());
        for (k, release) in self.months.iter().enumerate() {
            // A month with no release had no activity: it reads as 0.
            let c = release.as_ref().map_or(Count::Value(0), |r| r[metric]);
            if c == Count::Value(0) {
                s.dist[k][k + 1] = 0;
            } else {
                s.figure(format!("month slot {k}"), k, k + 1, c);
            }
        }
        let per_year = self.per_year as usize;
        for (y, release) in &self.years {
            let a = self.april(*y);
            let b = (a + per_year).min(self.months.len());
            let c = release.as_ref().map_or(Count::Value(0), |r| r[metric]);
            s.figure(format!("FY{y}"), a, b, c);
        }
        for (y, release) in &self.ptds {
            let b = self.april(*y).min(self.months.len());
            if let Some(r) = release {
                s.figure(format!("PTD{y}-03"), self.slot(0), b, r[metric]);
            }
        }
        s
    }

    /// Every release of the site in one integer program: months, financial
    /// years and programmes to date, each with its own tables and relations,
    /// every year tied to its months and every programme to date to the one
    /// before and the year since (the first to its months).
    fn system(&self) -> Linked {
        let n_months = self.months.len();
        let mut releases: Vec<Option<Vec<Count>>> = self.months.clone();
        let mut always = vec![false; n_months];
        let mut covers = Vec::new();
        let mut year_slot = HashMap::new();
        for (y, release) in &self.years {
            let slot = releases.len();
            releases.push(release.clone());
            always.push(true);
            year_slot.insert(*y, slot);
            let a = self.april(*y);
            covers.push(CoverSlots {
                span: slot,
                members: (a..(a + self.per_year as usize).min(n_months)).collect(),
                first_partial: false,
            });
        }
        let mut before: Option<usize> = None;
        for (y, release) in &self.ptds {
            let slot = releases.len();
            releases.push(release.clone());
            always.push(true);
            let members = match before {
                // The programme started in January 2001: the first programme
                // to date is January to March 2001.
                None => (self.slot(0)..self.april(2001)).collect(),
                Some(prev) => {
                    let year = *year_slot.entry(y - 1).or_insert_with(|| {
                        releases.push(None);
                        always.push(false);
                        releases.len() - 1
                    });
                    vec![prev, year]
                }
            };
            covers.push(CoverSlots {
                span: slot,
                members,
                first_partial: false,
            });
            before = Some(slot);
        }
        Linked {
            name: format!("{} whole series", self.site),
            releases,
            covers,
            always,
        }
    }
}

/// The programme to date published two months apart and the later month
/// published: the month between is pinned (the issue's example 2,
/// PTD2026-03 at 80, PTD2026-05 at 85 and May at 10 put April in 0..=1).
#[test]
fn the_whole_series_attacker_pins_a_month_between_two_programmes_to_date() {
    let mut s = Series::new(3);
    s.figure("PTD month 0".into(), 0, 1, Count::Value(80));
    s.figure("April".into(), 1, 2, Count::Suppressed);
    s.figure("May".into(), 2, 3, Count::Value(10));
    s.figure("PTD month 2".into(), 0, 3, Count::Value(85));
    let solved = s.solve().expect("the releases are consistent");
    assert_eq!(solved.range(1, 2), (0, 1));
    let (attacked, narrowed, narrowest) = solved.attack("teeth", "introductions_new");
    assert_eq!((attacked, narrowed, narrowest), (1, 1, 2));
    // Example 1: a financial year equal to a programme to date (a programme
    // starting on 1 April), both at 10, and the programme to date a month
    // earlier at 10: March is at most 4.
    let mut s = Series::new(12);
    for m in 0..11 {
        s.figure(format!("month {m}"), m, m + 1, Count::Suppressed);
    }
    s.figure("March".into(), 11, 12, Count::Suppressed);
    s.figure("FY".into(), 0, 12, Count::Value(10));
    s.figure("PTD month 10".into(), 0, 11, Count::Value(10));
    let solved = s.solve().expect("the releases are consistent");
    assert_eq!(solved.range(11, 12), (0, 4));
}

/// What changed between two releases, as the attacker models it: one
/// person, whose cells in each table are unknown (binary choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Erased,
    /// The person's primary need changed.
    NeedUpdated,
    /// One outcome added to the person's record.
    OutcomeAdded,
}

/// The dimensions the attacker tries to learn for each kind of change.
fn targets(change: Change) -> Vec<&'static str> {
    match change {
        Change::Added | Change::Erased => vec!["age_band", "primary_need", "source"],
        Change::NeedUpdated => vec!["primary_need"],
        Change::OutcomeAdded => vec!["outcome"],
    }
}

fn group_cells(group: &str) -> Vec<usize> {
    catalogue()
        .metrics()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.group == group)
        .map(|(i, _)| i)
        .collect()
}

/// Could the person behind `change` be in category `k` of `group`, given
/// both releases? Variables: the first release's truth `t1`, the second's
/// `t2`, each bound by its own release and tables, and a per-cell change
/// `t2 - t1` of one person: 0 or 1 (added), 0 or -1 (erased), -1 to 1
/// (updated). The tables then force the change into one category of each
/// breakdown, and the cross-tabulations tie those choices together.
fn could_be(before: &[Count], after: &[Count], change: Change, group: &str, k: usize) -> bool {
    let mut m = Model::release(before, OptimizationDirection::Minimize, None);
    let n = METRIC_COUNT;
    for &c in after.iter() {
        let v = m.problem.add_integer_var(0.0, cell_box(c));
        m.vars.push(v);
    }
    m.add_facts(n);
    let (lo, hi, introductions) = match change {
        Change::Added => (0, 1, 1.0),
        Change::Erased => (-1, 0, -1.0),
        Change::NeedUpdated | Change::OutcomeAdded => (-1, 1, 0.0),
    };
    let delta: Vec<_> = (0..n)
        .map(|_| m.problem.add_integer_var(0.0, (lo, hi)))
        .collect();
    for (c, &d) in delta.iter().enumerate() {
        // t2 - t1 - delta = 0.
        m.problem.add_constraint(
            [(m.vars[n + c], 1.0), (m.vars[c], -1.0), (d, -1.0)],
            ComparisonOp::Eq,
            0.0,
        );
    }
    m.problem.add_constraint(
        [(delta[metrics::INTRODUCTIONS_NEW], 1.0)],
        ComparisonOp::Eq,
        introductions,
    );
    if change == Change::OutcomeAdded {
        // One outcome gained, nothing else about the person changed.
        for (c, &d) in delta.iter().enumerate() {
            if catalogue().def(c).group != "outcome" && !catalogue().def(c).id.contains(".outcome.")
            {
                m.problem.add_constraint([(d, 1.0)], ComparisonOp::Eq, 0.0);
            }
        }
        let outcomes: Vec<_> = group_cells("outcome")
            .iter()
            .map(|&c| (delta[c], 1.0))
            .collect();
        m.problem
            .add_constraint(outcomes.as_slice(), ComparisonOp::Eq, 1.0);
    }
    let target = group_cells(group)[k];
    m.problem.add_constraint(
        [(delta[target], 1.0)],
        ComparisonOp::Eq,
        if change == Change::Erased { -1.0 } else { 1.0 },
    );
    m.feasible()
}

/// A point estimate of a published cell, for ranking categories.
fn estimate(c: Count) -> f64 {
    match c {
        Count::Value(v) => v as f64,
        Count::Suppressed => (THRESHOLD as f64) / 2.0,
        // Nothing known: no category is likelier.
        Count::NotReleased => 0.0,
    }
}

/// The guess from one release's totals: the largest published category.
fn baseline_guess(release: &[Count], group: &str) -> usize {
    let cells = group_cells(group);
    (0..cells.len())
        .max_by(|&a, &b| estimate(release[cells[a]]).total_cmp(&estimate(release[cells[b]])))
        .unwrap()
}

/// The differencing attacker: among the categories both releases allow,
/// one whose published figure visibly changed, else the largest published.
fn differencing_guess(before: &[Count], after: &[Count], change: Change, group: &str) -> usize {
    let cells = group_cells(group);
    let possible: Vec<usize> = (0..cells.len())
        .filter(|&k| could_be(before, after, change, group, k))
        .collect();
    let pool = if possible.is_empty() {
        (0..cells.len()).collect()
    } else {
        possible
    };
    let score = |k: usize| {
        let changed = before[cells[k]] != after[cells[k]];
        (u8::from(changed), estimate(after[cells[k]]))
    };
    *pool
        .iter()
        .max_by(|&&a, &&b| {
            let (ca, ea) = score(a);
            let (cb, eb) = score(b);
            ca.cmp(&cb).then(ea.total_cmp(&eb))
        })
        .unwrap()
}

/// The true category index of `p` in `group`, as the catalogue orders it.
fn truth_of(p: &CaseRecord, group: &str, outcome: Option<i32>) -> usize {
    let id = match group {
        "age_band" => age_band_id(p.age),
        "primary_need" => lacnet_core::vocab::PrimaryNeed::from_code(p.need)
            .unwrap()
            .id()
            .to_owned(),
        "source" => lacnet_core::vocab::IntroductionSource::from_code(p.source)
            .unwrap()
            .id()
            .to_owned(),
        "outcome" => lacnet_core::vocab::Outcome::from_code(outcome.unwrap())
            .unwrap()
            .id()
            .to_owned(),
        _ => unreachable!(),
    };
    let cell = catalogue().index_of(&format!("{group}.{id}")).unwrap();
    group_cells(group).iter().position(|&c| c == cell).unwrap()
}

fn age_band_id(age: u32) -> String {
    match age {
        0..=17 => "under_18",
        18..=24 => "18_24",
        25..=34 => "25_34",
        35..=44 => "35_44",
        45..=54 => "45_54",
        55..=64 => "55_64",
        65..=74 => "65_74",
        75..=84 => "75_84",
        _ => "85_plus",
    }
    .to_owned()
}

// ---------------------------------------------------------------- the network

struct Site {
    code: &'static str,
    options: AgentOptions,
    agent: TestAgent,
    client: SiteAgentClient<Channel>,
    operator: SiteAgentClient<Channel>,
}

async fn start_site(
    net: &NetworkPki,
    hub: &TestHub,
    code: &'static str,
    name: &str,
    root: &Path,
    granularity: Granularity,
) -> Site {
    let pki = CouncilPki::new(name);
    let key_path = root.join(format!("{name}.key"));
    random_key_file(&key_path, "k1");
    let keys = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path)]).unwrap();
    let mut o = AgentOptions::new(root.join(name), code, keys, pki.agent.clone());
    o.hub = Some(HubTarget {
        url: hub.url(),
        server_name: HUB_NAME.into(),
        tls: net.site(code),
    });
    o.granularity = granularity;
    o.publish_debounce = Duration::from_millis(50);
    o.push_backoff_base = Duration::from_millis(20);
    o.push_backoff_cap = Duration::from_millis(200);
    o.clock = std::sync::Arc::new(MockClock::at_date(TODAY).unwrap());
    // The agent publishes the programme to date monthly from here: month 0
    // in the long run, the last six months in the short one (each is one
    // more linked release to protect, and debug builds are slow).
    o.programme_start = Some(Date::parse(programme_start()).unwrap());
    let agent = TestAgent::start(&pki, o.clone()).await;
    let client = agent.client(&pki.council).await;
    let operator = agent.client(&pki.operator).await;
    Site {
        code,
        options: o,
        agent,
        client,
        operator,
    }
}

impl Site {
    async fn upsert(&mut self, records: Vec<site::Record>) {
        for chunk in records.chunks(2_000) {
            let r = self
                .client
                .upsert_records(site::UpsertRecordsRequest {
                    records: chunk.to_vec(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.rejected,
                0,
                "{:?}",
                r.verdicts.iter().find(|v| !v.violations.is_empty())
            );
        }
    }

    /// Publishes now and waits until the outbox has reached the hub.
    async fn settle(&self) {
        lacnet_site_agent::publish::publish_once(&self.agent.agent)
            .await
            .unwrap();
        let a = self.agent.agent.clone();
        poll("the outbox to drain", || {
            let a = a.clone();
            async move { (a.store().outbox_len() == 0).then_some(()) }
        })
        .await;
    }
}

/// Every site's published table for `units` months (`per_year` 12) or
/// quarters (4) from January 2001, as an analyst reads them.
async fn snapshot(
    hub: &TestHub,
    net: &NetworkPki,
    (units, per_year): (usize, i64),
) -> HashMap<(String, usize), Published> {
    let mut reports = hub.reports(&net.analyst).await;
    let mut out = HashMap::new();
    for m in 0..units {
        let summary = reports
            .network_summary(hub::NetworkSummaryRequest {
                period: Some(unit_pb(per_year, m)),
            })
            .await
            .unwrap()
            .into_inner();
        for (site, table) in published_by_site(&summary) {
            out.insert((site, m), table);
        }
    }
    out
}

/// Every site's published table for one span, as an analyst reads it.
async fn span_snapshot(
    hub: &TestHub,
    net: &NetworkPki,
    period: pb::Period,
) -> HashMap<String, Published> {
    let summary = hub
        .reports(&net.analyst)
        .await
        .network_summary(hub::NetworkSummaryRequest {
            period: Some(period),
        })
        .await
        .unwrap()
        .into_inner();
    published_by_site(&summary)
}

/// One data set per site-month for `months` months, sent to each site's
/// agent and published to the hub; returns them keyed by site and month.
async fn load_sites(
    sites: &mut [Site],
    months: usize,
    rng: &mut StdRng,
) -> BTreeMap<(String, usize), Vec<Person>> {
    let mut data = BTreeMap::new();
    for s in sites {
        let mut records = Vec::new();
        for m in 0..months {
            let people = data_set(rng, s.code, m);
            records.extend(people.iter().map(|p| p.record.to_proto()));
            data.insert((s.code.to_owned(), m), people);
        }
        s.upsert(records).await;
        s.settle().await;
    }
    data
}

/// The true counts of one month or quarter: the data sets of `months`,
/// counted from `start` to `end`.
fn unit_truth(
    data: &BTreeMap<(String, usize), Vec<Person>>,
    site: &str,
    months: std::ops::Range<usize>,
    start: &str,
    end: &str,
) -> lacnet_core::metrics::Aggregates {
    let records: Vec<CaseRecord> = months
        .flat_map(|m| data[&(site.to_owned(), m)].iter().map(|p| p.record.clone()))
        .collect();
    true_counts(&records, start, end)
}

/// Every attack on every release an analyst holds of each site (`truths`:
/// each site's true counts by month or quarter, for the attacker's
/// soundness): single releases, the whole series one `Sum` metric at a time
/// by difference constraints, and the whole series in one integer program
/// per site (`full`: every cell; otherwise a sample of the months'). Asserts
/// that none narrows a withheld cell that could be small.
fn attack_every_way(
    wholes: &[WholeSeries],
    truths: &[Vec<lacnet_core::metrics::Aggregates>],
    months: usize,
    full: bool,
    rng: &mut StdRng,
) {
    let kind = if wholes[0].per_year == 12 {
        "months"
    } else {
        "quarters"
    };
    // ---- single releases: the protection interval, for every month or quarter,
    // financial year and programme to date on its own.
    let (mut releases, mut attacked, mut narrowed, mut narrowest, mut known_large) =
        (0usize, 0usize, 0usize, i64::MAX, 0usize);
    let every_release = wholes.iter().flat_map(|w| {
        w.months
            .iter()
            .chain(w.years.iter().map(|(_, r)| r))
            .chain(w.ptds.iter().map(|(_, r)| r))
            .flatten()
    });
    for table in every_release {
        releases += 1;
        for cell in 0..METRIC_COUNT {
            if table[cell] == Count::Suppressed {
                let (lo, hi) = interval(table, cell);
                let values = hi - lo + 1;
                attacked += 1;
                // A withheld cell that could be a small count must keep
                // the protection interval; one the attacker knows is above
                // the threshold is a large count (narrowing it tells no more
                // than publishing it rounded would).
                if lo <= THRESHOLD {
                    narrowest = narrowest.min(values);
                    if values < PROTECTION {
                        narrowed += 1;
                        let shown: Vec<String> = table
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| **c != Count::NotReleased)
                            .map(|(i, c)| format!("{}={c:?}", catalogue().def(i).id))
                            .collect();
                        println!(
                            "single release: {} narrowed to {lo}..={hi} in [{}]",
                            catalogue().def(cell).id,
                            shown.join(", ")
                        );
                    }
                } else {
                    known_large += 1;
                }
            }
        }
    }
    println!(
        "single releases: {releases} releases ({kind}, financial years, programmes to date), {attacked} withheld cells attacked, {narrowed} that could be small narrowed below {PROTECTION} values (narrowest {narrowest}), {known_large} known to be above the threshold"
    );
    assert!(attacked > 0 && releases > wholes.len() * months);
    assert_eq!(
        narrowed, 0,
        "withheld cells narrowed below the protection interval"
    );

    // ---- the whole series, one `Sum` metric at a time, exactly
    // (difference constraints): every withheld cell of every release. The
    // attacker's soundness is asserted: it never excludes a month's truth.
    let (mut attacked, mut narrowed, mut narrowest, mut metrics_attacked) =
        (0usize, 0usize, i64::MAX, 0usize);
    for (whole, truths) in wholes.iter().zip(truths) {
        for (i, def) in catalogue().metrics().iter().enumerate() {
            if def.across_periods != lacnet_core::metrics::Additivity::Sum {
                continue;
            }
            let solved = whole.series(i).solve().unwrap_or_else(|| {
                panic!(
                    "{} {}: the published series has no consistent truth",
                    whole.site, def.id
                )
            });
            for (m, truth) in truths.iter().enumerate() {
                let k = whole.slot(m as i64);
                let (lo, hi) = solved.range(k, k + 1);
                let t = truth.counts[i] as i64;
                assert!(
                    lo <= t && t <= hi,
                    "{} {} slot {m}: the attacker excluded the truth {t} from {lo}..={hi}",
                    whole.site,
                    def.id
                );
            }
            let (a, n, w) = solved.attack(&whole.site, &def.id);
            metrics_attacked += 1;
            attacked += a;
            narrowed += n;
            narrowest = narrowest.min(w);
        }
    }
    println!(
        "whole series, Sum metrics by difference constraints ({metrics_attacked} site-metric series, every one of the {kind}, financial years and programmes to date): {attacked} withheld cells attacked, {narrowed} that could be small narrowed below {PROTECTION} values (narrowest {narrowest})"
    );
    assert!(attacked > 0 && metrics_attacked > 0);
    assert_eq!(narrowed, 0, "the whole series narrows withheld cells");

    // ---- the whole series in one integer program per site: every release
    // with its tables and the relations between people by level, every
    // year with its months, every programme to date with the one before and
    // the year since. Every withheld cell of a year or programme to date is
    // attacked; the short run samples the months' cells.
    let (mut attacked, mut narrowed, mut narrowest) = (0usize, 0usize, i64::MAX);
    for whole in wholes {
        let system = whole.system();
        let (a, n, w) = system.attack((!full).then_some(24), rng);
        attacked += a;
        narrowed += n;
        narrowest = narrowest.min(w);
    }
    println!(
        "whole series, one integer program per site ({} sites, {months} {kind} each, with financial years and programmes to date): {attacked} withheld cells attacked, {narrowed} that could be small narrowed below {PROTECTION} values (narrowest {narrowest})",
        wholes.len()
    );
    assert!(attacked > 0);
    assert_eq!(narrowed, 0, "the whole series narrows withheld cells");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_with_every_release_and_a_solver_learns_nothing_beyond_the_totals() {
    let months = months_per_site();
    let root = tempfile::tempdir().unwrap();
    let net = NetworkPki::new();
    let registry = root.path().join("registry.toml");
    // Monthly series: one data set per site-month. The long run adds six
    // more councils to Derby and Thurrock.
    let mut monthly =
        registry_toml().replace("granularity = \"quarter\"", "granularity = \"month\"");
    assert!(monthly.contains("granularity = \"month\""));
    let extra: &[(&'static str, &str)] = if months > 24 { &MORE_SITES } else { &[] };
    for (code, name) in extra {
        monthly.push_str(&format!(
            "\n[[sites]]\ncode = \"{code}\"\nname = \"{name}\"\nadult_population = 150000\ngranularity = \"month\"\n"
        ));
    }
    std::fs::write(&registry, monthly).unwrap();
    let hub = TestHub::start(&net, &root.path().join("hub"), &registry).await;
    let mut sites = vec![
        start_site(&net, &hub, DERBY, "derby", root.path(), Granularity::Month).await,
        start_site(
            &net,
            &hub,
            THURROCK,
            "thurrock",
            root.path(),
            Granularity::Month,
        )
        .await,
    ];
    for (code, name) in extra {
        sites.push(
            start_site(
                &net,
                &hub,
                code,
                &name.to_lowercase().replace(' ', "-"),
                root.path(),
                Granularity::Month,
            )
            .await,
        );
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_f7ea);
    let data = load_sites(&mut sites, months, &mut rng).await;
    let first = snapshot(&hub, &net, (months, 12)).await;
    assert_eq!(
        first.len(),
        sites.len() * months,
        "every site-month was published"
    );

    // Every release an analyst can read, per site.
    let mut wholes = Vec::new();
    for s in &sites {
        wholes.push(whole_series(&hub, &net, s.code, (months, 12), &first).await);
    }

    let truths: Vec<Vec<lacnet_core::metrics::Aggregates>> = sites
        .iter()
        .map(|s| {
            (0..months)
                .map(|m| {
                    let (y, mo) = (2001 + m / 12, m % 12 + 1);
                    unit_truth(
                        &data,
                        s.code,
                        m..m + 1,
                        &format!("{y}-{mo:02}-01"),
                        &format!("{y}-{mo:02}-31"),
                    )
                })
                .collect()
        })
        .collect();
    attack_every_way(&wholes, &truths, months, months > 24, &mut rng);

    // ---- differencing: one change per site-month.
    let kinds = [
        Change::Added,
        Change::Erased,
        Change::NeedUpdated,
        Change::OutcomeAdded,
    ];
    let mut trials: Vec<(String, usize, Change, CaseRecord, Option<i32>)> = Vec::new();
    for s in &mut sites {
        let mut upserts = Vec::new();
        for m in 0..months {
            let change = kinds[(m + usize::from(s.code == THURROCK)) % kinds.len()];
            let people = &data[&(s.code.to_owned(), m)];
            let i = rng.random_range(0..people.len());
            let mut r = people[i].record.clone();
            let mut outcome = None;
            match change {
                Change::Added => {
                    let extra = person(&mut rng, s.code, m, 1000 + i, 1, 1, 40, 0.0);
                    r = extra.record;
                    upserts.push(r.to_proto());
                }
                Change::Erased => {
                    let n = s
                        .operator
                        .erase_person(site::ErasePersonRequest {
                            identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
                                r.case.clone(),
                            )),
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .records_erased;
                    assert_eq!(n, 1);
                }
                Change::NeedUpdated => {
                    r.need = (r.need % 10) + 1 + rng.random_range(0..9);
                    r.need = (r.need - 1) % 10 + 1;
                    if r.need == people[i].record.need {
                        r.need = r.need % 10 + 1;
                    }
                    upserts.push(r.to_proto());
                }
                Change::OutcomeAdded => {
                    let missing: Vec<i32> = (1..=9).filter(|o| !r.outcomes.contains(o)).collect();
                    let o = missing[rng.random_range(0..missing.len())];
                    r.outcomes.push(o);
                    outcome = Some(o);
                    upserts.push(r.to_proto());
                }
            }
            trials.push((s.code.to_owned(), m, change, r, outcome));
        }
        s.upsert(upserts).await;
        s.settle().await;
    }
    let second = snapshot(&hub, &net, (months, 12)).await;

    let (mut guesses, mut hits, mut baseline_hits, mut changed) = (0usize, 0usize, 0usize, 0usize);
    for (site, m, change, r, outcome) in &trials {
        let before = &first[&(site.clone(), *m)].counts;
        let after = &second[&(site.clone(), *m)].counts;
        if before != after {
            changed += 1;
        }
        for group in targets(*change) {
            let truth = truth_of(r, group, *outcome);
            assert!(
                could_be(before, after, *change, group, truth),
                "the attacker's model must allow the truth: {site} month {m} {change:?} {group}"
            );
            guesses += 1;
            hits += usize::from(differencing_guess(before, after, *change, group) == truth);
            baseline_hits += usize::from(baseline_guess(after, group) == truth);
        }
    }
    let rate = hits as f64 / guesses as f64;
    let baseline = baseline_hits as f64 / guesses as f64;
    println!(
        "differencing: {} trials, {changed} releases changed, {guesses} guesses: attacker {:.1}%, baseline from totals {:.1}%",
        trials.len(),
        rate * 100.0,
        baseline * 100.0
    );
    assert!(
        rate <= baseline + 0.05,
        "the differencing attacker ({:.1}%) beats the baseline ({:.1}%) by more than 5 points",
        rate * 100.0,
        baseline * 100.0
    );

    // ---- a change of series is refused: by the agent on its data
    // directory, and by the hub for a site registered as monthly.
    let derby = sites.remove(0);
    let month0 = derby
        .agent
        .agent
        .store()
        .last_submission(lacnet_core::Period::parse("2001-01").unwrap())
        .unwrap()
        .unwrap();
    let mut quarterly = derby.options.clone();
    drop(derby.client);
    drop(derby.operator);
    drop(derby.agent.stop().await);
    quarterly.granularity = Granularity::Quarter;
    let refused = lacnet_site_agent::Agent::open(quarterly)
        .expect_err("another granularity on the same data directory");
    assert!(
        matches!(
            refused,
            lacnet_site_agent::AgentError::SeriesMismatch { .. }
        ),
        "{refused}"
    );
    let mut quarter = month0.clone();
    quarter.period = Some(span_pb(pb::Granularity::Quarter, 2001, 1));
    let policy = lacnet_core::DisclosurePolicy::default();
    let period = lacnet_core::Period::parse("2001-Q1").unwrap();
    quarter.digest =
        lacnet_core::submission::digest(DERBY, period, &policy, &first[&(DERBY.to_owned(), 0)]);
    let status = hub.submit(&net.site(DERBY), quarter).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    println!(
        "change of series: the agent refused ({refused}); the hub refused a quarter: {}",
        status.message()
    );
    drop(sites);
    hub.stop().await;
}

/// Quarterly sites, attacked the same ways over their whole series:
/// quarters carry more figures than months (new introductions by level, the
/// two age groups and every outcome), about three months' people each. The
/// short run has Derby and Thurrock over 8 quarters; the long run adds two
/// councils, over 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarterly_sites_whole_series_gives_nothing_away() {
    let months = months_per_site();
    let quarters = months / 3;
    let root = tempfile::tempdir().unwrap();
    let net = NetworkPki::new();
    let registry = root.path().join("registry.toml");
    let mut text = registry_toml();
    let extra: &[(&'static str, &str)] = if months > 24 { &MORE_SITES[..2] } else { &[] };
    for (code, name) in extra {
        text.push_str(&format!(
            "\n[[sites]]\ncode = \"{code}\"\nname = \"{name}\"\nadult_population = 150000\ngranularity = \"quarter\"\n"
        ));
    }
    std::fs::write(&registry, text).unwrap();
    let hub = TestHub::start(&net, &root.path().join("hub"), &registry).await;
    let mut sites = Vec::new();
    for (code, name) in [(DERBY, "Derby"), (THURROCK, "Thurrock")]
        .iter()
        .chain(extra)
    {
        let name = name.to_lowercase().replace(' ', "-");
        sites.push(start_site(&net, &hub, code, &name, root.path(), Granularity::Quarter).await);
    }
    let mut rng = StdRng::seed_from_u64(0x9a7_7e71);
    let data = load_sites(&mut sites, months, &mut rng).await;
    let first = snapshot(&hub, &net, (quarters, 4)).await;
    assert_eq!(
        first.len(),
        sites.len() * quarters,
        "every site-quarter was published"
    );
    let mut wholes = Vec::new();
    for s in &sites {
        wholes.push(whole_series(&hub, &net, s.code, (quarters, 4), &first).await);
    }
    let truths: Vec<Vec<lacnet_core::metrics::Aggregates>> = sites
        .iter()
        .map(|s| {
            (0..quarters)
                .map(|q| {
                    let (y, first_month) = (2001 + q / 4, 3 * (q % 4) + 1);
                    unit_truth(
                        &data,
                        s.code,
                        3 * q..3 * q + 3,
                        &format!("{y}-{first_month:02}-01"),
                        &format!("{y}-{:02}-31", first_month + 2),
                    )
                })
                .collect()
        })
        .collect();
    attack_every_way(&wholes, &truths, quarters, true, &mut rng);
    drop(sites);
    hub.stop().await;
}

/// The attacker has teeth: against releases published person by person under
/// the rules before this suite (zeros shown, 1 to 7 withheld, the rest
/// rounded to 5, no release gate), differencing one added person reveals
/// their band, need or source far more often than the baseline guess.
#[test]
fn the_attacker_breaks_releases_published_person_by_person() {
    let old_rules = |a: &lacnet_core::metrics::Aggregates| -> Vec<Count> {
        a.counts
            .iter()
            .map(|&v| match v {
                0 => Count::Value(0),
                1..=7 => Count::Suppressed,
                v => Count::Value((v + 2) / 5 * 5),
            })
            .collect()
    };
    let mut rng = StdRng::seed_from_u64(7);
    let (mut guesses, mut hits, mut baseline_hits) = (0usize, 0usize, 0usize);
    for m in 0..30 {
        let people = data_set(&mut rng, "teeth", m);
        let (y, mo) = (2001 + m / 12, m % 12 + 1);
        let (start, end) = (format!("{y}-{mo:02}-01"), format!("{y}-{mo:02}-28"));
        let mut records: Vec<CaseRecord> = people.iter().map(|p| p.record.clone()).collect();
        let before = old_rules(&true_counts(&records, &start, &end));
        let added = person(&mut rng, "teeth", m, 1000, 1, 1, 40, 0.0).record;
        records.push(added.clone());
        let after = old_rules(&true_counts(&records, &start, &end));
        for group in targets(Change::Added) {
            let truth = truth_of(&added, group, None);
            assert!(
                could_be(&before, &after, Change::Added, group, truth),
                "the attacker's model must allow the truth ({group})"
            );
            guesses += 1;
            hits += usize::from(differencing_guess(&before, &after, Change::Added, group) == truth);
            baseline_hits += usize::from(baseline_guess(&after, group) == truth);
        }
    }
    let (rate, baseline) = (
        hits as f64 / guesses as f64,
        baseline_hits as f64 / guesses as f64,
    );
    println!(
        "old rules, person-by-person releases: attacker {:.1}%, baseline {:.1}%",
        rate * 100.0,
        baseline * 100.0
    );
    assert!(
        rate > baseline + 0.2,
        "the attacker should break unprotected differencing: {rate} vs {baseline}"
    );
}

/// The linked attack has teeth: a financial year and its months each
/// protected on its own (as before linked protection) give a small month
/// away. A site active in two months of the year: April with 50 people,
/// half at each level, in two needs, May with 2. The year's 52 and April's
/// 50 both round to 50, so May's count is at most 52 - 48 = 4: five values,
/// where a withheld cell must keep seven.
#[test]
fn a_year_protected_apart_from_its_months_gives_cells_away() {
    let policy = lacnet_core::DisclosurePolicy::default();
    let mut rng = StdRng::seed_from_u64(11);
    let person = |i: usize, day: &str| CaseRecord {
        case: format!("teeth-{i}"),
        nhs: None,
        introduced_on: day.to_owned(),
        closed_on: Some(day.to_owned()),
        level: 1 + (i % 2) as i32,
        age: 40,
        need: 3 + (i % 2) as i32,
        source: 2,
        outcomes: Vec::new(),
        ward: "E05000001".into(),
    };
    let april: Vec<CaseRecord> = (0..50).map(|i| person(i, "2001-04-10")).collect();
    let may: Vec<CaseRecord> = (50..52).map(|i| person(i, "2001-05-10")).collect();
    let alone = |records: &[CaseRecord], start: &str, end: &str| {
        Some(
            lacnet_core::disclosure::apply(&true_counts(records, start, end), &policy)
                .counts
                .to_vec(),
        )
    };
    let year: Vec<CaseRecord> = april.iter().chain(&may).cloned().collect();
    let mut releases = vec![
        alone(&year, "2001-04-01", "2002-03-31"),
        alone(&april, "2001-04-01", "2001-04-30"),
        alone(&may, "2001-05-01", "2001-05-31"),
    ];
    releases.extend((0..10).map(|_| None));
    let (attacked, narrowed, narrowest) =
        Linked::cover("teeth FY2001".into(), releases).attack(None, &mut rng);
    println!(
        "protected apart: {attacked} withheld cells attacked, {narrowed} narrowed below {PROTECTION} values (narrowest {narrowest})"
    );
    assert!(
        narrowed > 0,
        "protecting a year apart from its months should leave cells the two narrow"
    );
}
