//! Publishing: dirty periods → aggregates → disclosure control → digest →
//! a release decision → a new revision in the outbox.
//!
//! A release must not let anyone who keeps every release isolate one
//! person's change by differencing two of them (see `docs/disclosure.md`),
//! so [`decide`] publishes a period:
//!
//! * only once it has closed and its embargo (`--embargo-days`) has passed,
//!   so its first release is complete rather than growing person by person;
//! * afterwards, only when the changes since the last release are those of
//!   more than threshold people: some figure must have moved by more than
//!   the suppression threshold, in true counts. One person's late record,
//!   correction or erasure (which moves each figure by at most one) never
//!   reaches the hub by itself: such changes wait, and accumulate, until
//!   they are large enough. The true counts behind each release stay at the
//!   site.
//!
//! Ingest and erasure mark the periods they affect as dirty, in the same
//! transaction as their writes, so a crash cannot lose a recomputation. The
//! publisher runs after ingest has been quiet for the debounce interval, and
//! on a schedule (which also marks the current period, whose counts change as
//! time passes over open records). [`preview`] builds a submission the same
//! way, so a council sees exactly what would leave the building.
//!
//! Spans (the financial year and the programme to date) are published too,
//! computed from the records like any period, never summed from quarters.
//! They are not marked dirty themselves: every dirty month or quarter brings
//! its financial year, and every programme to date that runs through it, into
//! the same recomputation ([`spans_of`]), and they are enqueued in the same
//! write that clears the month or quarter, so a crash cannot lose them.
//!
//! Revision numbers come from the clock ([`next_revision`]): the Unix time in
//! milliseconds, strictly above the last revision the agent knows for the
//! period. A counter from 1 would start again at 1 after the data directory
//! is lost or restored from a backup, and the hub, which keeps the highest
//! revision current, would then ignore the agent for good. A release the hub
//! outranks is re-issued above the hub's revision only once the council has
//! confirmed a re-import of its full export (see `outbox.rs` and
//! `reconcile.rs`): otherwise the agent lost state and holds the period back.
//!
//! A round costs bounded memory whatever the council's size: the embargo is
//! decided from dates before anything is counted, and the periods are counted
//! in as many scans as keep the per-person tables within a fixed budget
//! ([`aggregate_periods`]), each scan counting a disjoint share of the people.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::collections::{BTreeSet, HashMap};

use lacnet_core::aggregate::{CountingRules, PeriodAggregator};
use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::Aggregates;
use lacnet_core::metrics::catalogue;
use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::{Date, Granularity, Period, submission};
use lacnet_proto::common::v1 as pb;
use lacnet_store::Durability;
use tokio_util::sync::CancellationToken;

use crate::linked::{self, Released};
use crate::store::Store;
use crate::{Agent, AgentError};
use lacnet_core::linked::publishes_programme_to_date;
use lacnet_proto::convert::{cells, period_to_proto, policy_to_proto};

