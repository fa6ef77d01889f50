//! A publishing round's decisions as a pure function of what the site holds:
//! [`plan`]`(snapshot, site, dirty, today)` says, for every dirty period and
//! the spans over them, whether a release goes out and what it publishes.
//!
//! It reads through a [`Snapshot`] (true counts, and the releases already
//! enqueued) and writes nothing, reads no clock and takes no lock, so the
//! same inputs give the same releases. `publish.rs` takes the snapshot from
//! the store, runs the plan off the writer thread and applies the result in
//! one write job; a test runs it over a snapshot of its own.
//!
//! A round decides in three steps, cheapest first, so that nothing that
//! would not be published is counted or protected:
//!
//! 1. the embargo, from the dates alone ([`embargo_ends`]);
//! 2. the release gate, from each period's own counts ([`decide_early`]);
//! 3. protection, jointly with the linked releases ([`Released`]), counting
//!    those only for the periods that passed both.

use std::collections::{BTreeSet, HashMap};

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::linked::publishes_programme_to_date;
use lacnet_core::metrics::METRIC_COUNT;
use lacnet_core::{Date, Granularity, Period, submission};

use crate::AgentError;
use crate::linked::{self, Released};

/// What a publishing round reads of the site: its true counts now and the
/// releases it has already enqueued.
pub trait Snapshot {
    /// The true counts of each of `periods`, in order (a round asks for as
    /// few as it can: counting scans every record).
    fn counts(&self, periods: &[Period]) -> Result<Vec<Vec<u64>>, AgentError>;

    /// The true counts the last enqueued release of `period` was made from.
    fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError>;

    /// What the last enqueued release of `period` published, by catalogue
    /// index, and its digest.
    fn last_release(&self, period: Period) -> Result<Option<LastRelease>, AgentError>;
}

/// A release the site has already enqueued, as the plan needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRelease {
    /// Its cells by catalogue index (a metric it lacks is unknown).
    pub counts: Vec<Count>,
    /// Its digest.
    pub digest: String,
}

/// The site's settings a plan depends on.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's code, which every digest covers.
    pub code: String,
    /// Suppression threshold and rounding.
    pub policy: DisclosurePolicy,
    /// Months or quarters.
    pub granularity: Granularity,
    /// Where the programme to date starts, if the site publishes it.
    pub programme_start: Option<Date>,
    /// Days after a period closes before it is first published.
    pub embargo_days: u32,
    /// Figures known to be 0 by the site's declared service.
    pub zero: [bool; METRIC_COUNT],
}

impl Site {
    /// The settings in `options`.
    pub fn of(options: &crate::AgentOptions) -> Site {
        Site {
            code: options.site_code.clone(),
            policy: options.policy,
            granularity: options.granularity,
            programme_start: options.programme_start,
            embargo_days: options.embargo_days,
            zero: options.never_served.zero_cells(),
        }
    }
}

/// What happens to a period's newly computed release, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sent to the hub now.
    Publish,
    /// The same published cells as the last release: nothing to send.
    Unchanged,
    /// The period has not closed, or closed less than the embargo ago.
    Embargoed {
        /// The first day it may be published.
        until: Date,
    },
    /// Some figures would change by a few people only: held until the
    /// changes since the last release are large enough.
    Held {
        /// Figures whose true change is from 1 to the threshold.
        small_changes: usize,
    },
}

impl Decision {
    /// A short name for the wire and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Publish => "publish",
            Decision::Unchanged => "unchanged",
            Decision::Embargoed { .. } => "embargoed",
            Decision::Held { .. } => "held",
        }
    }

    /// The reason, in words a council's data protection officer reads.
    pub fn explain(&self, policy: &DisclosurePolicy) -> String {
        match self {
            Decision::Publish => {
                "published now: the period has closed, its embargo has passed, and the changes since the last release are those of more people than the suppression threshold".to_owned()
            }
            Decision::Unchanged => {
                "nothing to send: the published figures are the same as the last release's".to_owned()
            }
            Decision::Embargoed { until } => format!(
                "not yet: a period is published only after it closes and its embargo passes, on or after {until}"
            ),
            Decision::Held { small_changes } => format!(
                "held: {small_changes} figure(s) would change, none by more than {} people, since the last release, which could single out the people who changed; the changes wait until at least {} people's records have changed",
                policy.threshold,
                u64::from(policy.threshold) + 1
            ),
        }
    }
}

/// One period's outcome in a round.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The period.
    pub period: Period,
    /// The dirty mark to clear; `None` for a span, which has none.
    pub generation: Option<u64>,
    /// Its true counts (empty when the embargo decided it before counting).
    pub truth: Vec<u64>,
    /// The protected release and its digest; `None` when decided before
    /// protecting (see [`decide_early`]).
    pub published: Option<(Published, String)>,
    /// What happens to it.
    pub decision: Decision,
}

