//! The pusher: sends the outbox, oldest first, to the hub over mTLS.
//!
//! An entry leaves the outbox only after the hub's receipt (NEW or
//! DUPLICATE), so a lost reply just means the same revision is sent again and
//! the hub answers DUPLICATE: nothing is counted twice.
//!
//! SUPERSEDED, or ALREADY_EXISTS (this revision number holds other content),
//! means the hub reports a release this agent does not hold: one from before
//! it lost or restored its data directory. Its records may then be missing
//! what that release counted, so it must not publish over it: the period is
//! marked lost and held back (see `reconcile.rs`), the entry leaves the
//! outbox, and `GetStatus` says what to do. Once the council confirms a
//! re-import of its latest full export, the hub's release is overruled: the
//! same content is then re-issued above the hub's revision (`current_revision`
//! in the receipt), so the outbox never wedges on a number it cannot use.
//!
//! Before anything is sent, and then every reconcile interval, the pusher
//! compares the agent's releases with the hub's (`reconcile.rs`).
//!
//! Transient failures (the hub down, a timeout) retry with exponential
//! backoff and full jitter; refusals that will never succeed
//! (INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED) go to the
//! dead-letter tree instead of spinning, and show in `GetStatus`, the
//! `lacnet_agent_outbox_dead_letters` gauge and an error log line.

use std::time::Duration;

use lacnet_core::Period;
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_proto::hub::v1::{ReceiptStatus, SubmitRequest};
use lacnet_store::Durability;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use crate::metrics::ReconcileOutcome;
use crate::publish::next_revision;
use crate::reconcile;
use crate::store::HubRelease;
use crate::{Agent, AgentError};
use lacnet_proto::convert::period_from_proto;
use tokio::time::Instant;

/// Longest wait for one Submit call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Re-issues in a row, with no acknowledgement between them, after which the
/// entry is dead-lettered: each re-issue goes above the hub's current
/// revision, so an honest hub acknowledges the first, and a hub that never
/// does must not make the pusher spin.
const MAX_REISSUES: u32 = 5;

/// What an operator should do about a dead letter, for the log line.
const DEAD_LETTER_ADVICE: &str = "fix the cause named in the reason (the hub's site registry \
     or network policy, or this agent's policy, site code or certificate); the entry stays in the \
     dead-letter tree (GetStatus shows the count and the latest reason), and the period is sent \
     again as a new revision when its records next change";

