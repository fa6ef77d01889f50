//! Cross-site comparisons built at the hub from published tables.
//!
//! The last step of the data flow: the hub holds every site's [`Count`]s
//! (already suppressed and rounded at the site) and turns one metric for one
//! period into rates per 10,000 adults, shares of a denominator, ranks, the
//! network median and range, and funnel-plot control limits; across periods
//! into trends; and with agreed unit costs into an estimate of cost avoided.
//!
//! A suppressed value is never read as 0: it is left out of every statistic
//! and counted as suppressed, so readers can see how much is missing.
//! Everything here works on rounded counts, so results are estimates.

use crate::disclosure::Count;

/// One site's published figures for one metric and period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteInput<'a> {
    /// The site's ONS code.
    pub site_code: &'a str,
    /// Adult (18+) residents, from the hub's site registry.
    pub adult_population: u64,
    /// The metric's published count.
    pub value: Count,
    /// For proportion metrics, the published denominator.
    pub denominator: Option<Count>,
}

/// Funnel-plot control limits for a proportion at one denominator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunnelLimits {
    /// Lower 95% limit (about 2 standard errors).
    pub lower_95: f64,
    /// Upper 95% limit.
    pub upper_95: f64,
    /// Lower 99.8% limit (about 3 standard errors).
    pub lower_998: f64,
    /// Upper 99.8% limit.
    pub upper_998: f64,
}

/// Where a site's proportion falls against its funnel limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunnelFlag {
    /// No proportion (not a proportion metric, or a figure suppressed or zero).
    NotApplicable,
    /// Inside the 95% limits.
    Within,
    /// Above the 95% limit but inside the 99.8% limit.
    Above95,
    /// Below the 95% limit but inside the 99.8% limit.
    Below95,
    /// Above the 99.8% limit.
    Above998,
    /// Below the 99.8% limit.
    Below998,
}

/// One site's row in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteComparison {
    /// The site's ONS code.
    pub site_code: String,
    /// The published count.
    pub value: Count,
    /// The published denominator, for proportion metrics.
    pub denominator: Option<Count>,
    /// `value * 10000 / adult_population`; `None` if suppressed or no population.
    pub rate_per_10k: Option<f64>,
    /// `value / denominator`; `None` if either is suppressed, the denominator is 0 or absent.
    pub share: Option<f64>,
    /// Rank by rate per 10,000, highest first (competition ranking: 1, 2, 2, 4).
    pub rank: Option<u32>,
    /// Control limits at this site's denominator, when it has a share.
    pub funnel_limits: Option<FunnelLimits>,
    /// Where the share falls against the limits.
    pub funnel_flag: FunnelFlag,
}

/// Median and range over the sites whose figure is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median of the known figures.
    pub median: Option<f64>,
    /// Smallest known figure.
    pub min: Option<f64>,
    /// Largest known figure.
    pub max: Option<f64>,
    /// How many sites had a known figure.
    pub known: u32,
    /// How many sites had the figure withheld by disclosure control.
    pub suppressed: u32,
}

/// One metric in one period across sites.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodComparison {
    /// One row per input site, in input order.
    pub sites: Vec<SiteComparison>,
    /// Summary of the counts.
    pub value_summary: Summary,
    /// Summary of the rates per 10,000 adults (`suppressed`: sites whose count is suppressed).
    pub rate_summary: Summary,
    /// Summary of the shares (`suppressed`: sites whose count or denominator is suppressed).
    pub share_summary: Summary,
    /// The network's pooled proportion, the funnel plot's centre line.
    pub funnel_target: Option<f64>,
}

/// z for two-sided 95% limits.
const Z_95: f64 = 1.959964;
/// z for two-sided 99.8% limits.
const Z_998: f64 = 3.090232;

fn known(count: Count) -> Option<u64> {
    match count {
        Count::Value(v) => Some(v),
        Count::Suppressed | Count::NotReleased => None,
    }
}

