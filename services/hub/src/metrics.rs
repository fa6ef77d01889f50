//! The hub's Prometheus metrics, registered once in `lacnet-server`'s registry
//! and served on the admin port. Label values come from closed sets: never a
//! site code, a period or any other data.

use std::sync::Arc;

use lacnet_server::metrics::{Counter, CounterVec, Histogram, LATENCY_BUCKETS, Registry};

/// Submission outcomes (the `outcome` label of `lacnet_hub_submissions_total`).
pub const SUBMISSION_OUTCOMES: &[&str] = &[
    "new",
    "duplicate",
    "superseded",
    "rejected_unauthenticated",
    "rejected_permission_denied",
    "rejected_invalid_argument",
    "rejected_policy_violation",
    "rejected_conflict",
    "rejected_wrong_series",
    "error",
];

/// Refusal reasons (the `reason` label of `lacnet_hub_refusals_total`).
pub const REFUSAL_REASONS: &[&str] = &[
    "unauthenticated",
    "permission_denied",
    "invalid_argument",
    "policy_violation",
    "conflict",
    "wrong_series",
];

/// Handles to every hub metric.
#[derive(Debug, Clone)]
pub struct HubMetrics {
    registry: Arc<Registry>,
    /// Submissions by outcome.
    pub submissions: CounterVec,
    /// Refused requests (any RPC) by reason.
    pub refusals: CounterVec,
    /// Latency of report RPCs, seconds.
    pub report_latency: Histogram,
    /// Latency of submissions, seconds (including the flush to disk).
    pub submit_latency: Histogram,
    /// Internal errors.
    pub internal_errors: Counter,
}

impl HubMetrics {
    /// Registers the hub's metrics in a fresh registry.
    pub fn new() -> HubMetrics {
        let registry = Arc::new(Registry::new());
        HubMetrics {
            submissions: registry.counter_vec(
                "lacnet_hub_submissions_total",
                "Submissions received, by outcome",
                "outcome",
                SUBMISSION_OUTCOMES,
            ),
            refusals: registry.counter_vec(
                "lacnet_hub_refusals_total",
                "Requests refused, by reason",
                "reason",
                REFUSAL_REASONS,
            ),
            report_latency: registry.histogram(
                "lacnet_hub_report_latency_seconds",
                "Time to build a report",
                LATENCY_BUCKETS,
            ),
            submit_latency: registry.histogram(
                "lacnet_hub_submit_latency_seconds",
                "Time to validate and durably store a submission",
                LATENCY_BUCKETS,
            ),
            internal_errors: registry.counter(
                "lacnet_hub_internal_errors_total",
                "Requests that failed inside the hub",
            ),
            registry,
        }
    }

    /// The registry, for the admin port.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_closed_labels() {
        let m = HubMetrics::new();
        m.submissions.inc("new");
        m.submissions.inc("E06000034");
        let text = m.registry().render();
        assert!(text.contains("lacnet_hub_submissions_total"), "{text}");
        assert!(!text.contains("E06000034"), "{text}");
        assert_eq!(m.submissions.get("other"), 1);
    }
}