/// The delay before retry number `failures` (1-based): uniform in
/// `[0, min(cap, base * 2^(failures-1))]` ("full jitter").
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(
        1u32.checked_shl(failures.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(cap);
    let ms = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// How one Submit call ended.
enum Attempt {
    /// NEW or DUPLICATE: the hub reports this content; the entry is done.
    /// With the hub's store id.
    Acknowledged(ReceiptStatus, String),
    /// The hub keeps another release current (`hub`, as far as the answer
    /// said): either one this agent's re-imported records overrule, or one
    /// it never had (it lost state).
    Outranked { hub: HubRelease, reason: String },
    /// Refused for good: dead-letter it.
    Permanent(String),
    /// Worth retrying after a backoff.
    Transient(String),
}

/// `sub` as it goes on the wire: its cells packed for a hub that reads
/// them, named for an older hub (which would see no cells in a packed one).
fn on_the_wire(sub: pb::Submission, hub_reads_packed: bool) -> pb::Submission {
    if hub_reads_packed {
        lacnet_proto::convert::with_packed_cells(sub)
    } else {
        sub
    }
}

async fn send(
    client: &mut SubmissionsClient<Channel>,
    sub: pb::Submission,
    hub_reads_packed: bool,
) -> Attempt {
    let revision = sub.revision;
    let call = client.submit(SubmitRequest {
        submission: Some(on_the_wire(sub, hub_reads_packed)),
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Attempt::Transient("the hub did not answer in time".into()),
        Ok(Ok(reply)) => {
            let receipt = reply.into_inner();
            match receipt.status() {
                s @ (ReceiptStatus::New | ReceiptStatus::Duplicate) => {
                    Attempt::Acknowledged(s, receipt.store_id)
                }
                ReceiptStatus::Superseded => Attempt::Outranked {
                    reason: format!(
                        "the hub reports revision {} for this period, not {revision}",
                        receipt.current_revision
                    ),
                    hub: HubRelease {
                        revision: receipt.current_revision,
                        digest: receipt.current_digest,
                    },
                },
                ReceiptStatus::Unspecified => {
                    Attempt::Transient("the hub's receipt has no status".into())
                }
            }
        }
        // The hub holds this revision number with other content; it does
        // not say which (the next comparison learns it).
        Ok(Err(status)) if status.code() == Code::AlreadyExists => Attempt::Outranked {
            hub: HubRelease {
                revision,
                digest: String::new(),
            },
            reason: format!("AlreadyExists: {}", status.message()),
        },
        Ok(Err(status)) => {
            let msg = format!("{:?}: {}", status.code(), status.message());
            match status.code() {
                Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied => {
                    Attempt::Permanent(msg)
                }
                _ => Attempt::Transient(msg),
            }
        }
    }
}

/// Replaces outbox entry `seq` (holding `sub`) with the same content under a
/// revision above both `sub.revision` and `hub_current`, unless newer content
/// for the period was enqueued meanwhile: then the entry is simply dropped,
/// and the newer one (already behind it in the outbox) goes instead.
/// Returns the new revision, if one was issued.
async fn reissue(
    agent: &Agent,
    seq: u64,
    period: Period,
    sub: &pb::Submission,
    hub_current: u64,
) -> Result<Option<u64>, AgentError> {
    let generation = agent.inner().next_generation();
    let sub = sub.clone();
    let (now_ms, now_unix) = (agent.clock().now_ms(), agent.clock().now_unix());
    // On the writer thread, where the publisher decides too, so "is this
    // still our last submission?" cannot change between the check and the enqueue.
    agent
        .store()
        .write("publish", Durability::Flush, move |w| {
            let last = w.last_submission(period)?;
            let still_latest = last
                .as_ref()
                .is_some_and(|l| l.revision == sub.revision && l.digest == sub.digest);
            if !still_latest {
                w.remove_from_outbox(seq, Some(period), None)?;
                return Ok(None);
            }
            let revision = next_revision(period, Some(sub.revision.max(hub_current)), now_ms)?;
            let again = pb::Submission {
                revision,
                generated_at_unix: now_unix,
                ..sub
            };
            // `enqueue` replaces the period's queued entry (this one) and records
            // the new revision as the last. A fresh generation never matches a
            // dirty mark, so a recomputation that is pending stays pending.
            w.enqueue(period, &again, None, generation)?;
            // Normally a no-op (enqueue dropped it already); kept so that this
            // entry can never be sent again with its old number.
            w.remove_from_outbox(seq, Some(period), None)?;
            Ok(Some(revision))
        })
        .await
}

/// The pusher task: compares with the hub (start-up, every reconcile
/// interval, and at once when a receipt names another hub store), then
/// sends the outbox. Nothing is sent before the first comparison, so an
/// agent that lost state learns which periods the hub holds newer releases
/// of before it could publish over them. Without a hub it does nothing:
/// submissions wait in the outbox.
pub async fn run(agent: Agent, stop: CancellationToken) {
    let Some(hub) = agent.options().hub.clone() else {
        tracing::info!("no hub configured: submissions stay in the outbox");
        return;
    };
    let channel = match lacnet_tls::lazy_channel(&hub.url, &hub.tls, &hub.server_name) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the hub channel; pushing is off");
            return;
        }
    };
    warn_about_dead_letters(&agent);
    let mut pusher = Pusher {
        agent,
        client: SubmissionsClient::new(channel),
        stop,
        failures: 0,
        reissues: 0,
        next_reconcile: Instant::now(),
        hub_store: None,
        hub_reads_packed: false,
    };
    while pusher.step().await == Flow::Go {}
}

/// Whether the pusher goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// The pusher's state between steps.
struct Pusher {
    agent: Agent,
    client: SubmissionsClient<Channel>,
    stop: CancellationToken,
    /// Failed calls in a row, for the backoff.
    failures: u32,
    /// Re-issues in a row with no acknowledgement ([`MAX_REISSUES`]).
    reissues: u32,
    next_reconcile: Instant,
    /// The hub store last seen, to notice a new or restored hub.
    hub_store: Option<String>,
    /// Whether the hub said, at the last comparison, that it reads packed
    /// cells. Every push follows a comparison, so this is never a guess.
    hub_reads_packed: bool,
}

impl Pusher {
    /// One turn: compare with the hub if due, then send the oldest entry
    /// (or wait for one).
    async fn step(&mut self) -> Flow {
        if self.stop.is_cancelled() {
            return Flow::Stop;
        }
        if Instant::now() >= self.next_reconcile && !self.reconcile().await {
            return self.wait(self.next_reconcile).await;
        }
        let entry = match self.agent.store().outbox_first() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                None
            }
        };
        let Some((seq, sub)) = entry else {
            let enqueued = self.agent.inner().enqueued.notified();
            return tokio::select! {
                () = self.stop.cancelled() => Flow::Stop,
                () = enqueued => Flow::Go,
                () = tokio::time::sleep_until(self.next_reconcile) => Flow::Go,
            };
        };
        self.push(seq, sub).await
    }

    /// Sleeps until `until` unless stopped first.
    async fn wait(&self, until: Instant) -> Flow {
        tokio::select! {
            () = self.stop.cancelled() => Flow::Stop,
            () = tokio::time::sleep_until(until) => Flow::Go,
        }
    }

    /// Compares with the hub; false (with the retry scheduled) when the
    /// comparison failed.
    async fn reconcile(&mut self) -> bool {
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            () = self.stop.cancelled() => return false,
            o = reconcile::reconcile_once(&self.agent, &mut self.client) => o,
        };
        let o = self.agent.options();
        match outcome {
            Ok(outcome) => {
                self.failures = 0;
                self.next_reconcile = Instant::now() + o.reconcile_interval;
                note_reconciled(
                    &self.agent,
                    &outcome,
                    self.hub_store.as_deref(),
                    started.elapsed(),
                );
                self.hub_store = Some(outcome.store_id);
                self.hub_reads_packed = outcome.accepts_packed;
                true
            }
            Err(reason) => {
                self.agent
                    .inner()
                    .metrics
                    .reconciles
                    .inc(ReconcileOutcome::Failed);
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(o.push_backoff_base, o.push_backoff_cap, self.failures);
                self.next_reconcile = Instant::now() + delay;
                tracing::warn!(%reason, failures = self.failures, retry_in_ms = delay.as_millis() as u64, "comparing with the hub failed; will retry");
                if let Err(e) = self.agent.store().set_push_error(&reason).await {
                    tracing::error!(error = %e, "cannot record the failure");
                }
                false
            }
        }
    }

    /// Sends one outbox entry and settles it by the hub's answer.
    async fn push(&mut self, seq: u64, sub: pb::Submission) -> Flow {
        let store = self.agent.store().clone();
        let period: Option<Period> = period_from_proto(sub.period.as_ref(), "period").ok();
        // Queued before the loss was found: the hub's newer release stays.
        if let Some(p) = period
            && store.lost(p).is_ok_and(|l| l.is_some())
        {
            tracing::warn!(period = %p, revision = sub.revision, "not sent: the hub holds a newer release of this period than this agent");
            if let Err(e) = store.outbox_drop(seq, p).await {
                tracing::error!(error = %e, "cannot update the outbox");
            }
            return Flow::Go;
        }
        self.agent.inner().metrics.push_attempts.inc();
        let attempt = tokio::select! {
            () = self.stop.cancelled() => return Flow::Stop,
            a = send(&mut self.client, sub.clone(), self.hub_reads_packed) => a,
        };
        let (attempt, overruled) = self.judge(attempt, period);
        let result = match attempt {
            Attempt::Acknowledged(status, store_id) => {
                self.acknowledged(seq, period, &sub, status, store_id).await
            }
            Attempt::Outranked { hub, reason } if !overruled => {
                self.failures = 0;
                let Some(p) = period else {
                    return Flow::Go;
                };
                self.lost(seq, p, &sub, hub, &reason).await
            }
            Attempt::Outranked { hub, reason } => {
                self.reissue(seq, period, &sub, hub.revision, &reason).await
            }
            Attempt::Permanent(reason) => {
                self.agent.inner().metrics.push_failures.inc();
                tracing::error!(period = %display_period(period), revision = sub.revision, %reason, advice = DEAD_LETTER_ADVICE, "hub refused a submission for good; dead-lettered");
                store.dead_letter(seq, period, &sub, &reason).await
            }
            Attempt::Transient(reason) => return self.transient(period, &sub, &reason).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot update the outbox");
        }
        let m = &self.agent.inner().metrics;
        m.outbox_depth.set(store.outbox_len() as i64);
        m.dead_letters.set(store.dead_len() as i64);
        Flow::Go
    }

    /// Whether an outranked release is overruled (only a release that
    /// re-imported records overrule is re-issued above the hub's; any other
    /// outranked release means this agent lost state, and its older figures
    /// must not replace newer ones), and what gives up for good instead.
    fn judge(&self, attempt: Attempt, period: Option<Period>) -> (Attempt, bool) {
        let overruled = match (&attempt, period) {
            (Attempt::Outranked { hub, .. }, Some(p)) => {
                reconcile::overrules(&self.agent, p, hub.revision)
            }
            _ => false,
        };
        let attempt = match (attempt, period) {
            (Attempt::Outranked { reason, .. }, _)
                if overruled && self.reissues >= MAX_REISSUES =>
            {
                Attempt::Permanent(format!(
                    "{reason}, still after {MAX_REISSUES} re-issues above the hub's revision"
                ))
            }
            (Attempt::Outranked { reason, .. }, None) => Attempt::Permanent(format!(
                "{reason}; cannot re-issue a stored submission whose period is unreadable"
            )),
            (attempt, _) => attempt,
        };
        (attempt, overruled)
    }

    async fn acknowledged(
        &mut self,
        seq: u64,
        period: Option<Period>,
        sub: &pb::Submission,
        status: ReceiptStatus,
        store_id: String,
    ) -> Result<(), AgentError> {
        self.failures = 0;
        self.reissues = 0;
        tracing::info!(period = %display_period(period), revision = sub.revision, receipt = ?status, "hub acknowledged a submission");
        if self
            .hub_store
            .as_ref()
            .is_some_and(|known| *known != store_id)
        {
            // A new or restored hub store may have lost releases: compare
            // now rather than at the next interval.
            tracing::warn!(
                "the hub answers from another store (new or restored); comparing releases now"
            );
            self.next_reconcile = Instant::now();
        }
        let acked = HubRelease {
            revision: sub.revision,
            digest: sub.digest.clone(),
        };
        let now = self.agent.clock().now_unix();
        self.agent
            .store()
            .outbox_remove(seq, period, acked, now)
            .await
    }

    /// The hub holds a release this agent does not: the period is held back.
    async fn lost(
        &mut self,
        seq: u64,
        p: Period,
        sub: &pb::Submission,
        hub: HubRelease,
        reason: &str,
    ) -> Result<(), AgentError> {
        let hub_revision = hub.revision;
        if reconcile::lost_by_receipt(&self.agent, seq, p, sub, hub).await? {
            let lost = self
                .agent
                .store()
                .lost_periods()
                .map(|l| l.len())
                .unwrap_or(0);
            self.agent.inner().metrics.lost_periods.set(lost as i64);
            tracing::error!(period = %p, revision = sub.revision, hub_revision, %reason, advice = reconcile::LOSS_ADVICE, "the hub holds a newer release of this period than this agent; held back, not re-issued");
            self.next_reconcile = Instant::now();
        }
        Ok(())
    }

    /// Re-imported records overrule the hub's release: the same content goes
    /// again above the hub's revision.
    async fn reissue(
        &mut self,
        seq: u64,
        period: Option<Period>,
        sub: &pb::Submission,
        hub_current: u64,
        reason: &str,
    ) -> Result<(), AgentError> {
        self.failures = 0;
        self.reissues += 1;
        // Outranked entries without a period became dead letters in `judge`.
        let Some(p) = period else {
            return Err(AgentError::Corrupt(
                "an outbox entry has no readable period".into(),
            ));
        };
        let revision = sub.revision;
        match reissue(&self.agent, seq, p, sub, hub_current).await? {
            Some(new_revision) => {
                self.agent.inner().metrics.reissued.inc();
                tracing::warn!(period = %p, revision, hub_current, new_revision, %reason, "re-imported records overrule the hub's release of this period; re-issued the same content above it");
            }
            None => {
                tracing::info!(period = %p, revision, hub_current, "the hub reports another revision; newer content is already queued");
            }
        }
        Ok(())
    }

    /// A failure that may pass: back off, then try again.
    async fn transient(
        &mut self,
        period: Option<Period>,
        sub: &pb::Submission,
        reason: &str,
    ) -> Flow {
        self.agent.inner().metrics.push_failures.inc();
        self.failures = self.failures.saturating_add(1);
        let o = self.agent.options();
        let delay = backoff(o.push_backoff_base, o.push_backoff_cap, self.failures);
        tracing::warn!(period = %display_period(period), revision = sub.revision, %reason, failures = self.failures, retry_in_ms = delay.as_millis() as u64, "push failed; will retry");
        if let Err(e) = self.agent.store().set_push_error(reason).await {
            tracing::error!(error = %e, "cannot record the push failure");
        }
        self.wait(Instant::now() + delay).await
    }
}