/// Compares sites for one metric and period.
pub fn compare_period(inputs: &[SiteInput]) -> PeriodComparison {
    let mut sites: Vec<SiteComparison> = inputs
        .iter()
        .map(|input| {
            let value = known(input.value);
            let rate_per_10k = value
                .filter(|_| input.adult_population > 0)
                .map(|v| v as f64 * 10_000.0 / input.adult_population as f64);
            let share = match (value, input.denominator.and_then(known)) {
                (Some(v), Some(d)) if d > 0 => Some(v as f64 / d as f64),
                _ => None,
            };
            SiteComparison {
                site_code: input.site_code.to_string(),
                value: input.value,
                denominator: input.denominator,
                rate_per_10k,
                share,
                rank: None,
                funnel_limits: None,
                funnel_flag: FunnelFlag::NotApplicable,
            }
        })
        .collect();

    // One scratch buffer serves ranking and all three summaries.
    let mut scratch: Vec<f64> = Vec::with_capacity(sites.len());

    scratch.extend(sites.iter().filter_map(|s| s.rate_per_10k));
    scratch.sort_unstable_by(|a, b| b.total_cmp(a));
    for site in &mut sites {
        if let Some(rate) = site.rate_per_10k {
            // Competition ranking: one more than the number of strictly higher rates.
            let higher = scratch.partition_point(|&r| r > rate);
            site.rank = Some(u32::try_from(higher + 1).unwrap_or(u32::MAX));
        }
    }

    let value_suppressed = count_u32(
        inputs
            .iter()
            .filter(|i| i.value == Count::Suppressed)
            .count(),
    );
    let share_suppressed = count_u32(
        inputs
            .iter()
            .filter(|i| i.value == Count::Suppressed || i.denominator == Some(Count::Suppressed))
            .count(),
    );
    let value_summary = summarise(
        &mut scratch,
        inputs
            .iter()
            .filter_map(|i| known(i.value))
            .map(|v| v as f64),
        value_suppressed,
    );
    let rate_summary = summarise(
        &mut scratch,
        sites.iter().filter_map(|s| s.rate_per_10k),
        value_suppressed,
    );
    let share_summary = summarise(
        &mut scratch,
        sites.iter().filter_map(|s| s.share),
        share_suppressed,
    );

    // Pooled proportion over sites where both figures are known.
    let (num, den) = inputs
        .iter()
        .filter_map(|i| Some((known(i.value)?, known(i.denominator?)?)))
        .fold((0u64, 0u64), |(n, d), (v, dv)| {
            (n.saturating_add(v), d.saturating_add(dv))
        });
    let funnel_target = (den > 0).then(|| num as f64 / den as f64);
    if let Some(target) = funnel_target {
        for (site, input) in sites.iter_mut().zip(inputs) {
            let (Some(share), Some(Count::Value(n))) = (site.share, input.denominator) else {
                continue;
            };
            let limits = funnel_limits(target, n);
            site.funnel_flag = flag(share, &limits);
            site.funnel_limits = Some(limits);
        }
    }

    PeriodComparison {
        sites,
        value_summary,
        rate_summary,
        share_summary,
        funnel_target,
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn summarise(
    scratch: &mut Vec<f64>,
    values: impl Iterator<Item = f64>,
    suppressed: u32,
) -> Summary {
    scratch.clear();
    scratch.extend(values);
    let median = median(scratch);
    // `median` sorted the buffer.
    Summary {
        median,
        min: scratch.first().copied(),
        max: scratch.last().copied(),
        known: count_u32(scratch.len()),
        suppressed,
    }
}

fn flag(share: f64, limits: &FunnelLimits) -> FunnelFlag {
    if share > limits.upper_998 {
        FunnelFlag::Above998
    } else if share < limits.lower_998 {
        FunnelFlag::Below998
    } else if share > limits.upper_95 {
        FunnelFlag::Above95
    } else if share < limits.lower_95 {
        FunnelFlag::Below95
    } else {
        FunnelFlag::Within
    }
}

/// Funnel-plot limits for a proportion `target` at denominator `n`, by the
/// normal approximation `p ± z·sqrt(p(1-p)/n)`, clamped to [0, 1].
/// With `n = 0` there is no information: the limits are the whole of [0, 1].
pub fn funnel_limits(target: f64, n: u64) -> FunnelLimits {
    let p = target.clamp(0.0, 1.0);
    if n == 0 {
        return FunnelLimits {
            lower_95: 0.0,
            upper_95: 1.0,
            lower_998: 0.0,
            upper_998: 1.0,
        };
    }
    let se = (p * (1.0 - p) / n as f64).sqrt();
    let limit = |z: f64| ((p - z * se).clamp(0.0, 1.0), (p + z * se).clamp(0.0, 1.0));
    let (lower_95, upper_95) = limit(Z_95);
    let (lower_998, upper_998) = limit(Z_998);
    FunnelLimits {
        lower_95,
        upper_95,
        lower_998,
        upper_998,
    }
}

/// Median of `values` (the mean of the middle two for an even count); sorts
/// `values` in place. `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Which way a series is heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrendDirection {
    /// Fewer than [`MIN_TREND_POINTS`] known points.
    Insufficient,
    /// Slope above the flat band.
    Rising,
    /// Slope below the flat band.
    Falling,
    /// `|slope|` at most [`FLAT_FRACTION`] of the mean level per period.
    Flat,
}

/// A series' least-squares trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Change per period of the least-squares line; `None` when insufficient.
    pub slope_per_period: Option<f64>,
    /// The direction.
    pub direction: TrendDirection,
    /// How many points were known (not suppressed or missing).
    pub points_known: u32,
}

