//! Conversions between the wire types and lacnet-core's domain types that
//! both ends of the wire need: periods, disclosure policies, counts and a
//! protected table's cells. One copy, so the agent that writes a submission
//! and the hub that reads it cannot drift apart. Inbound conversions name the
//! offending field; each service turns [`FieldError`] into its own
//! INVALID_ARGUMENT error.

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::catalogue;
use lacnet_core::period::{Granularity, Period};

use crate::common::v1 as pb;

/// A wire value that does not convert: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the message, e.g. `submission.period.granularity`.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// A domain period on the wire.
pub fn period_to_proto(p: Period) -> pb::Period {
    pb::Period {
        granularity: p.granularity().code(),
        year: p.year(),
        index: p.index(),
    }
}

/// A wire period, required, at `field`.
pub fn period_from_proto(p: Option<&pb::Period>, field: &str) -> Result<Period, FieldError> {
    let p = p.ok_or_else(|| FieldError::new(field, "is required"))?;
    let granularity = Granularity::from_code(p.granularity).ok_or_else(|| {
        FieldError::new(
            format!("{field}.granularity"),
            "must be GRANULARITY_MONTH or GRANULARITY_QUARTER",
        )
    })?;
    Period::new(granularity, p.year, p.index).map_err(|e| FieldError::new(field, e.to_string()))
}

/// A domain policy on the wire.
pub fn policy_to_proto(p: &DisclosurePolicy) -> pb::DisclosurePolicy {
    pb::DisclosurePolicy {
        threshold: p.threshold,
        rounding_base: p.rounding_base,
        secondary_suppression: p.secondary_suppression,
    }
}

/// A wire policy, required, at `field` (whether it is a sound policy is the caller's check).
pub fn policy_from_proto(
    p: Option<&pb::DisclosurePolicy>,
    field: &str,
) -> Result<DisclosurePolicy, FieldError> {
    let p = p.ok_or_else(|| FieldError::new(field, "is required"))?;
    Ok(DisclosurePolicy {
        threshold: p.threshold,
        rounding_base: p.rounding_base,
        secondary_suppression: p.secondary_suppression,
    })
}

/// A domain count on the wire.
pub fn count_to_proto(c: Count) -> pb::Count {
    pb::Count {
        kind: Some(match c {
            Count::Value(v) => pb::count::Kind::Value(v),
            Count::Suppressed => pb::count::Kind::Suppressed(pb::Suppressed {}),
            Count::NotReleased => pb::count::Kind::NotReleased(pb::NotReleased {}),
        }),
    }
}

/// A wire count at `field`; an unset `kind` is invalid (it is neither a value nor suppressed).
pub fn count_from_proto(c: Option<&pb::Count>, field: &str) -> Result<Count, FieldError> {
    match c.and_then(|c| c.kind) {
        Some(pb::count::Kind::Value(v)) => Ok(Count::Value(v)),
        Some(pb::count::Kind::Suppressed(_)) => Ok(Count::Suppressed),
        Some(pb::count::Kind::NotReleased(_)) => Ok(Count::NotReleased),
        None => Err(FieldError::new(
            field,
            "count must be a value, the suppressed marker or the not-released marker",
        )),
    }
}

/// Every catalogue metric of a protected table, in catalogue order, as wire cells.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let p = Period::parse("2025-Q2").unwrap();
        let wire = period_to_proto(p);
        assert_eq!(period_from_proto(Some(&wire), "period").unwrap(), p);
        let bad = pb::Period {
            granularity: 2,
            year: 2025,
            index: 5,
        };
        let e = period_from_proto(Some(&bad), "submission.period").unwrap_err();
        assert!(e.to_string().contains("submission.period"), "{e}");
        assert!(period_from_proto(None, "period").is_err());
        // Year 1 (or 9999) is no reporting period, whatever the index.
        for year in [0, 1, 1999, 2101, 9999, i32::MIN, i32::MAX] {
            let ancient = pb::Period { year, ..wire };
            let e = period_from_proto(Some(&ancient), "submission.period").unwrap_err();
            assert!(e.to_string().contains("submission.period"), "{e}");
            assert!(e.to_string().contains("year must be between"), "{e}");
        }
        let unspecified = pb::Period {
            granularity: 0,
            ..wire
        };
        assert!(
            period_from_proto(Some(&unspecified), "p")
                .unwrap_err()
                .to_string()
                .contains("p.granularity")
        );

        for c in [
            Count::Value(0),
            Count::Value(15),
            Count::Suppressed,
            Count::NotReleased,
        ] {
            assert_eq!(count_from_proto(Some(&count_to_proto(c)), "c").unwrap(), c);
        }
        assert!(count_from_proto(Some(&pb::Count { kind: None }), "cells[3]").is_err());
        let policy = DisclosurePolicy::default();
        assert_eq!(
            policy_from_proto(Some(&policy_to_proto(&policy)), "policy").unwrap(),
            policy
        );
    }

    #[test]
    fn cells_follow_the_catalogue_and_keep_suppression() {
        let mut published = Published {
            counts: [Count::Value(5); lacnet_core::metrics::METRIC_COUNT],
        };
        published.counts[1] = Count::Suppressed;
        let cells = cells(&published);
        assert_eq!(cells.len(), catalogue().metrics().len());
        assert_eq!(cells[0].metric, catalogue().def(0).id);
        assert_eq!(
            count_from_proto(cells[1].count.as_ref(), "c").unwrap(),
            Count::Suppressed
        );
    }
}