/// The revision to send for `period` after `last` (the highest revision known
/// for it, if any): `max(now_ms, last + 1)`, never wrapping. An error when
/// `last` is already `u64::MAX`.
pub fn next_revision(period: Period, last: Option<u64>, now_ms: u64) -> Result<u64, AgentError> {
    let floor = match last {
        None => 1,
        Some(last) => last
            .checked_add(1)
            .ok_or_else(|| AgentError::RevisionExhausted {
                period: period.to_string(),
                last,
            })?,
    };
    Ok(now_ms.max(floor))
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

/// What one person costs a period's aggregator: a 32-byte pseudonym, its
/// flags and outcome bits, and the hash table's slack.
const BYTES_PER_PERSON: usize = 64;

/// The most the per-person tables of one scan may hold. A monthly council of
/// a million records has some ten million (person, period) pairs over three
/// years of months, years and programmes to date: held at once, they took
/// 600 MB, above the pod's limit. Scanning in passes, each over a disjoint
/// share of the people, bounds the peak at this, for a scan per pass.
const SCAN_BUDGET_BYTES: usize = 48 << 20;

/// How many passes the scans for `periods` need to stay within the budget,
/// from an upper bound of their (person, period) pairs: a record counts in a
/// period only if its dates overlap it, which the index knows without
/// reading a record.
fn passes_for(store: &Store, periods: &[Period], rules: CountingRules) -> usize {
    let spans: Vec<(Date, Date)> = periods
        .iter()
        .map(|p| (p.start_for(rules.programme_start), p.end()))
        .collect();
    let pairs: usize = store
        .index()
        .metas()
        .map(|m| spans.iter().filter(|(s, e)| m.may_count_in(*s, *e)).count())
        .sum();
    (pairs * BYTES_PER_PERSON)
        .div_ceil(SCAN_BUDGET_BYTES)
        .max(1)
}

/// Which pass counts a person: pseudonyms are HMAC output, so their leading
/// bytes split people evenly.
fn pass_of(person: &Pseudonym, passes: usize) -> usize {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(&person.0[..8]);
    (u64::from_le_bytes(lead) % passes as u64) as usize
}

/// True counts for each of `periods` under the agent's counting rules, in as
/// few scans over every record as the memory budget allows.
pub fn aggregate_periods(
    store: &Store,
    periods: &[Period],
    rules: CountingRules,
) -> Result<Vec<Aggregates>, AgentError> {
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    let passes = passes_for(store, periods, rules);
    aggregate_periods_in(store, periods, rules, passes)
}

/// [`aggregate_periods`] in `passes` scans. Every count is a sum over people
/// (or over their records), so each pass counts a disjoint share of the
/// people in full and the passes' tables add up to the whole.
pub fn aggregate_periods_in(
    store: &Store,
    periods: &[Period],
    rules: CountingRules,
    passes: usize,
) -> Result<Vec<Aggregates>, AgentError> {
    // Nothing to count costs no scan (a round with nothing past its gate).
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    let passes = passes.max(1);
    let mut totals = vec![Aggregates::default(); periods.len()];
    for pass in 0..passes {
        let mut aggs: Vec<PeriodAggregator> = periods
            .iter()
            .map(|p| PeriodAggregator::with_rules(*p, rules, 0))
            .collect();
        for r in store.records() {
            let r = r?;
            if passes > 1 && pass_of(&r.person, passes) != pass {
                continue;
            }
            for a in &mut aggs {
                a.add(&r);
            }
        }
        for (total, a) in totals.iter_mut().zip(aggs) {
            total.add(&a.finish());
        }
    }
    if passes > 1 {
        tracing::debug!(periods = periods.len(), passes, "counted in passes");
    }
    Ok(totals)
}

/// The true counts of `periods` and of every release they are protected
/// against, adding to those already `known`; and a view of the site's
/// releases over them.
fn released<'a>(
    agent: &'a Agent,
    periods: &[Period],
    mut known: HashMap<Period, Vec<u64>>,
) -> Result<(Released<'a>, HashMap<Period, Vec<u64>>), AgentError> {
    let o = agent.options();
    let mut all: BTreeSet<Period> = periods.iter().copied().collect();
    all.extend(linked::neighbours(
        agent.store(),
        periods,
        o.granularity,
        o.programme_start,
    )?);
    let missing: Vec<Period> = all.into_iter().filter(|p| !known.contains_key(p)).collect();
    let aggregates = aggregate_periods(agent.store(), &missing, o.rules())?;
    known.extend(
        missing
            .into_iter()
            .zip(aggregates)
            .map(|(p, a)| (p, a.counts.to_vec())),
    );
    let view = Released::new(
        agent.store(),
        o.policy,
        o.granularity,
        o.programme_start,
        known.clone(),
        o.never_served.zero_cells(),
    );
    Ok((view, known))
}

