//! Conversions between the wire types and lacnet-core's domain types that
//! both ends of the wire need: periods, disclosure policies, counts and a
//! protected table's cells. One copy, so the agent that writes a submission
//! and the hub that reads it cannot drift apart. Inbound conversions name the
//! offending field; each service turns [`FieldError`] into its own
//! INVALID_ARGUMENT error.

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::{METRIC_COUNT, catalogue};
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

/// Wire value of a suppressed figure in [`pb::PackedCells::counts`].
const PACKED_SUPPRESSED: u64 = 0;
/// Wire value of a figure the period kind does not carry.
const PACKED_NOT_RELEASED: u64 = 1;
/// Published values are sent shifted up by this, past the two markers.
const PACKED_VALUE_BASE: u64 = 2;

/// A protected table's cells in compact form (catalogue order, no ids), or
/// `None` for a value too large to shift past the markers (no real count
/// is): such a table goes as named [`cells`].
pub fn packed(published: &Published) -> Option<pb::PackedCells> {
    let counts = published
        .counts
        .iter()
        .map(|c| pack_one(*c))
        .collect::<Option<Vec<u64>>>()?;
    Some(pb::PackedCells {
        catalogue: catalogue().fingerprint().to_owned(),
        counts,
    })
}

fn pack_one(count: Count) -> Option<u64> {
    match count {
        Count::Suppressed => Some(PACKED_SUPPRESSED),
        Count::NotReleased => Some(PACKED_NOT_RELEASED),
        Count::Value(v) => v.checked_add(PACKED_VALUE_BASE),
    }
}

/// The submission as an agent sends it: its named cells (the form it
/// stores and previews) in compact form. Unchanged when they are not the
/// whole catalogue in order, or a value does not fit: the hub reads both.
pub fn with_packed_cells(mut sub: pb::Submission) -> pb::Submission {
    if sub.packed.is_some() || sub.cells.len() != METRIC_COUNT {
        return sub;
    }
    let mut counts = Vec::with_capacity(METRIC_COUNT);
    for (cell, def) in sub.cells.iter().zip(catalogue().metrics()) {
        let count = count_from_proto(cell.count.as_ref(), "");
        match (cell.metric == def.id, count.ok().and_then(pack_one)) {
            (true, Some(v)) => counts.push(v),
            _ => return sub,
        }
    }
    sub.cells = Vec::new();
    sub.packed = Some(pb::PackedCells {
        catalogue: catalogue().fingerprint().to_owned(),
        counts,
    });
    sub
}

/// Reads packed cells at `field` (e.g. `submission.packed`): this
/// catalogue's fingerprint, and exactly one count per catalogue figure.
pub fn published_from_packed(p: &pb::PackedCells, field: &str) -> Result<Published, FieldError> {
    let cat = catalogue();
    if p.catalogue != cat.fingerprint() {
        // Only a well-formed fingerprint is echoed: this text reaches logs.
        let shown = if p.catalogue.len() == 16 && p.catalogue.bytes().all(|b| b.is_ascii_hexdigit())
        {
            p.catalogue.as_str()
        } else {
            "(not a fingerprint)"
        };
        return Err(FieldError::new(
            format!("{field}.catalogue"),
            format!(
                "is {shown}, but this hub's metric catalogue is {}: the figures would be read \
                 against the wrong metrics (upgrade the agent or the hub so both run one catalogue)",
                cat.fingerprint()
            ),
        ));
    }
    if p.counts.len() != METRIC_COUNT {
        return Err(FieldError::new(
            format!("{field}.counts"),
            format!(
                "has {} counts; the catalogue has {METRIC_COUNT} figures, one count each",
                p.counts.len()
            ),
        ));
    }
    let mut counts = [Count::Suppressed; METRIC_COUNT];
    for (out, wire) in counts.iter_mut().zip(&p.counts) {
        *out = match *wire {
            PACKED_SUPPRESSED => Count::Suppressed,
            PACKED_NOT_RELEASED => Count::NotReleased,
            v => Count::Value(v - PACKED_VALUE_BASE),
        };
    }
    Ok(Published { counts })
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
        assert_eq!(e.field, "submission.period", "{e}");
        assert!(period_from_proto(None, "period").is_err());
        // Year 1 (or 9999) is no reporting period, whatever the index.
        for year in [0, 1, 1999, 2101, 9999, i32::MIN, i32::MAX] {
            let ancient = pb::Period { year, ..wire };
            let e = period_from_proto(Some(&ancient), "submission.period").unwrap_err();
            assert_eq!(e.field, "submission.period", "{e}");
            assert!(e.reason.contains("year must be between"), "{e}");
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

    #[test]
    fn packed_cells_round_trip_every_kind_of_count() {
        let mut published = Published {
            counts: [Count::Value(0); METRIC_COUNT],
        };
        published.counts[1] = Count::Suppressed;
        published.counts[2] = Count::NotReleased;
        published.counts[3] = Count::Value(35);
        published.counts[4] = Count::Value(u64::MAX - 2);
        let wire = packed(&published).unwrap();
        assert_eq!(wire.counts.len(), METRIC_COUNT);
        assert_eq!(wire.catalogue, catalogue().fingerprint());
        assert_eq!(published_from_packed(&wire, "p").unwrap(), published);
        // A value that cannot be shifted past the markers goes named instead.
        published.counts[5] = Count::Value(u64::MAX - 1);
        assert_eq!(packed(&published), None);
    }

    #[test]
    fn packed_cells_refuse_another_catalogue_or_length() {
        let published = Published {
            counts: [Count::Value(10); METRIC_COUNT],
        };
        let mut wire = packed(&published).unwrap();
        wire.counts.pop();
        let e = published_from_packed(&wire, "submission.packed").unwrap_err();
        assert_eq!(e.field, "submission.packed.counts");
        let mut wire = packed(&published).unwrap();
        wire.catalogue = "0123456789abcdef".into();
        let e = published_from_packed(&wire, "submission.packed").unwrap_err();
        assert_eq!(e.field, "submission.packed.catalogue");
        assert!(e.reason.contains("0123456789abcdef"));
        // Anything else is not echoed into logs.
        wire.catalogue = "\u{1b}[31mforged".into();
        let e = published_from_packed(&wire, "submission.packed").unwrap_err();
        assert!(!e.reason.contains("forged"), "{}", e.reason);
    }

    #[test]
    fn a_stored_submission_is_sent_packed_when_it_can_be() {
        let mut published = Published {
            counts: [Count::Value(10); METRIC_COUNT],
        };
        published.counts[7] = Count::Suppressed;
        let named = pb::Submission {
            cells: cells(&published),
            ..Default::default()
        };
        let sent = with_packed_cells(named.clone());
        assert!(sent.cells.is_empty());
        let p = sent.packed.as_ref().unwrap();
        assert_eq!(published_from_packed(p, "p").unwrap(), published);
        // Out of catalogue order: sent as it is.
        let mut swapped = named.clone();
        swapped.cells.swap(0, 1);
        assert_eq!(with_packed_cells(swapped.clone()), swapped);
        // A value too large for the compact form: sent as it is.
        let mut huge = named;
        huge.cells[0].count = Some(count_to_proto(Count::Value(u64::MAX)));
        assert_eq!(with_packed_cells(huge.clone()), huge);
    }

    #[test]
    fn the_fingerprint_names_the_catalogue() {
        let f = catalogue().fingerprint();
        assert_eq!(f.len(), 16);
        assert!(
            f.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
