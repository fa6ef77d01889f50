//! Conversions between the hub's report types (`lacnet-proto`) and the
//! domain (`lacnet-core`). Periods, policies and counts, which the site agent
//! needs too, are in `lacnet_proto::convert`.

use lacnet_core::compare::{self, FunnelFlag, TrendDirection};
use lacnet_core::metrics::{Additivity, MetricKind, catalogue};
use lacnet_proto::hub::v1 as hub;

use crate::registry::Registry;

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
        unit_cost_excluded_reason: registry
            .cost_exclusion(index)
            .map(|x| x.reason.clone())
            .unwrap_or_default(),
        across_periods: match def.across_periods {
            Additivity::Sum => "sum",
            Additivity::Distinct => "distinct",
            Additivity::AtEnd => "at_end",
        }
        .into(),
        support_level: def
            .support_level
            .map(|l| l.id().to_owned())
            .unwrap_or_default(),
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
