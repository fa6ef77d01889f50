//! Conversions between the wire types (`lacnet-proto`) and the domain
//! (`lacnet-core`). Inbound conversions validate and name the offending field;
//! outbound ones cannot fail.

use lacnet_core::compare::{self, FunnelFlag, TrendDirection};
use lacnet_core::disclosure::{Count, DisclosurePolicy};
use lacnet_core::metrics::{MetricKind, catalogue};
use lacnet_core::period::{Granularity, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1 as hub;

use crate::HubError;
use crate::registry::Registry;

/// A wire period, required.
pub fn period_from_proto(p: Option<&pb::Period>, field: &str) -> Result<Period, HubError> {
    let p = p.ok_or_else(|| HubError::invalid(field, "is required"))?;
    let granularity = Granularity::from_code(p.granularity).ok_or_else(|| {
        HubError::invalid(
            format!("{field}.granularity"),
            "must be GRANULARITY_MONTH or GRANULARITY_QUARTER",
        )
    })?;
    Period::new(granularity, p.year, p.index).map_err(|e| HubError::invalid(field, e.to_string()))
}

/// A domain period on the wire.
pub fn period_to_proto(p: Period) -> pb::Period {
    pb::Period {
        granularity: p.granularity().code(),
        year: p.year(),
        index: p.index(),
    }
}

/// A wire count; an unset `kind` is invalid (it is neither a value nor suppressed).
pub fn count_from_proto(c: Option<&pb::Count>, field: &str) -> Result<Count, HubError> {
    match c.and_then(|c| c.kind) {
        Some(pb::count::Kind::Value(v)) => Ok(Count::Value(v)),
        Some(pb::count::Kind::Suppressed(_)) => Ok(Count::Suppressed),
        None => Err(HubError::invalid(
            field,
            "count must be a value or the suppressed marker",
        )),
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

/// A wire policy, required.
pub fn policy_from_proto(
    p: Option<&pb::DisclosurePolicy>,
    field: &str,
) -> Result<DisclosurePolicy, HubError> {
    let p = p.ok_or_else(|| HubError::invalid(field, "is required"))?;
    Ok(DisclosurePolicy {
        threshold: p.threshold,
        rounding_base: p.rounding_base,
        secondary_suppression: p.secondary_suppression,
    })
}

/// A domain policy on the wire.
pub fn policy_to_proto(p: &DisclosurePolicy) -> pb::DisclosurePolicy {
    pb::DisclosurePolicy {
        threshold: p.threshold,
        rounding_base: p.rounding_base,
        secondary_suppression: p.secondary_suppression,
    }
}

/// The catalogue entry for metric `index`, with its unit cost from the registry.
pub fn metric_info(index: usize, registry: &Registry) -> hub::MetricInfo {
    let def = catalogue().def(index);
    let (kind, denominator) = match def.kind {
        MetricKind::Count => (hub::MetricKind::Count, String::new()),
        MetricKind::Proportion { denominator } => (
            hub::MetricKind::Proportion,
            catalogue().def(denominator).id.clone(),
        ),
    };
    let cost = registry.unit_cost(index);
    hub::MetricInfo {
        id: def.id.clone(),
        label: def.label.clone(),
        group: def.group.to_string(),
        kind: kind as i32,
        denominator,
        unit_cost_pence: cost.map(|c| c.pence),
        unit_cost_source: cost.map(|c| c.source.clone()).unwrap_or_default(),
    }
}

/// A funnel flag on the wire.
pub fn funnel_flag_to_proto(f: FunnelFlag) -> hub::FunnelFlag {
    match f {
        FunnelFlag::NotApplicable => hub::FunnelFlag::NotApplicable,
        FunnelFlag::Within => hub::FunnelFlag::Within,
        FunnelFlag::Above95 => hub::FunnelFlag::Above95,
        FunnelFlag::Below95 => hub::FunnelFlag::Below95,
        FunnelFlag::Above998 => hub::FunnelFlag::Above998,
        FunnelFlag::Below998 => hub::FunnelFlag::Below998,
    }
}

/// Funnel limits on the wire.
pub fn funnel_limits_to_proto(l: &compare::FunnelLimits) -> hub::FunnelLimits {
    hub::FunnelLimits {
        lower_95: l.lower_95,
        upper_95: l.upper_95,
        lower_998: l.lower_998,
        upper_998: l.upper_998,
    }
}

/// A summary on the wire.
pub fn summary_to_proto(s: &compare::Summary) -> hub::Summary {
    hub::Summary {
        median: s.median,
        min: s.min,
        max: s.max,
        sites_known: s.known,
        sites_suppressed: s.suppressed,
    }
}

/// A trend on the wire.
pub fn trend_to_proto(site_code: &str, t: &compare::Trend) -> hub::SiteTrend {
    let direction = match t.direction {
        TrendDirection::Insufficient => hub::TrendDirection::Insufficient,
        TrendDirection::Rising => hub::TrendDirection::Rising,
        TrendDirection::Falling => hub::TrendDirection::Falling,
        TrendDirection::Flat => hub::TrendDirection::Flat,
    };
    hub::SiteTrend {
        site_code: site_code.to_string(),
        slope_per_period: t.slope_per_period,
        direction: direction as i32,
        points_known: t.points_known,
    }
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

        for c in [Count::Value(0), Count::Value(15), Count::Suppressed] {
            assert_eq!(count_from_proto(Some(&count_to_proto(c)), "c").unwrap(), c);
        }
        assert!(count_from_proto(Some(&pb::Count { kind: None }), "cells[3]").is_err());
        let policy = DisclosurePolicy::default();
        assert_eq!(
            policy_from_proto(Some(&policy_to_proto(&policy)), "policy").unwrap(),
            policy
        );
    }
}