/// The fewest known points a trend is drawn from: two points are a difference, not a trend.
pub const MIN_TREND_POINTS: u32 = 3;
/// A slope within this fraction of the mean level per period counts as flat (1%).
pub const FLAT_FRACTION: f64 = 0.01;

/// The least-squares trend of `points`, given in period order (`None` for a
/// suppressed or missing period). Known points keep their period positions,
/// so a gap does not bend the time axis.
pub fn trend(points: &[Option<f64>]) -> Trend {
    let (mut n, mut sx, mut sy) = (0u32, 0.0, 0.0);
    for (x, y) in points
        .iter()
        .enumerate()
        .filter_map(|(x, y)| Some((x as f64, (*y)?)))
    {
        n += 1;
        sx += x;
        sy += y;
    }
    if n < MIN_TREND_POINTS {
        return Trend {
            slope_per_period: None,
            direction: TrendDirection::Insufficient,
            points_known: n,
        };
    }
    let (mx, my) = (sx / f64::from(n), sy / f64::from(n));
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points
        .iter()
        .enumerate()
        .filter_map(|(x, y)| Some((x as f64, (*y)?)))
    {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    // n >= 3 distinct positions, so sxx > 0.
    let slope = sxy / sxx;
    let direction = if slope.abs() <= FLAT_FRACTION * my.abs() {
        TrendDirection::Flat
    } else if slope > 0.0 {
        TrendDirection::Rising
    } else {
        TrendDirection::Falling
    };
    Trend {
        slope_per_period: Some(slope),
        direction,
        points_known: n,
    }
}

/// An estimate of cost avoided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostAvoided {
    /// Sum of count × unit cost over known counts, in pence.
    pub pence: u64,
    /// Some counts were suppressed and add nothing: the true figure is higher.
    pub partial: bool,
}