/// The first day `period` may be published: the day after it closes and
/// its embargo passes.
pub fn embargo_ends(period: Period, embargo_days: u32) -> Date {
    Date::from_days_since_epoch(period.end().days_since_epoch() + i64::from(embargo_days) + 1)
}

/// What can be decided before a release is protected, from the dates and
/// the true counts alone: the embargo, and the release gate (no more than
/// the threshold's worth of people changed since the last release).
/// Protecting costs integer programs once releases are linked, so nothing
/// that would not be published is protected.
pub fn decide_early(
    period: Period,
    today: Date,
    embargo_days: u32,
    policy: &DisclosurePolicy,
    truth: &[u64],
    last_truth: Option<&[u64]>,
) -> Option<Decision> {
    let until = embargo_ends(period, embargo_days);
    if today < until {
        return Some(Decision::Embargoed { until });
    }
    let last = last_truth.filter(|l| l.len() == truth.len())?;
    let changes = || {
        truth
            .iter()
            .zip(last)
            .map(|(now, before)| now.abs_diff(*before))
    };
    // Fewer than threshold + 1 people changed: no figure moved by more
    // than the threshold. (One person moves each figure by at most one.)
    match changes().max().unwrap_or(0) {
        0 => Some(Decision::Unchanged),
        most if most <= u64::from(policy.threshold) => Some(Decision::Held {
            small_changes: changes().filter(|d| *d > 0).count(),
        }),
        _ => None,
    }
}

/// Whether a newly computed release is published, given what
/// [`decide_early`] said and the digests: it is unless it is the same as the
/// last release.
pub fn decide(early: Option<Decision>, digest: &str, last_digest: Option<&str>) -> Decision {
    match early {
        Some(early) => early,
        None if last_digest == Some(digest) => Decision::Unchanged,
        None => Decision::Publish,
    }
}

/// The spans whose figures depend on the dirty months or quarters `dirty`:
/// the financial years holding them, and (with a programme start) every
/// programme to date from the month of the earliest dirty day to today's
/// month (each holds everything before its end) that ends at a financial
/// year's end. Programmes to date a month or a quarter apart would give the
/// months away by differencing; a year apart, they differ by a financial
/// year, which is published anyway. Spans that cannot be represented
/// (before 2000) are left out.
pub fn spans_of(dirty: &[Period], programme_start: Option<Date>, today: Date) -> BTreeSet<Period> {
    let mut spans = BTreeSet::new();
    let mut earliest: Option<Date> = None;
    for p in dirty.iter().filter(|p| !p.is_span()) {
        for day in [p.start(), p.end()] {
            let fy = Period::containing(Granularity::FinancialYear, day);
            if fy.contains(day) && fy.start() <= today {
                spans.insert(fy);
            }
        }
        earliest = Some(earliest.map_or(p.start(), |e| e.min(p.start())));
    }
    if let (Some(start), Some(earliest)) = (programme_start, earliest) {
        let first = Period::containing(Granularity::ProgrammeToDate, earliest.max(start));
        let last = Period::containing(Granularity::ProgrammeToDate, today);
        spans.extend(
            Period::range(first, last)
                .into_iter()
                .filter(|p| publishes_programme_to_date(*p)),
        );
    }
    spans
}

/// Every release a round over the dirty periods `dirty` (with their dirty
/// generations) decides, in publication order: the dirty periods and the
/// spans over them.
pub fn plan(
    snapshot: &dyn Snapshot,
    site: &Site,
    dirty: &[(Period, u64)],
    today: Date,
) -> Result<Vec<Planned>, AgentError> {
    let generations = round_periods(site, dirty, today);
    let mut periods: Vec<Period> = generations.keys().copied().collect();
    linked::publication_order(&mut periods);
    // The embargo first, from the dates alone: a period still under embargo
    // (the current one, on every scheduled round) costs no scan, so a
    // restart over unchanged data is cheap.
    let (waiting, due): (Vec<Period>, Vec<Period>) = periods
        .into_iter()
        .partition(|p| embargo_ends(*p, site.embargo_days) > today);
    let generation = |p: &Period| generations.get(p).copied().flatten();
    let mut out: Vec<Planned> = waiting
        .into_iter()
        .map(|period| Planned {
            period,
            generation: generation(&period),
            truth: Vec::new(),
            published: None,
            decision: Decision::Embargoed {
                until: embargo_ends(period, site.embargo_days),
            },
        })
        .collect();
    let (own, mut early) = gate(snapshot, site, &due, today)?;
    let protect: Vec<Period> = due.iter().copied().filter(|p| early[p].is_none()).collect();
    let (mut view, truth) = released(snapshot, site, &protect, own)?;
    for period in due {
        let truth = truth.get(&period).cloned().unwrap_or_default();
        let (decision, published) = match early.remove(&period).flatten() {
            Some(decision) => (decision, None),
            // Only a release the embargo and the gate let through is
            // protected; what is left to decide is whether it differs.
            None => {
                let (published, digest, decision) =
                    protect_one(snapshot, site, &view, period, &truth)?;
                if decision == Decision::Publish {
                    view.publish(period, &published);
                }
                (decision, Some((published, digest)))
            }
        };
        out.push(Planned {
            period,
            generation: generation(&period),
            truth,
            published,
            decision,
        });
    }
    Ok(out)
}

