//! The agent's Prometheus metrics, served on the admin port.
//!
//! Label values come only from closed sets fixed here: a rejection is counted
//! by the field that failed, never by the value.

use std::sync::Arc;

use lacnet_core::validate::RecordField;

use lacnet_server::metrics::{
    ClosedLabelSet, Counter, CounterVec, EncodeLabelSet, Gauge, Histogram, LATENCY_BUCKETS,
    Registry, StoreWriteMetrics, StoreWriteName,
};

lacnet_server::closed_label! {
    /// Why a record was rejected: `invalid_<field>` for the first field that failed.
    pub enum RejectionReason {
        /// `local_case_id`.
        InvalidLocalCaseId = "invalid_local_case_id",
        /// `nhs_number`.
        InvalidNhsNumber = "invalid_nhs_number",
        /// `introduced_on`.
        InvalidIntroducedOn = "invalid_introduced_on",
        /// `closed_on`.
        InvalidClosedOn = "invalid_closed_on",
        /// `support_level`.
        InvalidSupportLevel = "invalid_support_level",
        /// `age_years` or `year_of_birth`.
        InvalidAge = "invalid_age",
        /// `primary_need`.
        InvalidPrimaryNeed = "invalid_primary_need",
        /// `introduction_source`.
        InvalidIntroductionSource = "invalid_introduction_source",
        /// `outcomes`.
        InvalidOutcomes = "invalid_outcomes",
        /// `ward_code`.
        InvalidWardCode = "invalid_ward_code",
        /// Any other field.
        Other = "other",
    }
}

impl From<RecordField> for RejectionReason {
    fn from(field: RecordField) -> Self {
        match field {
            RecordField::LocalCaseId => RejectionReason::InvalidLocalCaseId,
            RecordField::NhsNumber => RejectionReason::InvalidNhsNumber,
            RecordField::IntroducedOn => RejectionReason::InvalidIntroducedOn,
            RecordField::ClosedOn => RejectionReason::InvalidClosedOn,
            RecordField::SupportLevel => RejectionReason::InvalidSupportLevel,
            RecordField::Age => RejectionReason::InvalidAge,
            RecordField::PrimaryNeed => RejectionReason::InvalidPrimaryNeed,
            RecordField::IntroductionSource => RejectionReason::InvalidIntroductionSource,
            RecordField::Outcomes => RejectionReason::InvalidOutcomes,
            RecordField::WardCode => RejectionReason::InvalidWardCode,
            RecordField::LastContactOn | RecordField::DatedOutcomes | RecordField::Record => {
                RejectionReason::Other
            }
        }
    }
}

/// The labels of `lacnet_agent_records_rejected_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    /// Why the record was rejected.
    pub reason: RejectionReason,
}

impl ClosedLabelSet for RejectionLabels {
    fn all() -> Vec<Self> {
        RejectionReason::ALL
            .iter()
            .map(|&reason| RejectionLabels { reason })
            .collect()
    }
}

impl<T: Into<RejectionReason>> From<T> for RejectionLabels {
    fn from(reason: T) -> Self {
        RejectionLabels {
            reason: reason.into(),
        }
    }
}

lacnet_server::closed_label! {
    /// The store's named writes (`lacnet_store::Committer` jobs).
    pub enum StoreWrite {
        /// Records ingested.
        Ingest = "ingest",
        /// A person erased.
        Erase = "erase",
        /// Submissions enqueued.
        Publish = "publish",
        /// A flush.
        Flush = "flush",
        /// Periods marked for recomputation.
        MarkDirty = "mark_dirty",
        /// A push acknowledged.
        OutboxAck = "outbox_ack",
        /// A submission dead-lettered.
        OutboxDeadLetter = "outbox_dead_letter",
        /// A push error recorded.
        PushError = "push_error",
        /// A key retired.
        RetireKey = "retire_key",
        /// A backup.
        Backup = "backup",
        /// A comparison with the hub acted on (re-sends, lost periods).
        Reconcile = "reconcile",
        /// A write this list does not name.
        Other = "other",
    }
}

impl StoreWriteName for StoreWrite {
    const OTHER: StoreWrite = StoreWrite::Other;
}

lacnet_server::closed_label! {
    /// How a comparison with the hub ended.
    pub enum ReconcileOutcome {
        /// The hub answered and the agent acted on it.
        Ok = "ok",
        /// The hub could not be asked (retried with backoff).
        Failed = "failed",
    }
}

/// The labels of `lacnet_agent_reconciles_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// How it ended.
    pub outcome: ReconcileOutcome,
}

impl ClosedLabelSet for ReconcileLabels {
    fn all() -> Vec<Self> {
        ReconcileOutcome::ALL
            .iter()
            .map(|&outcome| ReconcileLabels { outcome })
            .collect()
    }
}