/// The wire submission for a protected table.
fn build(
    agent: &Agent,
    period: Period,
    published: &Published,
    digest: String,
    revision: u64,
) -> pb::Submission {
    let o = agent.options();
    pb::Submission {
        site_code: o.site_code.clone(),
        period: Some(period_to_proto(period)),
        revision,
        digest,
        policy: Some(policy_to_proto(&o.policy)),
        cells: cells(published),
        generated_at_unix: agent.clock().now_unix(),
        structural_zeros: o
            .never_served
            .zero_cells()
            .iter()
            .enumerate()
            .filter(|(i, z)| **z && published.counts[*i] == Count::Value(0))
            .map(|(i, _)| catalogue().def(i).id.clone())
            .collect(),
    }
}

/// One release decided in a publishing round.
struct Decided {
    period: Period,
    /// The dirty mark to clear; `None` for a span, which has none.
    generation: Option<u64>,
    truth: Vec<u64>,
    /// The protected release and its digest; `None` when decided before
    /// protecting (see [`decide_early`]).
    published: Option<(Published, String)>,
    decision: Decision,
}

/// Recomputes every dirty period (and the spans over them), protects each
/// jointly with the releases linked to it, and enqueues those to publish.
/// Returns how many submissions were enqueued.
pub async fn publish_once(agent: &Agent) -> Result<usize, AgentError> {
    let _round = agent.inner().publishing.lock().await;
    let enqueued = publish_round(agent).await;
    let inner = agent.inner();
    inner.publish_rounds.fetch_add(1, Ordering::Relaxed);
    if let Ok(n) = enqueued {
        inner
            .releases_enqueued
            .fetch_add(n as u64, Ordering::Relaxed);
    }
    enqueued
}