/// Sums `count × unit cost (pence)`; suppressed counts add nothing and mark the result partial.
pub fn cost_avoided(items: &[(Count, u64)]) -> CostAvoided {
    let mut total = CostAvoided {
        pence: 0,
        partial: false,
    };
    for &(count, unit_pence) in items {
        match count {
            Count::Value(v) => {
                total.pence = total.pence.saturating_add(v.saturating_mul(unit_pence))
            }
            // A figure not in this kind of release is unknown here too.
            Count::Suppressed | Count::NotReleased => total.partial = true,
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use Count::{Suppressed as S, Value as V};

    fn site(
        code: &str,
        population: u64,
        value: Count,
        denominator: Option<Count>,
    ) -> SiteInput<'_> {
        SiteInput {
            site_code: code,
            adult_population: population,
            value,
            denominator,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn rates_ranks_and_summaries_by_hand() {
        let inputs = [
            site("A", 100_000, V(50), None),  // 5.0 per 10k
            site("B", 200_000, V(100), None), // 5.0 per 10k (tie)
            site("C", 50_000, V(40), None),   // 8.0 per 10k
            site("D", 80_000, S, None),
            site("E", 0, V(10), None), // no population: no rate
        ];
        let c = compare_period(&inputs);
        let codes: Vec<&str> = c.sites.iter().map(|s| s.site_code.as_str()).collect();
        assert_eq!(codes, ["A", "B", "C", "D", "E"]);
        assert_eq!(c.sites[0].rate_per_10k, Some(5.0));
        assert_eq!(c.sites[2].rate_per_10k, Some(8.0));
        let ranks: Vec<Option<u32>> = c.sites.iter().map(|s| s.rank).collect();
        assert_eq!(ranks, [Some(2), Some(2), Some(1), None, None]);
        // The suppressed site stays suppressed and out of every statistic.
        assert_eq!(c.sites[3].value, S);
        assert_eq!(c.sites[3].rate_per_10k, None);
        assert_eq!(
            c.value_summary,
            Summary {
                median: Some(45.0),
                min: Some(10.0),
                max: Some(100.0),
                known: 4,
                suppressed: 1
            }
        );
        assert_eq!(
            c.rate_summary,
            Summary {
                median: Some(5.0),
                min: Some(5.0),
                max: Some(8.0),
                known: 3,
                suppressed: 1
            }
        );
        assert_eq!(c.share_summary.known, 0);
        assert_eq!(c.funnel_target, None);
        assert!(
            c.sites
                .iter()
                .all(|s| s.funnel_flag == FunnelFlag::NotApplicable)
        );
    }

    #[test]
    fn competition_ranking_skips_after_a_tie() {
        let inputs = [
            site("A", 10_000, V(30), None),
            site("B", 10_000, V(20), None),
            site("C", 20_000, V(40), None),
            site("D", 10_000, V(10), None),
        ];
        let ranks: Vec<Option<u32>> = compare_period(&inputs)
            .sites
            .iter()
            .map(|s| s.rank)
            .collect();
        assert_eq!(ranks, [Some(1), Some(2), Some(2), Some(4)]);
    }

    #[test]
    fn shares_and_funnel_flags_by_hand() {
        // Pooled: (110 + 200 + 300 + 10) / (1000 + 2000 + 2000 + 100) = 620 / 5100 = 0.1216.
        let inputs = [
            site("A", 1, V(110), Some(V(1000))), // 0.11: 95% limits at n=1000 are 0.1013..0.1418
            site("B", 1, V(200), Some(V(2000))), // 0.10: 95% low 0.1072, 99.8% low 0.0990
            site("C", 1, V(300), Some(V(2000))), // 0.15: 99.8% high 0.1441
            site("D", 1, V(10), Some(V(100))),
            site("E", 1, S, Some(V(500))),
            site("F", 1, V(20), Some(S)),
            site("G", 1, V(0), Some(V(0))),
        ];
        let c = compare_period(&inputs);
        let target = 620.0 / 5100.0;
        assert!(close(c.funnel_target.unwrap(), target));
        assert_eq!(c.sites[0].share, Some(0.11));
        assert_eq!(c.sites[2].share, Some(0.15));
        let limits_c = c.sites[2].funnel_limits.unwrap();
        let se = (target * (1.0 - target) / 2000.0).sqrt();
        assert!(close(limits_c.upper_998, target + 3.090232 * se));
        assert!(close(limits_c.lower_95, target - 1.959964 * se));
        assert!(
            0.15 > limits_c.upper_998,
            "the example must sit outside the 99.8% limit"
        );
        assert_eq!(c.sites[2].funnel_flag, FunnelFlag::Above998);
        assert_eq!(c.sites[0].funnel_flag, FunnelFlag::Within);
        assert_eq!(c.sites[1].funnel_flag, FunnelFlag::Below95);
        assert_eq!(c.sites[3].funnel_flag, FunnelFlag::Within);
        for i in [4, 5, 6] {
            assert_eq!(c.sites[i].share, None);
            assert_eq!(c.sites[i].funnel_flag, FunnelFlag::NotApplicable);
            assert_eq!(c.sites[i].funnel_limits, None);
        }
        assert_eq!(c.share_summary.known, 4);
        assert_eq!(c.share_summary.suppressed, 2);
        assert!(close(c.share_summary.median.unwrap(), 0.105));
        assert_eq!(c.share_summary.min, Some(0.1));
        assert_eq!(c.share_summary.max, Some(0.15));
    }

    #[test]
    fn funnel_limits_by_hand_and_clamped() {
        let l = funnel_limits(0.5, 100);
        assert!(close(l.upper_95, 0.5 + 1.959964 * 0.05));
        assert!(close(l.lower_998, 0.5 - 3.090232 * 0.05));
        let l = funnel_limits(0.01, 10);
        assert_eq!(l.lower_95, 0.0);
        assert_eq!(l.lower_998, 0.0);
        assert!(l.upper_998 < 1.0);
        assert_eq!(funnel_limits(0.3, 0).upper_998, 1.0);
        let l = funnel_limits(0.4, 1000);
        assert_eq!(flag(0.30, &l), FunnelFlag::Below998);
        // se = sqrt(0.24 / 1000) = 0.0155: 95% is 0.3696..0.4304, 99.8% is 0.3521..0.4479.
        assert_eq!(flag(0.36, &l), FunnelFlag::Below95);
        assert_eq!(flag(0.44, &l), FunnelFlag::Above95);
        assert_eq!(flag(0.45, &l), FunnelFlag::Above998);
        assert_eq!(flag(0.40, &l), FunnelFlag::Within);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn trends() {
        let rising = trend(&[Some(10.0), Some(12.0), None, Some(16.0)]);
        assert_eq!(rising.direction, TrendDirection::Rising);
        assert!(
            close(rising.slope_per_period.unwrap(), 2.0),
            "the gap keeps its period position"
        );
        assert_eq!(rising.points_known, 3);
        let falling = trend(&[Some(30.0), Some(20.0), Some(10.0)]);
        assert_eq!(falling.direction, TrendDirection::Falling);
        assert!(close(falling.slope_per_period.unwrap(), -10.0));
        // 0.5 per period on a level of 100 is within 1%.
        let flat = trend(&[Some(100.0), Some(100.5), Some(101.0)]);
        assert_eq!(flat.direction, TrendDirection::Flat);
        assert_eq!(
            trend(&[Some(0.0), Some(0.0), Some(0.0)]).direction,
            TrendDirection::Flat
        );
        let few = trend(&[Some(1.0), None, Some(5.0), None]);
        assert_eq!(
            few,
            Trend {
                slope_per_period: None,
                direction: TrendDirection::Insufficient,
                points_known: 2
            }
        );
        assert_eq!(trend(&[]).direction, TrendDirection::Insufficient);
    }

    #[test]
    fn cost_avoided_is_partial_when_anything_is_suppressed() {
        let full = cost_avoided(&[(V(10), 1_000), (V(0), 5_000), (V(5), 200)]);
        assert_eq!(
            full,
            CostAvoided {
                pence: 11_000,
                partial: false
            }
        );
        let partial = cost_avoided(&[(V(10), 1_000), (S, 5_000)]);
        assert_eq!(
            partial,
            CostAvoided {
                pence: 10_000,
                partial: true
            }
        );
        assert_eq!(cost_avoided(&[(V(u64::MAX), 2)]).pence, u64::MAX);
    }
}
