//! The agent's Prometheus metrics, served on the admin port.
//!
//! Label values come only from closed sets fixed here: a rejection is counted
//! by the field that failed, never by the value.

use std::sync::Arc;

use lacnet_core::validate::RecordField;

use lacnet_server::metrics::{Counter, CounterVec, Gauge, Histogram, LATENCY_BUCKETS, Registry};

/// Rejection reasons: `invalid_<field>` for each record field validation checks.
pub const REJECTION_REASONS: &[&str] = &[
    "invalid_local_case_id",
    "invalid_nhs_number",
    "invalid_introduced_on",
    "invalid_closed_on",
    "invalid_support_level",
    "invalid_age",
    "invalid_primary_need",
    "invalid_introduction_source",
    "invalid_outcomes",
    "invalid_ward_code",
];

/// The label for a rejected record whose first violation is on `field`.
/// Fields outside [`REJECTION_REASONS`] count as `other`.
pub fn rejection_reason(field: RecordField) -> &'static str {
    match field {
        RecordField::LocalCaseId => "invalid_local_case_id",
        RecordField::NhsNumber => "invalid_nhs_number",
        RecordField::IntroducedOn => "invalid_introduced_on",
        RecordField::ClosedOn => "invalid_closed_on",
        RecordField::SupportLevel => "invalid_support_level",
        RecordField::Age => "invalid_age",
        RecordField::PrimaryNeed => "invalid_primary_need",
        RecordField::IntroductionSource => "invalid_introduction_source",
        RecordField::Outcomes => "invalid_outcomes",
        RecordField::WardCode => "invalid_ward_code",
        RecordField::LastContactOn | RecordField::DatedOutcomes | RecordField::Record => {
            lacnet_server::metrics::OTHER
        }
    }
}

/// The store's named writes (`lacnet_store::Committer` jobs).
pub const STORE_WRITES: &[&str] = &[
    "ingest",
    "erase",
    "publish",
    "flush",
    "mark_dirty",
    "outbox_ack",
    "outbox_dead_letter",
    "push_error",
    "retire_key",
    "backup",
];

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    /// Records accepted (new, updated or unchanged).
    pub ingested: Counter,
    /// Records rejected, by reason.
    pub rejected: CounterVec,
    /// Submissions waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Submissions the hub refused for good (dead letters).
    pub dead_letters: Gauge,
    /// Push attempts to the hub.
    pub push_attempts: Counter,
    /// Submissions re-issued above the hub's current revision.
    pub reissued: Counter,
    /// Push attempts that failed.
    pub push_failures: Counter,
    /// Time to ingest one call or stream chunk, durable write included.
    pub ingest_latency: Histogram,
    /// Records erased on request.
    pub erased: Counter,
    /// Store writes by name.
    pub store_writes: CounterVec,
    /// Store writes that failed, by name.
    pub store_write_failures: CounterVec,
    /// Time for a store write to become durable.
    pub store_write_latency: Histogram,
    /// 1 while the store accepts writes, 0 after an I/O failure.
    pub store_healthy: Gauge,
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
                "reason",
                REJECTION_REASONS,
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
                "Submissions re-sent with a higher revision because the hub kept another one current.",
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
            store_writes: registry.counter_vec(
                "lacnet_agent_store_writes_total",
                "Writes to the store, by name.",
                "write",
                STORE_WRITES,
            ),
            store_write_failures: registry.counter_vec(
                "lacnet_agent_store_write_failures_total",
                "Writes to the store that failed, by name.",
                "write",
                STORE_WRITES,
            ),
            store_write_latency: registry.histogram(
                "lacnet_agent_store_write_seconds",
                "Time for a write to run on the writer thread and, if it must be durable, be flushed.",
                LATENCY_BUCKETS,
            ),
            store_healthy: registry.gauge(
                "lacnet_agent_store_healthy",
                "1 while the store accepts writes; 0 after an I/O error (the agent then restarts).",
            ),
            registry,
        }
    }

    /// The store's observer: counts and times every named write.
    pub fn store_observer(&self) -> lacnet_store::Observer {
        let m = self.clone();
        std::sync::Arc::new(move |name, took, ok| {
            m.store_writes.inc(name);
            if !ok {
                m.store_write_failures.inc(name);
            }
            m.store_write_latency.observe(took.as_secs_f64());
        })
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
    fn reasons_come_from_the_closed_set() {
        assert_eq!(
            rejection_reason(RecordField::NhsNumber),
            "invalid_nhs_number"
        );
        assert_eq!(rejection_reason(RecordField::Outcomes), "invalid_outcomes");
        assert_eq!(rejection_reason(RecordField::Age), "invalid_age");
        assert_eq!(rejection_reason(RecordField::Record), "other");
        // Every label a field can give is registered.
        for f in [
            RecordField::LocalCaseId,
            RecordField::IntroducedOn,
            RecordField::ClosedOn,
            RecordField::SupportLevel,
            RecordField::PrimaryNeed,
            RecordField::IntroductionSource,
            RecordField::WardCode,
        ] {
            assert!(REJECTION_REASONS.contains(&rejection_reason(f)), "{f:?}");
        }
        let m = AgentMetrics::new();
        m.rejected.inc(rejection_reason(RecordField::WardCode));
        assert!(
            m.registry()
                .render()
                .contains("reason=\"invalid_ward_code\"} 1")
        );
    }
}