/// Metrics and log lines for a completed comparison. `known_store` is the
/// hub store seen before, if any.
fn note_reconciled(
    agent: &Agent,
    outcome: &reconcile::Outcome,
    known_store: Option<&str>,
    took: Duration,
) {
    let inner = agent.inner();
    let m = &inner.metrics;
    m.reconciles.inc(ReconcileOutcome::Ok);
    m.resent.inc_by(outcome.resent as u64);
    m.lost_periods.set(outcome.lost.len() as i64);
    m.outbox_depth.set(inner.store.outbox_len() as i64);
    let now = agent.clock().now_unix();
    m.last_reconcile.set(now);
    inner
        .last_reconcile
        .store(now, std::sync::atomic::Ordering::Relaxed);
    if outcome.resent > 0 {
        inner.enqueued.notify_one();
    }
    let store_changed = known_store.is_some_and(|k| k != outcome.store_id);
    if outcome.resent > 0 || store_changed {
        tracing::warn!(
            resent = outcome.resent,
            store_changed,
            took_ms = took.as_millis() as u64,
            "compared with the hub: re-sending the releases it lacks or holds older, as published before"
        );
    } else {
        tracing::debug!(
            took_ms = took.as_millis() as u64,
            "compared with the hub: in step"
        );
    }
    if !outcome.newly_lost.is_empty() {
        tracing::error!(
            periods = %reconcile::names(&outcome.lost),
            advice = reconcile::LOSS_ADVICE,
            "the hub holds newer releases of these periods than this agent; they are held back"
        );
    }
}

