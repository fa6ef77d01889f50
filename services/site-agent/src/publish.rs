//! Publishing: dirty periods → aggregates → disclosure control → digest →
//! a new revision in the outbox when the content changed.
//!
//! Ingest and erasure mark the periods they affect as dirty, in the same
//! transaction as their writes, so a crash cannot lose a recomputation. The
//! publisher runs after ingest has been quiet for the debounce interval, and
//! on a schedule (which also marks the current period, whose counts change as
//! time passes over open records). [`preview`] builds a submission the same
//! way, so a council sees exactly what would leave the building.

use std::time::Duration;

use lacnet_core::aggregate::PeriodAggregator;
use lacnet_core::disclosure::{self, Published};
use lacnet_core::metrics::Aggregates;
use lacnet_core::{Period, submission};
use lacnet_proto::common::v1 as pb;
use lacnet_store::Durability;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::{Agent, AgentError, now_unix};
use lacnet_proto::convert::{cells, period_to_proto, policy_to_proto};

/// True counts for each of `periods`, from one scan over every record.
pub fn aggregate_periods(store: &Store, periods: &[Period]) -> Result<Vec<Aggregates>, AgentError> {
    let mut aggs: Vec<PeriodAggregator> =
        periods.iter().map(|p| PeriodAggregator::new(*p)).collect();
    for r in store.records() {
        let r = r?;
        for a in &mut aggs {
            a.add(&r);
        }
    }
    Ok(aggs.into_iter().map(PeriodAggregator::finish).collect())
}

/// The protected table and its digest for one period's aggregates.
fn protect(agent: &Agent, period: Period, aggregates: &Aggregates) -> (Published, String) {
    let o = agent.options();
    let published = disclosure::apply(aggregates, &o.policy);
    let digest = submission::digest(&o.site_code, period, &o.policy, &published);
    (published, digest)
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
        generated_at_unix: now_unix(),
    }
}

/// Recomputes every dirty period and enqueues those whose digest changed.
/// Returns how many submissions were enqueued.
pub async fn publish_once(agent: &Agent) -> Result<usize, AgentError> {
    let store = agent.store().clone();
    let dirty = store.dirty_periods()?;
    if dirty.is_empty() {
        return Ok(0);
    }
    // Scan off the writer thread: a change meanwhile re-marks its periods
    // with a newer generation, which the clear below leaves in place.
    let a = agent.clone();
    let tables = tokio::task::spawn_blocking(move || -> Result<Vec<_>, AgentError> {
        let periods: Vec<Period> = dirty.iter().map(|(p, _)| *p).collect();
        let aggregates = aggregate_periods(a.store(), &periods)?;
        Ok(dirty
            .into_iter()
            .zip(aggregates.iter())
            .map(|((period, generation), aggs)| {
                let (published, digest) = protect(&a, period, aggs);
                (period, generation, published, digest)
            })
            .collect())
    })
    .await??;
    let a = agent.clone();
    let enqueued = store
        .write("publish", Durability::Flush, move |w| {
            let mut n = 0;
            for (period, generation, published, digest) in tables {
                let last = w.last_submission(period)?;
                if last.as_ref().is_some_and(|l| l.digest == digest) {
                    w.clear_dirty(period, generation)?;
                    continue;
                }
                let revision = next_revision(last.as_ref())?;
                let sub = build(&a, period, &published, digest, revision);
                w.enqueue(period, &sub, generation)?;
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

/// The revision after `last` (1 for a period never published).
fn next_revision(last: Option<&pb::Submission>) -> Result<u64, AgentError> {
    match last {
        None => Ok(1),
        Some(l) => l
            .revision
            .checked_add(1)
            .ok_or_else(|| AgentError::Corrupt("revision numbers exhausted".into())),
    }
}

/// Exactly what would be sent for `period`: the last enqueued revision when
/// the content is unchanged, else the next revision with the current content.
pub async fn preview(agent: &Agent, period: Period) -> Result<pb::Submission, AgentError> {
    if period.granularity() != agent.options().granularity {
        return Err(AgentError::invalid(
            "period.granularity",
            "must match the agent's reporting granularity",
        ));
    }
    if period.start() > agent.today() {
        return Err(AgentError::invalid("period", "must not be in the future"));
    }
    let a = agent.clone();
    tokio::task::spawn_blocking(move || {
        let store = &a.inner().store;
        let aggs = aggregate_periods(store, &[period])?;
        let (published, digest) = protect(&a, period, &aggs[0]);
        let last = store.last_submission(period)?;
        match last {
            Some(l) if l.digest == digest => Ok(l),
            last => {
                let revision = next_revision(last.as_ref())?;
                Ok(build(&a, period, &published, digest, revision))
            }
        }
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
