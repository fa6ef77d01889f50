//! The pusher: sends the outbox, oldest first, to the hub over mTLS.
//!
//! An entry leaves the outbox only after the hub's receipt (NEW or
//! DUPLICATE), so a lost reply just means the same revision is sent again and
//! the hub answers DUPLICATE: nothing is counted twice.
//!
//! SUPERSEDED, or ALREADY_EXISTS (this revision number holds other content),
//! means the hub reports some other revision for the period: one from before
//! this agent lost or restored its data directory, or from a clock that ran
//! ahead. The agent's records are the truth, so the same content is
//! re-issued with a revision above the hub's (`current_revision` in the
//! receipt) rather than counted as delivered; otherwise the hub would keep
//! stale figures, or the outbox would wedge on a number it can never use.
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

use crate::publish::{next_revision, now_unix_ms};
use crate::{Agent, AgentError, now_unix};
use lacnet_proto::convert::period_from_proto;

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
    Acknowledged(ReceiptStatus),
    /// The hub keeps another revision current (`hub_current`, when the receipt
    /// said), so this content must go again above it.
    Outranked { hub_current: u64, reason: String },
    /// Refused for good: dead-letter it.
    Permanent(String),
    /// Worth retrying after a backoff.
    Transient(String),
}

async fn send(client: &mut SubmissionsClient<Channel>, sub: pb::Submission) -> Attempt {
    let revision = sub.revision;
    let call = client.submit(SubmitRequest {
        submission: Some(sub),
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Attempt::Transient("the hub did not answer in time".into()),
        Ok(Ok(reply)) => {
            let receipt = reply.into_inner();
            match receipt.status() {
                s @ (ReceiptStatus::New | ReceiptStatus::Duplicate) => Attempt::Acknowledged(s),
                ReceiptStatus::Superseded => Attempt::Outranked {
                    hub_current: receipt.current_revision,
                    reason: format!(
                        "the hub reports revision {} for this period, not {revision}",
                        receipt.current_revision
                    ),
                },
                ReceiptStatus::Unspecified => {
                    Attempt::Transient("the hub's receipt has no status".into())
                }
            }
        }
        // The hub holds this revision number with other content (our data
        // directory was lost or restored); it does not say its current one,
        // so go above ours and learn the rest from the next receipt.
        Ok(Err(status)) if status.code() == Code::AlreadyExists => Attempt::Outranked {
            hub_current: revision,
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
            let revision =
                next_revision(period, Some(sub.revision.max(hub_current)), now_unix_ms())?;
            let again = pb::Submission {
                revision,
                generated_at_unix: now_unix(),
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

/// The pusher task. Without a hub it does nothing: submissions wait in the outbox.
pub async fn run(agent: Agent, stop: CancellationToken) {
    let o = agent.options().clone();
    let Some(hub) = o.hub.clone() else {
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
    let mut client = SubmissionsClient::new(channel);
    let inner = agent.inner();
    let store = &inner.store;
    let m = &inner.metrics;
    let mut failures: u32 = 0;
    let mut reissues: u32 = 0;
    warn_about_dead_letters(&agent);
    loop {
        if stop.is_cancelled() {
            return;
        }
        let entry = match store.outbox_first() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                None
            }
        };
        let Some((seq, sub)) = entry else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = inner.enqueued.notified() => continue,
            }
        };
        let period: Option<Period> = period_from_proto(sub.period.as_ref(), "period").ok();
        let revision = sub.revision;
        m.push_attempts.inc();
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            a = send(&mut client, sub.clone()) => a,
        };
        let attempt = match (attempt, period) {
            (Attempt::Outranked { reason, .. }, _) if reissues >= MAX_REISSUES => {
                Attempt::Permanent(format!(
                    "{reason}, still after {MAX_REISSUES} re-issues above the hub's revision"
                ))
            }
            (Attempt::Outranked { reason, .. }, None) => Attempt::Permanent(format!(
                "{reason}; cannot re-issue a stored submission whose period is unreadable"
            )),
            (attempt, _) => attempt,
        };
        let result = match attempt {
            Attempt::Acknowledged(status) => {
                failures = 0;
                reissues = 0;
                tracing::info!(period = %display_period(period), revision, receipt = ?status, "hub acknowledged a submission");
                store.outbox_remove(seq, period, now_unix()).await
            }
            Attempt::Outranked {
                hub_current,
                reason,
            } => {
                failures = 0;
                reissues += 1;
                let reissued = match period {
                    Some(p) => reissue(&agent, seq, p, &sub, hub_current)
                        .await
                        .map(|r| r.map(|rev| (p, rev))),
                    // Outranked entries without a period became dead letters above.
                    None => Err(AgentError::Corrupt(
                        "an outbox entry has no readable period".into(),
                    )),
                };
                match reissued {
                    Ok(Some((p, new_revision))) => {
                        m.reissued.inc();
                        tracing::warn!(period = %p, revision, hub_current, new_revision, %reason, "the hub reports another revision of this period; re-issued the same content above it");
                        Ok(())
                    }
                    Ok(None) => {
                        tracing::info!(period = %display_period(period), revision, hub_current, "the hub reports another revision; newer content is already queued");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Attempt::Permanent(reason) => {
                m.push_failures.inc();
                tracing::error!(period = %display_period(period), revision, %reason, advice = DEAD_LETTER_ADVICE, "hub refused a submission for good; dead-lettered");
                store.dead_letter(seq, period, &sub, &reason).await
            }
            Attempt::Transient(reason) => {
                m.push_failures.inc();
                failures = failures.saturating_add(1);
                let delay = backoff(o.push_backoff_base, o.push_backoff_cap, failures);
                tracing::warn!(period = %display_period(period), revision, %reason, failures, retry_in_ms = delay.as_millis() as u64, "push failed; will retry");
                if let Err(e) = store.set_push_error(&reason).await {
                    tracing::error!(error = %e, "cannot record the push failure");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot update the outbox");
        }
        m.outbox_depth.set(store.outbox_len() as i64);
        m.dead_letters.set(store.dead_len() as i64);
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
}
