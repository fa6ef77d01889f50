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

use std::collections::HashMap;

use lacnet_core::aggregate::{CountingRules, PeriodAggregator};
use lacnet_core::disclosure::{Count, Published};
use lacnet_core::metrics::Aggregates;
use lacnet_core::metrics::{METRIC_COUNT, catalogue};
use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::{Date, Granularity, Period, submission};
use lacnet_proto::common::v1 as pb;
use lacnet_store::Durability;
use tokio_util::sync::CancellationToken;

pub use crate::plan::{Decision, decide, decide_early, embargo_ends, spans_of};
use crate::plan::{LastRelease, Planned, Site, Snapshot, plan, released};
use crate::store::{Store, Writer};
use crate::{Agent, AgentError};
use lacnet_core::linked::publishes_programme_to_date;
use lacnet_proto::convert::{cells, count_from_proto, period_to_proto, policy_to_proto};

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

/// The store as a publishing round reads it ([`Snapshot`]): counts by
/// scanning every record within the memory budget, releases from the outbox
/// bookkeeping.
pub struct StoreSnapshot<'a> {
    store: &'a Store,
    rules: CountingRules,
}

impl<'a> StoreSnapshot<'a> {
    /// `store` counted under `rules`.
    pub fn new(store: &'a Store, rules: CountingRules) -> Self {
        StoreSnapshot { store, rules }
    }
}

impl Snapshot for StoreSnapshot<'_> {
    fn counts(&self, periods: &[Period]) -> Result<Vec<Vec<u64>>, AgentError> {
        Ok(aggregate_periods(self.store, periods, self.rules)?
            .into_iter()
            .map(|a| a.counts.to_vec())
            .collect())
    }

    fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
        self.store.published_truth(period)
    }

    fn last_release(&self, period: Period) -> Result<Option<LastRelease>, AgentError> {
        Ok(self.store.last_submission(period)?.map(|sub| LastRelease {
            counts: counts_of(&sub),
            digest: sub.digest,
        }))
    }
}

/// A submission's cells by catalogue index; a metric it lacks is unknown.
fn counts_of(sub: &pb::Submission) -> Vec<Count> {
    let mut counts = vec![Count::Suppressed; METRIC_COUNT];
    for cell in &sub.cells {
        if let (Some(i), Ok(c)) = (
            catalogue().index_of(&cell.metric),
            count_from_proto(cell.count.as_ref(), "cell"),
        ) {
            counts[i] = c;
        }
    }
    counts
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
        packed: None,
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

/// One round: a snapshot of the dirty periods, the [`plan`] off the
/// writer thread, and one write job that enqueues what it publishes.
async fn publish_round(agent: &Agent) -> Result<usize, AgentError> {
    let store = agent.store().clone();
    let dirty = store.dirty_periods()?;
    if dirty.is_empty() {
        return Ok(0);
    }
    // Plan off the writer thread: a change meanwhile re-marks its periods
    // with a newer generation, which the clear below leaves in place.
    let a = agent.clone();
    let planned = agent
        .spawn_blocking(move || {
            let snapshot = StoreSnapshot::new(a.store(), a.options().rules());
            plan(&snapshot, &Site::of(a.options()), &dirty, a.today())
        })
        .await??;
    let a = agent.clone();
    let now_ms = agent.clock().now_ms();
    let enqueued = store
        .write("publish", Durability::Flush, move |w| {
            let mut n = 0;
            for p in planned {
                n += usize::from(apply(&a, w, p, now_ms)?);
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

/// Carries out one planned release on the writer thread: clears the dirty
/// mark of what is settled, and enqueues what is published under its next
/// revision. Returns whether it enqueued.
fn apply(agent: &Agent, w: &mut Writer, p: Planned, now_ms: u64) -> Result<bool, AgentError> {
    let period = p.period;
    let clear = |w: &mut Writer| match p.generation {
        Some(generation) => w.clear_dirty(period, generation),
        None => Ok(()),
    };
    match p.decision {
        Decision::Publish => {}
        // Stays dirty: looked at again until the embargo passes.
        Decision::Embargoed { .. } => return Ok(false),
        Decision::Unchanged => return clear(w).map(|()| false),
        Decision::Held { small_changes } => {
            tracing::info!(%period, small_changes, "held a release whose changes are too small to publish");
            return clear(w).map(|()| false);
        }
    }
    // Never older figures over newer ones: a period whose newest release
    // only the hub holds waits for the re-import.
    let digest = p.published.as_ref().map(|(_, x)| x.as_str());
    if w.held_by_loss(period, digest)? {
        return clear(w).map(|()| false);
    }
    let Some((published, digest)) = p.published else {
        return Ok(false);
    };
    let last = w.last_submission(period)?;
    let revision = next_revision(period, last.map(|l| l.revision), now_ms)?;
    let sub = build(agent, period, &published, digest, revision);
    // A span has no dirty mark: generation 0 clears nothing.
    w.enqueue(period, &sub, Some(&p.truth), p.generation.unwrap_or(0))?;
    tracing::info!(%period, revision, "enqueued a new revision");
    Ok(true)
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
            let snapshot = StoreSnapshot::new(store, a.options().rules());
            let (view, truth) =
                released(&snapshot, &Site::of(a.options()), &[period], HashMap::new())?;
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
        assert!(
            matches!(&e, AgentError::RevisionExhausted { period, last: u64::MAX } if period == "2025-Q1"),
            "{e}"
        );
    }
}