/// The periods a round decides, with the dirty generation to clear: the
/// dirty ones, and the spans that ride along with the months or quarters
/// they depend on (`None`: a span has no mark of its own).
fn round_periods(
    site: &Site,
    dirty: &[(Period, u64)],
    today: Date,
) -> HashMap<Period, Option<u64>> {
    let mut generations: HashMap<Period, Option<u64>> =
        dirty.iter().map(|(p, g)| (*p, Some(*g))).collect();
    let bases: Vec<Period> = dirty.iter().map(|(p, _)| *p).collect();
    for span in spans_of(&bases, site.programme_start, today) {
        generations.entry(span).or_insert(None);
    }
    generations
}

/// The gate, from each period's own counts: returns those counts and, per
/// period, the decision the gate already makes (`None`: protect it).
type Gated = (HashMap<Period, Vec<u64>>, HashMap<Period, Option<Decision>>);

fn gate(
    snapshot: &dyn Snapshot,
    site: &Site,
    due: &[Period],
    today: Date,
) -> Result<Gated, AgentError> {
    let own: HashMap<Period, Vec<u64>> = due.iter().copied().zip(snapshot.counts(due)?).collect();
    let mut early = HashMap::with_capacity(due.len());
    for period in due {
        let last_truth = snapshot.published_truth(*period)?;
        let decision = decide_early(
            *period,
            today,
            site.embargo_days,
            &site.policy,
            &own[period],
            last_truth.as_deref(),
        );
        early.insert(*period, decision);
    }
    Ok((own, early))
}

/// Protects `period`'s true counts among the site's releases and says
/// whether the result differs from its last release.
fn protect_one(
    snapshot: &dyn Snapshot,
    site: &Site,
    view: &Released<'_>,
    period: Period,
    truth: &[u64],
) -> Result<(Published, String, Decision), AgentError> {
    let started = std::time::Instant::now();
    let published = view.protect(period, truth)?;
    tracing::debug!(%period, ms = started.elapsed().as_millis() as u64, "protected jointly with its linked releases");
    let digest = submission::digest(&site.code, period, &site.policy, &published);
    let last = snapshot.last_release(period)?;
    let decision = decide(None, &digest, last.as_ref().map(|l| l.digest.as_str()));
    Ok((published, digest, decision))
}