async fn publish_round(agent: &Agent) -> Result<usize, AgentError> {
    let store = agent.store().clone();
    let dirty = store.dirty_periods()?;
    if dirty.is_empty() {
        return Ok(0);
    }
    // Scan off the writer thread: a change meanwhile re-marks its periods
    // with a newer generation, which the clear below leaves in place.
    let a = agent.clone();
    let decided = agent.spawn_blocking(move || -> Result<Vec<Decided>, AgentError> {
        let o = a.options();
        let mut generations: HashMap<Period, Option<u64>> =
            dirty.iter().map(|(p, g)| (*p, Some(*g))).collect();
        let bases: Vec<Period> = dirty.iter().map(|(p, _)| *p).collect();
        // Spans ride along with the months or quarters they depend on; they
        // carry no dirty generation of their own (None: nothing to clear).
        for span in spans_of(&bases, o.programme_start, a.today()) {
            generations.entry(span).or_insert(None);
        }
        let mut periods: Vec<Period> = generations.keys().copied().collect();
        linked::publication_order(&mut periods);
        let today = a.today();
        // The embargo first, from the dates alone: a period still under
        // embargo (the current one, on every scheduled round) costs no scan,
        // so a restart over unchanged data is cheap.
        let (waiting, due): (Vec<Period>, Vec<Period>) = periods
            .into_iter()
            .partition(|p| embargo_ends(*p, o.embargo_days) > today);
        let mut out = Vec::with_capacity(waiting.len() + due.len());
        for period in waiting {
            out.push(Decided {
                period,
                generation: generations.get(&period).copied().flatten(),
                truth: Vec::new(),
                published: None,
                decision: Decision::Embargoed {
                    until: embargo_ends(period, o.embargo_days),
                },
            });
        }
        // Then the gate, from each period's own counts; only what passes both
        // is protected, and only that needs its linked releases' counts.
        let own = aggregate_periods(a.store(), &due, o.rules())?;
        let own: HashMap<Period, Vec<u64>> = due
            .iter()
            .copied()
            .zip(own.into_iter().map(|x| x.counts.to_vec()))
            .collect();
        let mut early = HashMap::with_capacity(due.len());
        for period in &due {
            let last_truth = a.store().published_truth(*period)?;
            let decision = decide_early(
                *period,
                today,
                o.embargo_days,
                &o.policy,
                &own[period],
                last_truth.as_deref(),
            );
            early.insert(*period, decision);
        }
        let protect: Vec<Period> = due
            .iter()
            .copied()
            .filter(|p| early[p].is_none())
            .collect();
        let (mut view, truth) = released(&a, &protect, own)?;
        for period in due {
            let truth = truth.get(&period).cloned().unwrap_or_default();
            let generation = generations.get(&period).copied().flatten();
            let early = early.remove(&period).flatten();
            // Only a release the embargo and the gate let through is
            // protected; what is left to decide is whether it differs.
            let (decision, published) = match early {
                Some(decision) => (decision, None),
                None => {
                    let started = std::time::Instant::now();
                    let published = view.protect(period, &truth)?;
                    tracing::debug!(%period, ms = started.elapsed().as_millis() as u64, "protected jointly with its linked releases");
                    let digest = submission::digest(&o.site_code, period, &o.policy, &published);
                    let last = a.store().last_submission(period)?;
                    let decision = if last.is_some_and(|l| l.digest == digest) {
                        Decision::Unchanged
                    } else {
                        view.publish(period, &published);
                        Decision::Publish
                    };
                    (decision, Some((published, digest)))
                }
            };
            out.push(Decided {
                period,
                generation,
                truth,
                published,
                decision,
            });
        }
        Ok(out)
    })
    .await??;
    let a = agent.clone();
    let now_ms = agent.clock().now_ms();
    let enqueued = store
        .write("publish", Durability::Flush, move |w| {
            let mut n = 0;
            for d in decided {
                let period = d.period;
                match d.decision {
                    Decision::Publish => {}
                    // Stays dirty: looked at again until the embargo passes.
                    Decision::Embargoed { .. } => continue,
                    Decision::Unchanged | Decision::Held { .. } => {
                        if let Decision::Held { small_changes } = d.decision {
                            tracing::info!(%period, small_changes, "held a release whose changes are too small to publish");
                        }
                        if let Some(generation) = d.generation {
                            w.clear_dirty(period, generation)?;
                        }
                        continue;
                    }
                }
                // Never older figures over newer ones: a period whose newest
                // release only the hub holds waits for the re-import.
                let digest = d.published.as_ref().map(|(_, x)| x.as_str());
                if w.held_by_loss(period, digest)? {
                    if let Some(generation) = d.generation {
                        w.clear_dirty(period, generation)?;
                    }
                    continue;
                }
                let last = w.last_submission(period)?;
                let revision = next_revision(period, last.map(|l| l.revision), now_ms)?;
                let Some((published, digest)) = d.published else {
                    continue;
                };
                let sub = build(&a, period, &published, digest, revision);
                // A span has no dirty mark: generation 0 clears nothing.
                w.enqueue(period, &sub, Some(&d.truth), d.generation.unwrap_or(0))?;
                tracing::info!(%period, revision, "enqueued a new revision");
                n += 1;
            }
            Ok(n)
        })
        .await?;
    let inner = agent.inner();
    inner
        .metrics
        .outbox_depth
        .set(inner.store.outbox_len() as i64);
    if enqueued > 0 {
        inner.enqueued.notify_one();
    }
    Ok(enqueued)
}

/// A preview: the submission the current data gives, and what happens to it.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The submission: the last enqueued one when the content is unchanged,
    /// else the next revision with the current content.
    pub submission: pb::Submission,
    /// Whether and when it is published.
    pub decision: Decision,
}