/// At startup: dead letters left by an earlier run need an operator too.
fn warn_about_dead_letters(agent: &Agent) {
    let dead = agent.store().dead_len();
    if dead > 0 {
        tracing::error!(
            dead_letters = dead,
            advice = DEAD_LETTER_ADVICE,
            "submissions the hub refused for good are waiting in the dead-letter tree"
        );
    }
}

/// `2025-Q1` for logs, or `unknown` when a stored submission had no readable period.
fn display_period(period: Option<Period>) -> String {
    period.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        for failures in 1..40 {
            let d = backoff(base, cap, failures);
            let ceiling = (base * 2u32.pow((failures - 1).min(20))).min(cap);
            assert!(d <= ceiling, "{failures}: {d:?} > {ceiling:?}");
        }
        // Full jitter: not always the ceiling.
        let samples: Vec<_> = (0..50).map(|_| backoff(base, cap, 10)).collect();
        assert!(samples.iter().any(|d| *d < cap));
    }

    /// A hub that has not said it reads packed cells gets named ones: an
    /// older hub ignores `packed` and would refuse a release with no cells.
    #[test]
    fn cells_are_packed_only_for_a_hub_that_reads_them() {
        use lacnet_core::disclosure::{Count, Published};
        let published = Published {
            counts: [Count::Value(40); lacnet_core::metrics::METRIC_COUNT],
        };
        let named = pb::Submission {
            cells: lacnet_proto::convert::cells(&published),
            ..Default::default()
        };
        assert_eq!(on_the_wire(named.clone(), false), named);
        let packed = on_the_wire(named.clone(), true);
        assert!(packed.cells.is_empty());
        assert!(packed.packed.is_some());
    }
}