/// The true counts of `periods` and of every release they are protected
/// against, adding to those already `known`; and a view of the site's
/// releases over them.
pub fn released<'a>(
    snapshot: &'a dyn Snapshot,
    site: &Site,
    periods: &[Period],
    mut known: HashMap<Period, Vec<u64>>,
) -> Result<(Released<'a>, HashMap<Period, Vec<u64>>), AgentError> {
    let mut all: BTreeSet<Period> = periods.iter().copied().collect();
    all.extend(linked::neighbours(
        snapshot,
        periods,
        site.granularity,
        site.programme_start,
    )?);
    let missing: Vec<Period> = all.into_iter().filter(|p| !known.contains_key(p)).collect();
    let counts = snapshot.counts(&missing)?;
    known.extend(missing.into_iter().zip(counts));
    let view = Released::new(
        snapshot,
        site.policy,
        site.granularity,
        site.programme_start,
        known.clone(),
        site.zero,
    );
    Ok((view, known))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A site held in memory: true counts per period, and releases enqueued.
    #[derive(Default)]
    struct Memory {
        counts: HashMap<Period, Vec<u64>>,
        released: HashMap<Period, (Vec<u64>, LastRelease)>,
        asked: RefCell<Vec<Period>>,
    }

    impl Snapshot for Memory {
        fn counts(&self, periods: &[Period]) -> Result<Vec<Vec<u64>>, AgentError> {
            self.asked.borrow_mut().extend_from_slice(periods);
            Ok(periods
                .iter()
                .map(|p| self.counts.get(p).cloned().unwrap_or(vec![0; METRIC_COUNT]))
                .collect())
        }
        fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
            Ok(self.released.get(&period).map(|(t, _)| t.clone()))
        }
        fn last_release(&self, period: Period) -> Result<Option<LastRelease>, AgentError> {
            Ok(self.released.get(&period).map(|(_, r)| r.clone()))
        }
    }

    fn site() -> Site {
        Site {
            code: "TST".into(),
            policy: DisclosurePolicy::default(),
            granularity: Granularity::Quarter,
            programme_start: None,
            embargo_days: 14,
            zero: [false; METRIC_COUNT],
        }
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn busy() -> Vec<u64> {
        (0..METRIC_COUNT as u64).map(|i| 40 + i).collect()
    }

    #[test]
    fn a_dirty_quarter_brings_its_financial_year_and_every_later_programme_to_date() {
        let p = |s: &str| Period::parse(s).unwrap();
        let d = |s: &str| Date::parse(s).unwrap();
        let today = d("2025-02-10");
        let texts = |v: BTreeSet<Period>| v.into_iter().map(|p| p.to_string()).collect::<Vec<_>>();
        // 2024-Q4 is in FY2024; with no programme start, no programme to date.
        assert_eq!(texts(spans_of(&[p("2024-Q4")], None, today)), ["FY2024"]);
        // 2024-Q1 is in FY2023; the programme to date from December 2023 on,
        // at financial-year ends only, for monthly and quarterly sites alike.
        let dirty = [p("2024-Q1"), p("2025-Q1")];
        let start = Some(d("2023-12-01"));
        let spans = texts(spans_of(&dirty, start, today));
        assert_eq!(spans, ["FY2023", "FY2024", "PTD2024-03"]);
        let spans = texts(spans_of(&dirty, start, d("2025-03-10")));
        assert_eq!(spans, ["FY2023", "FY2024", "PTD2024-03", "PTD2025-03"]);
        // January to March 2000 would be FY1999, which no period can name.
        let spans = texts(spans_of(&[p("2000-Q1")], None, today));
        assert!(spans.is_empty(), "{spans:?}");
        // Spans themselves bring nothing more.
        assert!(spans_of(&[p("FY2024")], Some(d("2024-01-01")), today).is_empty());
    }

    #[test]
    fn an_embargoed_round_counts_nothing_and_publishes_nothing() {
        let memory = Memory::default();
        let today = Date::parse("2025-04-10").unwrap();
        let out = plan(&memory, &site(), &[(p("2025-Q1"), 7)], today).unwrap();
        // The quarter and its financial year, both still under embargo.
        assert_eq!(out.len(), 2, "{out:?}");
        for planned in &out {
            assert!(
                matches!(planned.decision, Decision::Embargoed { .. }),
                "{planned:?}"
            );
            assert!(planned.published.is_none());
        }
        assert_eq!(out[0].generation, Some(7));
        assert!(
            memory.asked.borrow().is_empty(),
            "counted {:?}",
            memory.asked.borrow()
        );
    }

    #[test]
    fn a_closed_period_is_published_then_held_then_unchanged() {
        let q = p("2024-Q3");
        let today = Date::parse("2025-06-01").unwrap();
        let mut memory = Memory::default();
        memory.counts.insert(q, busy());
        let out = plan(&memory, &site(), &[(q, 1)], today).unwrap();
        let first = out.iter().find(|x| x.period == q).unwrap();
        assert_eq!(first.decision, Decision::Publish);
        let (published, digest) = first.published.clone().unwrap();
        assert_eq!(first.truth, busy());

        // Enqueued; then one person changes: the gate holds it.
        memory.released.insert(
            q,
            (
                busy(),
                LastRelease {
                    counts: published.counts.to_vec(),
                    digest: digest.clone(),
                },
            ),
        );
        let mut moved = busy();
        moved[0] += 1;
        memory.counts.insert(q, moved);
        let out = plan(&memory, &site(), &[(q, 2)], today).unwrap();
        let held = out.iter().find(|x| x.period == q).unwrap();
        assert!(
            matches!(held.decision, Decision::Held { small_changes: 1 }),
            "{held:?}"
        );
        assert!(held.published.is_none(), "a held release is not protected");

        // Back to what was released: unchanged, and the same inputs give the same plan.
        memory.counts.insert(q, busy());
        let a = plan(&memory, &site(), &[(q, 3)], today).unwrap();
        let b = plan(&memory, &site(), &[(q, 3)], today).unwrap();
        let unchanged = a.iter().find(|x| x.period == q).unwrap();
        assert_eq!(unchanged.decision, Decision::Unchanged);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