/// Exactly what would be sent for `period`, and whether and when it would be.
pub async fn preview(agent: &Agent, period: Period) -> Result<Preview, AgentError> {
    let o = agent.options();
    if period.granularity() != o.granularity && !period.is_span() {
        return Err(AgentError::invalid(
            "period.granularity",
            "must match the agent's reporting granularity, or be a financial year or the programme to date",
        ));
    }
    if period.granularity() == Granularity::ProgrammeToDate {
        if o.programme_start.is_none() {
            return Err(AgentError::invalid(
                "period",
                "the programme to date needs the agent's --programme-start",
            ));
        }
        if !publishes_programme_to_date(period) {
            return Err(AgentError::invalid(
                "period",
                format!(
                    "{period}: the programme to date is published at financial-year ends (31 March) only"
                ),
            ));
        }
    }
    if period.start() > agent.today() {
        return Err(AgentError::invalid("period", "must not be in the future"));
    }
    let a = agent.clone();
    agent
        .spawn_blocking(move || {
            let store = &a.inner().store;
            let (view, truth) = released(&a, &[period], HashMap::new())?;
            let counts = truth.get(&period).cloned().unwrap_or_default();
            let o = a.options();
            let last_truth = store.published_truth(period)?;
            let early = decide_early(
                period,
                a.today(),
                o.embargo_days,
                &o.policy,
                &counts,
                last_truth.as_deref(),
            );
            let last = store.last_submission(period)?;
            // What the hub holds stays when the gate holds the period: the
            // agent would send nothing, so the preview shows the release as
            // it is, not one protected afresh among today's linked releases.
            if let (Some(decision @ (Decision::Unchanged | Decision::Held { .. })), Some(last)) =
                (&early, &last)
            {
                return Ok(Preview {
                    submission: last.clone(),
                    decision: decision.clone(),
                });
            }
            let published = view.protect(period, &counts)?;
            let digest = submission::digest(&o.site_code, period, &o.policy, &published);
            let decision = decide(early, &digest, last.as_ref().map(|l| l.digest.as_str()));
            let submission = match last {
                Some(l) if l.digest == digest => l,
                last => {
                    let revision =
                        next_revision(period, last.map(|l| l.revision), a.clock().now_ms())?;
                    build(&a, period, &published, digest, revision)
                }
            };
            Ok(Preview {
                submission,
                decision,
            })
        })
        .await?
}

/// The publisher task: debounced after changes, and on a schedule.
pub async fn run(agent: Agent, stop: CancellationToken) {
    let o = agent.options().clone();
    // Catch up on periods left dirty by a previous run (e.g. after a crash).
    publish_logged(&agent).await;
    let mut schedule = tokio::time::interval(o.publish_interval);
    schedule.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = agent.inner().changed.notified() => {
                // Wait for quiet, but not forever under continuous ingest.
                let deadline = tokio::time::Instant::now() + o.publish_debounce.max(Duration::from_millis(1)) * 10;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(o.publish_debounce) => break,
                        () = tokio::time::sleep_until(deadline) => break,
                        () = agent.inner().changed.notified() => continue,
                    }
                }
            }
            _ = schedule.tick() => {
                let store = &agent.inner().store;
                if store.record_count().unwrap_or(0) > 0 {
                    let current = Period::containing(o.granularity, agent.today());
                    if let Err(e) = store.mark_dirty(current, agent.inner().next_generation()).await {
                        tracing::error!(error = %e, "cannot schedule the current period");
                    }
                }
            }
        }
        publish_logged(&agent).await;
    }
}

async fn publish_logged(agent: &Agent) {
    match publish_once(agent).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(enqueued = n, "published"),
        Err(e) => tracing::error!(error = %e, "recomputing aggregates failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn revisions_follow_the_clock_and_never_go_back_or_wrap() {
        let q = Period::parse("2025-Q1").unwrap();
        let now = 1_750_000_000_000;
        // A fresh (or wiped) agent starts at the clock, far above any counter.
        assert_eq!(next_revision(q, None, now).unwrap(), now);
        assert_eq!(next_revision(q, Some(3), now).unwrap(), now);
        // Two revisions in one millisecond, or a clock that went back: still above.
        assert_eq!(next_revision(q, Some(now), now).unwrap(), now + 1);
        assert_eq!(next_revision(q, Some(now + 50), now).unwrap(), now + 51);
        // A clock before 1970 still gives a valid (non-zero) first revision.
        assert_eq!(next_revision(q, None, 0).unwrap(), 1);
        let e = next_revision(q, Some(u64::MAX), now).unwrap_err();
        assert!(matches!(e, AgentError::RevisionExhausted { .. }), "{e}");
        assert!(e.to_string().contains("2025-Q1"), "{e}");
    }
}