impl From<ReconcileOutcome> for ReconcileLabels {
    fn from(outcome: ReconcileOutcome) -> Self {
        ReconcileLabels { outcome }
    }
}

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    /// Records accepted (new, updated or unchanged).
    pub ingested: Counter,
    /// Records rejected, by reason.
    pub rejected: CounterVec<RejectionLabels>,
    /// Submissions waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Submissions the hub refused for good (dead letters).
    pub dead_letters: Gauge,
    /// Push attempts to the hub.
    pub push_attempts: Counter,
    /// Submissions re-issued above a hub revision that re-imported records overrule.
    pub reissued: Counter,
    /// Push attempts that failed.
    pub push_failures: Counter,
    /// Time to ingest one call or stream chunk, durable write included.
    pub ingest_latency: Histogram,
    /// Records erased on request.
    pub erased: Counter,
    /// Store writes by name: counts, failures and latency.
    pub store_writes: StoreWriteMetrics<StoreWrite>,
    /// 1 while the store accepts writes, 0 after an I/O failure.
    pub store_healthy: Gauge,
    /// Comparisons with the hub, by outcome.
    pub reconciles: CounterVec<ReconcileLabels>,
    /// Releases re-sent because the hub lacked them or held an older revision.
    pub resent: Counter,
    /// Periods the hub holds newer releases of than this agent (held back).
    pub lost_periods: Gauge,
    /// When the last comparison with the hub completed (Unix seconds; 0: never).
    pub last_reconcile: Gauge,
    /// Scheduled backups.
    pub backups: lacnet_server::metrics::BackupMetrics,
}

impl AgentMetrics {
    /// Registers every metric in a new registry.
    pub fn new() -> AgentMetrics {
        let registry = Arc::new(Registry::new());
        AgentMetrics {
            ingested: registry.counter(
                "lacnet_agent_records_ingested_total",
                "Records accepted (new, updated or unchanged).",
            ),
            rejected: registry.counter_vec(
                "lacnet_agent_records_rejected_total",
                "Records rejected by validation, by the field that failed.",
            ),
            outbox_depth: registry.gauge(
                "lacnet_agent_outbox_depth",
                "Submissions waiting to be pushed to the hub.",
            ),
            dead_letters: registry.gauge(
                "lacnet_agent_outbox_dead_letters",
                "Submissions the hub refused for good; need an operator.",
            ),
            push_attempts: registry.counter(
                "lacnet_agent_push_attempts_total",
                "Attempts to push a submission to the hub.",
            ),
            reissued: registry.counter(
                "lacnet_agent_push_reissued_total",
                "Submissions re-sent with a higher revision over a hub release that a confirmed full re-import overrules.",
            ),
            push_failures: registry.counter(
                "lacnet_agent_push_failures_total",
                "Push attempts that failed (retried or dead-lettered).",
            ),
            ingest_latency: registry.histogram(
                "lacnet_agent_ingest_seconds",
                "Time to ingest one call or stream chunk, durable write included.",
                LATENCY_BUCKETS,
            ),
            erased: registry.counter(
                "lacnet_agent_records_erased_total",
                "Records erased on request.",
            ),
            store_writes: StoreWriteMetrics::register(&registry, "lacnet_agent"),
            store_healthy: registry.gauge(
                "lacnet_agent_store_healthy",
                "1 while the store accepts writes; 0 after an I/O error (the agent then restarts).",
            ),
            reconciles: registry.counter_vec(
                "lacnet_agent_reconciles_total",
                "Comparisons of this agent's releases with the hub's, by outcome.",
            ),
            resent: registry.counter(
                "lacnet_agent_releases_resent_total",
                "Releases re-sent as published before, because the hub lacked them or held an older revision.",
            ),
            lost_periods: registry.gauge(
                "lacnet_agent_lost_periods",
                "Periods the hub holds newer releases of than this agent (it lost state); held back until the latest full export is re-imported.",
            ),
            last_reconcile: registry.gauge(
                "lacnet_agent_last_reconcile_timestamp_seconds",
                "When the last comparison with the hub completed (Unix seconds; 0: none since start).",
            ),
            backups: lacnet_server::metrics::BackupMetrics::register(&registry),
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

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_closed_sets_each_from_zero() {
        let m = AgentMetrics::new();
        m.rejected.inc(RecordField::WardCode);
        m.rejected.inc(RecordField::DatedOutcomes);
        (m.store_observer())("ingest", std::time::Duration::from_millis(1), false);
        (m.store_observer())("no_such_write", std::time::Duration::from_millis(1), true);
        let text = m.registry().render();
        for line in [
            "lacnet_agent_records_rejected_total{reason=\"invalid_ward_code\"} 1\n",
            "lacnet_agent_records_rejected_total{reason=\"other\"} 1\n",
            "lacnet_agent_records_rejected_total{reason=\"invalid_age\"} 0\n",
            "lacnet_agent_store_writes_total{write=\"ingest\"} 1\n",
            "lacnet_agent_store_write_failures_total{write=\"ingest\"} 1\n",
            "lacnet_agent_store_writes_total{write=\"other\"} 1\n",
            "lacnet_agent_outbox_depth 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
        assert_eq!(m.rejected.get(RejectionReason::InvalidAge), 0);
        assert_eq!(
            RejectionReason::from(RecordField::Age),
            RejectionReason::InvalidAge
        );
    }
}
