//! Conversions between the wire types (`lacnet_proto`) and lacnet-core's
//! domain types, used by the gRPC handlers and the publisher.

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::catalogue;
use lacnet_core::validate::{AgeInput, FieldViolation, RecordInput};
use lacnet_core::{Granularity, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;

use crate::AgentError;

/// A wire record as validation input. Moves the strings: no copies.
pub fn record_input(r: site::Record) -> RecordInput {
    fn opt(s: String) -> Option<String> {
        if s.is_empty() { None } else { Some(s) }
    }
    RecordInput {
        local_case_id: r.local_case_id,
        nhs_number: opt(r.nhs_number),
        introduced_on: r.introduced_on,
        closed_on: opt(r.closed_on),
        support_level: r.support_level,
        age: r.age.map(|a| match a {
            site::record::Age::AgeYears(y) => AgeInput::Years(y),
            site::record::Age::YearOfBirth(y) => AgeInput::YearOfBirth(y),
        }),
        primary_need: r.primary_need,
        introduction_source: r.introduction_source,
        outcomes: r.outcomes,
        ward_code: opt(r.ward_code),
    }
}

/// A core field violation on the wire.
pub fn violation(v: FieldViolation) -> pb::FieldViolation {
    pb::FieldViolation {
        field: v.field,
        reason: v.reason,
    }
}

/// A domain period on the wire.
pub fn period_to_proto(p: Period) -> pb::Period {
    pb::Period {
        granularity: p.granularity().code(),
        year: p.year(),
        index: p.index(),
    }
}

/// A wire period, required.
pub fn period_from_proto(p: Option<&pb::Period>) -> Result<Period, AgentError> {
    let p = p.ok_or_else(|| AgentError::invalid("period", "is required"))?;
    let g = Granularity::from_code(p.granularity).ok_or_else(|| {
        AgentError::invalid(
            "period.granularity",
            "must be GRANULARITY_MONTH or GRANULARITY_QUARTER",
        )
    })?;
    Period::new(g, p.year, p.index).map_err(|e| AgentError::invalid("period", e.to_string()))
}

/// A domain policy on the wire.
pub fn policy_to_proto(p: &DisclosurePolicy) -> pb::DisclosurePolicy {
    pb::DisclosurePolicy {
        threshold: p.threshold,
        rounding_base: p.rounding_base,
        secondary_suppression: p.secondary_suppression,
    }
}

/// A domain count on the wire.
pub fn count_to_proto(c: Count) -> pb::Count {
    pb::Count {
        kind: Some(match c {
            Count::Value(v) => pb::count::Kind::Value(v),
            Count::Suppressed => pb::count::Kind::Suppressed(pb::Suppressed {}),
        }),
    }
}

/// Every catalogue metric, in catalogue order, as wire cells.
pub fn cells(published: &Published) -> Vec<pb::Cell> {
    catalogue()
        .metrics()
        .iter()
        .zip(published.counts.iter())
        .map(|(def, c)| pb::Cell {
            metric: def.id.clone(),
            count: Some(count_to_proto(*c)),
        })
        .collect()
}
