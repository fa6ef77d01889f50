//! The pusher: sends the outbox, oldest first, to the hub over mTLS.
//!
//! An entry leaves the outbox only after the hub's receipt (NEW, DUPLICATE or
//! SUPERSEDED), so a lost reply just means the same revision is sent again and
//! the hub answers DUPLICATE: nothing is counted twice. Transient failures
//! (the hub down, a timeout) retry with exponential backoff and full jitter;
//! refusals that will never succeed (INVALID_ARGUMENT, FAILED_PRECONDITION,
//! PERMISSION_DENIED) go to the dead-letter tree instead of spinning, and
//! show in the status and metrics.

use std::time::Duration;

use lacnet_core::Period;
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_proto::hub::v1::{ReceiptStatus, SubmitRequest};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use crate::{Agent, now_unix};
use lacnet_proto::convert::period_from_proto;

/// Longest wait for one Submit call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

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

enum Attempt {
    Acknowledged(ReceiptStatus),
    Permanent(String),
    Transient(String),
}

async fn send(client: &mut SubmissionsClient<Channel>, sub: pb::Submission) -> Attempt {
    let call = client.submit(SubmitRequest {
        submission: Some(sub),
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Attempt::Transient("the hub did not answer in time".into()),
        Ok(Ok(reply)) => match reply.into_inner().status() {
            s @ (ReceiptStatus::New | ReceiptStatus::Duplicate | ReceiptStatus::Superseded) => {
                Attempt::Acknowledged(s)
            }
            ReceiptStatus::Unspecified => {
                Attempt::Transient("the hub's receipt has no status".into())
            }
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
        let result = match attempt {
            Attempt::Acknowledged(status) => {
                failures = 0;
                tracing::info!(period = %display_period(period), revision, receipt = ?status, "hub acknowledged a submission");
                store.outbox_remove(seq, period, now_unix()).await
            }
            Attempt::Permanent(reason) => {
                m.push_failures.inc();
                tracing::error!(period = %display_period(period), revision, %reason, "hub refused a submission for good; dead-lettered");
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
