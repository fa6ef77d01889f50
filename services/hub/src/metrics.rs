//! The hub's Prometheus metrics, registered once in `lacnet-server`'s registry
//! and served on the admin port. Label values come from closed sets: never a
//! site code, a period or any other data.

use std::sync::Arc;

use lacnet_server::metrics::{
    ClosedLabelSet, Counter, CounterVec, EncodeLabelSet, Histogram, LATENCY_BUCKETS, Registry,
    StoreWriteMetrics, StoreWriteName,
};

use crate::error::ErrorKind;
use crate::store::StoreOutcome;

lacnet_server::closed_label! {
    /// Submission outcomes (the `outcome` label of `lacnet_hub_submissions_total`).
    pub enum SubmissionOutcome {
        /// Stored as the latest revision.
        New = "new",
        /// Already stored with the same content.
        Duplicate = "duplicate",
        /// Older than the current revision.
        Superseded = "superseded",
        /// Refused: no usable identity.
        RejectedUnauthenticated = "rejected_unauthenticated",
        /// Refused: the caller's role may not submit.
        RejectedPermissionDenied = "rejected_permission_denied",
        /// Refused: a malformed field.
        RejectedInvalidArgument = "rejected_invalid_argument",
        /// Refused: disclosive figures.
        RejectedPolicyViolation = "rejected_policy_violation",
        /// Refused: the revision is held with other content.
        RejectedConflict = "rejected_conflict",
        /// Refused: not the site's series.
        RejectedWrongSeries = "rejected_wrong_series",
        /// Failed inside the hub.
        Error = "error",
    }
}

impl From<StoreOutcome> for SubmissionOutcome {
    fn from(o: StoreOutcome) -> Self {
        match o {
            StoreOutcome::New => SubmissionOutcome::New,
            StoreOutcome::Duplicate => SubmissionOutcome::Duplicate,
            StoreOutcome::Superseded => SubmissionOutcome::Superseded,
        }
    }
}

impl From<ErrorKind> for SubmissionOutcome {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unauthenticated => SubmissionOutcome::RejectedUnauthenticated,
            ErrorKind::PermissionDenied => SubmissionOutcome::RejectedPermissionDenied,
            ErrorKind::InvalidArgument => SubmissionOutcome::RejectedInvalidArgument,
            ErrorKind::PolicyViolation => SubmissionOutcome::RejectedPolicyViolation,
            ErrorKind::Conflict => SubmissionOutcome::RejectedConflict,
            ErrorKind::WrongSeries => SubmissionOutcome::RejectedWrongSeries,
            ErrorKind::Internal => SubmissionOutcome::Error,
        }
    }
}

/// The labels of `lacnet_hub_submissions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What became of the submission.
    pub outcome: SubmissionOutcome,
}

impl ClosedLabelSet for OutcomeLabels {
    fn all() -> Vec<Self> {
        SubmissionOutcome::ALL
            .iter()
            .map(|&outcome| OutcomeLabels { outcome })
            .collect()
    }
}

impl<T: Into<SubmissionOutcome>> From<T> for OutcomeLabels {
    fn from(outcome: T) -> Self {
        OutcomeLabels {
            outcome: outcome.into(),
        }
    }
}

/// The labels of `lacnet_hub_refusals_total`: a refusal's kind (never `internal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Why the request was refused.
    pub reason: ErrorKind,
}

impl ClosedLabelSet for RefusalLabels {
    fn all() -> Vec<Self> {
        ErrorKind::ALL
            .iter()
            .filter(|k| **k != ErrorKind::Internal)
            .map(|&reason| RefusalLabels { reason })
            .collect()
    }
}

impl From<ErrorKind> for RefusalLabels {
    fn from(reason: ErrorKind) -> Self {
        RefusalLabels { reason }
    }
}

lacnet_server::closed_label! {
    /// The store's named writes (`lacnet_store::Committer` jobs).
    pub enum StoreWrite {
        /// A submission recorded (durable before it is acknowledged).
        Submit = "submit",
        /// An audit log entry.
        Audit = "audit",
        /// Releases of a series the registry no longer names, withdrawn.
        Withdraw = "withdraw",
        /// A backup.
        Backup = "backup",
        /// A flush.
        Flush = "flush",
        /// A read waiting for the writes queued before it (the audit log).
        Barrier = "barrier",
        /// A write this list does not name.
        Other = "other",
    }
}

impl StoreWriteName for StoreWrite {
    const OTHER: StoreWrite = StoreWrite::Other;
}

/// Handles to every hub metric.
#[derive(Debug, Clone)]
pub struct HubMetrics {
    registry: Arc<Registry>,
    /// Submissions by outcome.
    pub submissions: CounterVec<OutcomeLabels>,
    /// Refused requests (any RPC) by reason.
    pub refusals: CounterVec<RefusalLabels>,
    /// Latency of report RPCs, seconds.
    pub report_latency: Histogram,
    /// Latency of submissions, seconds (including the flush to disk).
    pub submit_latency: Histogram,
    /// Internal errors.
    pub internal_errors: Counter,
    /// `ListReleases` pages served (agents comparing themselves with the hub).
    pub releases_listed: Counter,
    /// Submissions whose cells came packed: once it keeps pace with
    /// `lacnet_hub_submissions_total`, every agent has been upgraded.
    pub packed_submissions: Counter,
    /// Scheduled backups.
    pub backups: lacnet_server::metrics::BackupMetrics,
    /// Store writes by name: counts, failures and latency.
    pub store_writes: StoreWriteMetrics<StoreWrite>,
}

impl HubMetrics {
    /// Registers the hub's metrics in a fresh registry.
    pub fn new() -> HubMetrics {
        let registry = Arc::new(Registry::new());
        HubMetrics {
            submissions: registry.counter_vec(
                "lacnet_hub_submissions_total",
                "Submissions received, by outcome",
            ),
            refusals: registry
                .counter_vec("lacnet_hub_refusals_total", "Requests refused, by reason"),
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
            backups: lacnet_server::metrics::BackupMetrics::register(&registry),
            store_writes: StoreWriteMetrics::register(&registry, "lacnet_hub"),
            packed_submissions: registry.counter(
                "lacnet_hub_packed_submissions_total",
                "Submissions received with packed cells (from agents that pack them)",
            ),
            releases_listed: registry.counter(
                "lacnet_hub_releases_listed_total",
                "ListReleases pages served to agents comparing themselves with the hub",
            ),
            registry,
        }
    }

    /// The store's observer: counts and times every named write.
    pub fn store_observer(&self) -> lacnet_store::Observer {
        self.store_writes.observer()
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
    fn renders_closed_labels_each_from_zero() {
        let m = HubMetrics::new();
        m.submissions.inc(SubmissionOutcome::New);
        m.submissions.inc(ErrorKind::Conflict);
        let text = m.registry().render();
        assert!(
            text.contains("lacnet_hub_submissions_total{outcome=\"new\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_hub_submissions_total{outcome=\"rejected_conflict\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_hub_refusals_total{reason=\"wrong_series\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("reason=\"internal\""), "{text}");
        assert_eq!(m.submissions.get(SubmissionOutcome::Error), 0);
        (m.store_observer())("submit", std::time::Duration::from_millis(1), false);
        (m.store_observer())("no_such_write", std::time::Duration::from_millis(1), true);
        let text = m.registry().render();
        assert!(
            text.contains("lacnet_hub_store_writes_total{write=\"submit\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_hub_store_write_failures_total{write=\"submit\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_hub_store_writes_total{write=\"other\"} 1\n"),
            "{text}"
        );
    }
}
