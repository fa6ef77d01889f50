//! The report as data: fetched from the hub's Reports API and flattened into
//! plain, serialisable structs that every renderer shares.

use lacnet_core::{Granularity, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{period_from_proto, period_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use serde::{Serialize, Serializer};
use tonic::transport::Channel;

use crate::error::{CliError, Service};

/// Metrics drawn as trend lines in a network summary report.
pub const TREND_METRICS: &[&str] = &[
    "people_new",
    "support_level.level_2",
    "outcome.community_connection",
    "outcome.alternative_to_day_services",
];

/// Trend metrics of a Level 2 summary.
pub const LEVEL_2_TREND_METRICS: &[&str] = &[
    "level_2.people_new",
    "level_2.people_active",
    "level_2.outcome.community_connection",
    "level_2.outcome.alternative_to_day_services",
];

/// A period in an analyst's words: `FY2024` is "financial year 2024/25
/// (1 April 2024 to 31 March 2025)", `PTD2024-07` "programme to date (from
/// each site's start to 31 July 2024)".
pub fn describe_period(p: Period) -> String {
    match p.granularity() {
        Granularity::FinancialYear => format!(
            "{p}: financial year {}/{:02} ({} to {})",
            p.year(),
            (p.year() + 1) % 100,
            p.start(),
            p.end()
        ),
        Granularity::ProgrammeToDate => format!(
            "{p}: programme to date (from each site's programme start to {})",
            p.end()
        ),
        Granularity::Quarter => format!("{p} ({} to {})", p.start(), p.end()),
        Granularity::Month => p.to_string(),
    }
}

/// A published count: a value, or the suppression marker (which may stand for 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountView {
    /// A (rounded) value.
    Value(u64),
    /// Withheld by disclosure control.
    Suppressed,
    /// Not published for this kind of period (a month carries the headline
    /// figures, a financial year every breakdown).
    NotReleased,
}

impl CountView {
    fn from_proto(c: Option<&pb::Count>) -> Option<CountView> {
        match c.and_then(|c| c.kind) {
            Some(pb::count::Kind::Value(v)) => Some(CountView::Value(v)),
            Some(pb::count::Kind::Suppressed(_)) => Some(CountView::Suppressed),
            Some(pb::count::Kind::NotReleased(_)) => Some(CountView::NotReleased),
            None => None,
        }
    }

    /// The value, if not suppressed.
    pub fn value(self) -> Option<u64> {
        match self {
            CountView::Value(v) => Some(v),
            CountView::Suppressed | CountView::NotReleased => None,
        }
    }
}

impl std::fmt::Display for CountView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CountView::Value(v) => write!(f, "{v}"),
            CountView::Suppressed => f.write_str("suppressed"),
            CountView::NotReleased => f.write_str("not released"),
        }
    }
}

/// JSON: a number, the string `"suppressed"`, or `"not_released"`.
impl Serialize for CountView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CountView::Value(v) => s.serialize_u64(*v),
            CountView::Suppressed => s.serialize_str("suppressed"),
            CountView::NotReleased => s.serialize_str("not_released"),
        }
    }
}

/// A disclosure policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    /// Counts from 1 to this are suppressed.
    pub threshold: u32,
    /// Other counts are rounded to a multiple of this.
    pub rounding_base: u32,
    /// Whether complementary suppression is on.
    pub secondary_suppression: bool,
    /// The policy in words.
    pub text: String,
}

/// A policy in words, e.g. "counts 1-7 suppressed, others rounded to the nearest 5, secondary suppression on".
pub fn policy_text(p: &pb::DisclosurePolicy) -> String {
    let suppress = if p.threshold == 0 {
        "no small-count suppression".to_owned()
    } else {
        format!("counts 1-{} suppressed", p.threshold)
    };
    let round = if p.rounding_base <= 1 {
        "others exact".to_owned()
    } else {
        format!("others rounded to the nearest {}", p.rounding_base)
    };
    let secondary = if p.secondary_suppression { "on" } else { "off" };
    format!("{suppress}, {round}, secondary suppression {secondary}")
}

impl PolicyView {
    fn from_proto(p: &pb::DisclosurePolicy) -> PolicyView {
        PolicyView {
            threshold: p.threshold,
            rounding_base: p.rounding_base,
            secondary_suppression: p.secondary_suppression,
            text: policy_text(p),
        }
    }
}

/// A site in the registry.
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    /// ONS code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Adult (18+) residents: the denominator of rates per 10,000.
    pub adult_population: u64,
    /// The disclosure policy of its latest submission.
    pub policy: Option<PolicyView>,
    /// The period of its latest submission.
    pub last_period: Option<String>,
    /// The day (YYYY-MM-DD) that submission was published at the hub: the
    /// only timing an analyst sees (no revision numbers, no times).
    pub last_published_on: Option<String>,
    /// Whether that submission replaced an earlier release (revised).
    pub last_revised: bool,
}

/// What a metric is.
#[derive(Debug, Clone, Serialize)]
pub struct MetricInfoView {
    /// Stable id, e.g. `outcome.volunteering`.
    pub id: String,
    /// Label for readers.
    pub label: String,
    /// The table it belongs to.
    pub group: String,
    /// Whether it is a proportion of another metric.
    pub proportion: bool,
    /// For proportions, the denominator metric.
    pub denominator: Option<String>,
    /// Agreed unit cost per person, in pence.
    pub unit_cost_pence: Option<u64>,
    /// Why the outcome is left out of cost avoided, when it is.
    pub unit_cost_excluded_reason: Option<String>,
    /// Over a financial year or the programme to date: `sum` (events, the
    /// span is the sum of its quarters) or `distinct` (people, each counted
    /// once over the span; never add the quarters up) or `at_end`.
    pub across_periods: String,
    /// `level_1` or `level_2` for the per-level figures; absent for all levels.
    pub support_level: Option<String>,
}

impl MetricInfoView {
    fn from_proto(m: Option<&hub::MetricInfo>) -> MetricInfoView {
        let m = m.cloned().unwrap_or_default();
        MetricInfoView {
            proportion: m.kind == hub::MetricKind::Proportion as i32,
            denominator: (!m.denominator.is_empty()).then_some(m.denominator),
            unit_cost_pence: m.unit_cost_pence,
            unit_cost_excluded_reason: (!m.unit_cost_excluded_reason.is_empty())
                .then_some(m.unit_cost_excluded_reason),
            across_periods: m.across_periods,
            support_level: (!m.support_level.is_empty()).then_some(m.support_level),
            id: m.id,
            label: m.label,
            group: m.group,
        }
    }
}

/// Funnel-plot control limits at one site's denominator.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    /// Lower 95% limit.
    pub lower_95: f64,
    /// Upper 95% limit.
    pub upper_95: f64,
    /// Lower 99.8% limit.
    pub lower_998: f64,
    /// Upper 99.8% limit.
    pub upper_998: f64,
}

/// One site's value of one metric in one period.
#[derive(Debug, Clone, Serialize)]
pub struct SiteValue {
    /// ONS code.
    pub site_code: String,
    /// Name.
    pub site_name: String,
    /// The published count.
    pub value: CountView,
    /// The denominator's published count (proportions).
    pub denominator: Option<CountView>,
    /// Per 10,000 adults; absent when suppressed.
    pub rate_per_10k: Option<f64>,
    /// value / denominator; absent when either is suppressed.
    pub share: Option<f64>,
    /// 1 = highest rate; absent when suppressed.
    pub rank: Option<u32>,
    /// Where the share falls on the funnel plot.
    pub funnel: Option<String>,
    /// The funnel limits at this site's denominator.
    pub limits: Option<Limits>,
    /// The adult population the rate divides by.
    pub adult_population: u64,
    /// The year of that population estimate; absent for an undated figure.
    pub population_year: Option<i32>,
}

/// One metric across sites in one period.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodView {
    /// `YYYY-Qn` or `YYYY-MM`.
    pub period: String,
    /// Every site that submitted.
    pub sites: Vec<SiteValue>,
    /// Network median of the counts.
    pub median_value: Option<f64>,
    /// Network median of the rates per 10,000.
    pub median_rate: Option<f64>,
    /// Network median of the shares.
    pub median_share: Option<f64>,
    /// The pooled proportion the funnel limits centre on.
    pub funnel_target: Option<f64>,
    /// Sites with a known value.
    pub sites_known: u32,
    /// Sites whose value is suppressed.
    pub sites_suppressed: u32,
}

fn funnel_name(flag: i32) -> Option<String> {
    let name = match hub::FunnelFlag::try_from(flag).ok()? {
        hub::FunnelFlag::Within => "within limits",
        hub::FunnelFlag::Above95 => "above 95% limit",
        hub::FunnelFlag::Below95 => "below 95% limit",
        hub::FunnelFlag::Above998 => "above 99.8% limit",
        hub::FunnelFlag::Below998 => "below 99.8% limit",
        _ => return None,
    };
    Some(name.to_owned())
}

fn period_name(p: Option<&pb::Period>) -> String {
    period_from_proto(p, "period").map_or_else(|_| "?".to_owned(), |p| p.to_string())
}

impl PeriodView {
    fn from_proto(c: &hub::PeriodComparison) -> PeriodView {
        let summary = |s: &Option<hub::Summary>| s.as_ref().and_then(|s| s.median);
        PeriodView {
            period: period_name(c.period.as_ref()),
            sites: c
                .sites
                .iter()
                .map(|s| {
                    let value =
                        CountView::from_proto(s.value.as_ref()).unwrap_or(CountView::Suppressed);
                    SiteValue {
                        site_code: s.site_code.clone(),
                        site_name: s.site_name.clone(),
                        value,
                        denominator: CountView::from_proto(s.denominator.as_ref()),
                        rate_per_10k: s.rate_per_10k,
                        share: s.share,
                        rank: (s.rank > 0).then_some(s.rank),
                        funnel: funnel_name(s.funnel_flag),
                        limits: s
                            .funnel_limits
                            .as_ref()
                            .filter(|_| s.share.is_some())
                            .map(|l| Limits {
                                lower_95: l.lower_95,
                                upper_95: l.upper_95,
                                lower_998: l.lower_998,
                                upper_998: l.upper_998,
                            }),
                        adult_population: s.adult_population,
                        population_year: (s.population_year != 0).then_some(s.population_year),
                    }
                })
                .collect(),
            median_value: summary(&c.value_summary),
            median_rate: summary(&c.rate_summary),
            median_share: summary(&c.share_summary),
            funnel_target: c.funnel_target,
            sites_known: c.value_summary.as_ref().map_or(0, |s| s.sites_known),
            sites_suppressed: c.value_summary.as_ref().map_or(0, |s| s.sites_suppressed),
        }
    }
}

/// One metric in the summary period.
#[derive(Debug, Clone, Serialize)]
pub struct MetricPeriod {
    /// The metric.
    pub metric: MetricInfoView,
    /// Its values across sites.
    pub comparison: PeriodView,
}

/// Estimated cost avoided at one site.
#[derive(Debug, Clone, Serialize)]
pub struct CostView {
    /// ONS code.
    pub site_code: String,
    /// Name.
    pub site_name: String,
    /// Pounds (a lower bound when `partial`).
    pub pounds: f64,
    /// Some outcome counts were suppressed, so this is a lower bound.
    pub partial: bool,
    /// The same for people supported at Level 2 alone.
    pub level_2_pounds: f64,
    /// Level 2's figure is a lower bound.
    pub level_2_partial: bool,
    /// Whether this kind of period carries the outcomes by level (months and
    /// quarters do not: Level 2's cost avoided is published for financial
    /// years and the programme to date).
    pub level_2_released: bool,
}

/// The network summary for one period.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryView {
    /// The period.
    pub period: String,
    /// The period in words, e.g. "financial year 2024/25 (1 April 2024 to 31 March 2025)".
    pub period_description: String,
    /// Whether only the Level 2 figures are shown.
    pub level_2_only: bool,
    /// Outcomes left out of cost avoided, with the reason (`(label, reason)`).
    pub cost_exclusions: Vec<(String, String)>,
    /// Sites that submitted for it.
    pub sites_submitted: u32,
    /// Every metric.
    pub metrics: Vec<MetricPeriod>,
    /// Cost avoided by site.
    pub cost_avoided: Vec<CostView>,
    /// Network total, pounds.
    pub network_cost_avoided_pounds: f64,
}

/// One site's trend.
#[derive(Debug, Clone, Serialize)]
pub struct TrendView {
    /// ONS code.
    pub site_code: String,
    /// rising, falling, flat or insufficient.
    pub direction: String,
    /// Least-squares slope of the rate per 10,000, per period.
    pub slope_per_period: Option<f64>,
    /// Periods with a known value.
    pub points_known: u32,
}

/// One metric over a range of periods.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonView {
    /// The metric.
    pub metric: MetricInfoView,
    /// Each period, oldest first.
    pub periods: Vec<PeriodView>,
    /// Each site's trend.
    pub trends: Vec<TrendView>,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What this report is.
    pub title: String,
    /// The day it was pulled (UTC): a day, like every date in a report.
    pub pulled_on: String,
    /// The policy every submission must meet.
    pub network_policy: Option<PolicyView>,
    /// The registry's sites and each one's policy.
    pub sites: Vec<SiteView>,
    /// The network summary, when asked for.
    pub summary: Option<SummaryView>,
    /// Metrics over a range of periods.
    pub comparisons: Vec<ComparisonView>,
}

/// What to pull.
#[derive(Debug, Clone)]
pub enum Request {
    /// The network summary for a period (the latest submitted if `None`), with
    /// trends of [`TREND_METRICS`] over the `trend_periods` periods ending there.
    Summary {
        /// The period.
        period: Option<Period>,
        /// How many periods the trend lines cover.
        trend_periods: u32,
        /// Show the Level 2 figures alone (the like-for-like figure sites quote).
        level_2: bool,
    },
    /// One metric across sites over `[from, to]`.
    Metric {
        /// Metric id.
        metric: String,
        /// First period.
        from: Period,
        /// Last period.
        to: Period,
    },
}

/// `p` moved back by `n` periods.
pub fn periods_before(p: Period, n: u32) -> Period {
    let per_year: i64 = match p.granularity() {
        Granularity::Month | Granularity::ProgrammeToDate => 12,
        Granularity::Quarter => 4,
        Granularity::FinancialYear => 1,
    };
    let ordinal = i64::from(p.year()) * per_year + i64::from(p.index()) - 1 - i64::from(n);
    let year = i32::try_from(ordinal.div_euclid(per_year)).unwrap_or(p.year());
    let index = u32::try_from(ordinal.rem_euclid(per_year) + 1).unwrap_or(1);
    Period::new(p.granularity(), year, index).unwrap_or(p)
}

/// Pulls the report from the hub.
pub async fn fetch(
    client: &mut ReportsClient<Channel>,
    url: &str,
    request: &Request,
    now_unix: i64,
) -> Result<Report, CliError> {
    let fail = |s: tonic::Status| Service::Hub.status_error(url, s);
    let sites = client
        .list_sites(hub::ListSitesRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    let site_views: Vec<SiteView> = sites
        .sites
        .iter()
        .map(|s| SiteView {
            code: s.code.clone(),
            name: s.name.clone(),
            adult_population: s.adult_population,
            policy: s.policy.as_ref().map(PolicyView::from_proto),
            last_period: s
                .last_submission
                .as_ref()
                .map(|r| period_name(r.period.as_ref())),
            last_published_on: s
                .last_submission
                .as_ref()
                .map(|r| r.published_on.clone())
                .filter(|d| !d.is_empty()),
            last_revised: s.last_submission.as_ref().is_some_and(|r| r.revised),
        })
        .collect();
    let mut report = Report {
        title: String::new(),
        pulled_on: lacnet_core::Date::from_unix_seconds(now_unix).to_string(),
        network_policy: sites.network_policy.as_ref().map(PolicyView::from_proto),
        sites: site_views,
        summary: None,
        comparisons: Vec::new(),
    };
    match request {
        Request::Summary {
            period,
            trend_periods,
            level_2,
        } => {
            let period = match period {
                Some(p) => *p,
                None => latest_period(&sites)?,
            };
            let reply = client
                .network_summary(hub::NetworkSummaryRequest {
                    period: Some(period_to_proto(period)),
                })
                .await
                .map_err(fail)?
                .into_inner();
            let mut summary = summary_view(&reply, &report.sites);
            let trend_metrics = if *level_2 {
                // Level 2 alone: the per-level figures, and Level 2's share of introductions.
                summary.metrics.retain(|m| {
                    m.metric.support_level.as_deref() == Some("level_2")
                        || m.metric.id == "support_level.level_2"
                });
                summary.level_2_only = true;
                LEVEL_2_TREND_METRICS
            } else {
                TREND_METRICS
            };
            report.title = format!(
                "LAC Network summary{}, {}",
                if *level_2 { ", Level 2 alone" } else { "" },
                summary.period_description
            );
            report.summary = Some(summary);
            let from = periods_before(period, trend_periods.saturating_sub(1));
            for metric in trend_metrics {
                report
                    .comparisons
                    .push(compare(client, url, metric, from, period).await?);
            }
        }
        Request::Metric { metric, from, to } => {
            let c = compare(client, url, metric, *from, *to).await?;
            report.title = format!("{}, {from} to {to}", c.metric.label);
            report.comparisons.push(c);
        }
    }
    Ok(report)
}

async fn compare(
    client: &mut ReportsClient<Channel>,
    url: &str,
    metric: &str,
    from: Period,
    to: Period,
) -> Result<ComparisonView, CliError> {
    let c = client
        .compare_metric(hub::CompareMetricRequest {
            metric: metric.to_owned(),
            from: Some(period_to_proto(from)),
            to: Some(period_to_proto(to)),
        })
        .await
        .map_err(|s| Service::Hub.status_error(url, s))?
        .into_inner();
    Ok(ComparisonView {
        metric: MetricInfoView::from_proto(c.metric.as_ref()),
        periods: c.periods.iter().map(PeriodView::from_proto).collect(),
        trends: c
            .trends
            .iter()
            .map(|t| TrendView {
                site_code: t.site_code.clone(),
                direction: match hub::TrendDirection::try_from(t.direction) {
                    Ok(hub::TrendDirection::Rising) => "rising",
                    Ok(hub::TrendDirection::Falling) => "falling",
                    Ok(hub::TrendDirection::Flat) => "flat",
                    _ => "insufficient data",
                }
                .to_owned(),
                slope_per_period: t.slope_per_period,
                points_known: t.points_known,
            })
            .collect(),
    })
}

fn latest_period(sites: &hub::ListSitesResponse) -> Result<Period, CliError> {
    sites
        .sites
        .iter()
        .filter_map(|s| s.last_submission.as_ref())
        .filter_map(|r| period_from_proto(r.period.as_ref(), "period").ok())
        // The latest month or quarter: sites publish their financial year and
        // programme to date alongside it, and those are asked for by name.
        .max_by_key(|p| (!p.is_span(), p.end(), p.ordinal()))
        .ok_or_else(|| {
            CliError::Invalid(
                "no site has submitted anything yet, so there is no latest period: pass --period"
                    .into(),
            )
        })
}

fn summary_view(r: &hub::NetworkSummaryResponse, sites: &[SiteView]) -> SummaryView {
    let name = |code: &str| {
        sites
            .iter()
            .find(|s| s.code == code)
            .map_or_else(|| code.to_owned(), |s| s.name.clone())
    };
    let cost_exclusions = r
        .metrics
        .iter()
        .filter_map(|m| m.metric.as_ref())
        .filter(|m| m.group == "outcome" && !m.unit_cost_excluded_reason.is_empty())
        .map(|m| (m.label.clone(), m.unit_cost_excluded_reason.clone()))
        .collect();
    SummaryView {
        period: period_name(r.period.as_ref()),
        period_description: period_from_proto(r.period.as_ref(), "period")
            .map_or_else(|_| "?".to_owned(), describe_period),
        level_2_only: false,
        cost_exclusions,
        sites_submitted: r.sites_submitted,
        metrics: r
            .metrics
            .iter()
            .map(|m| MetricPeriod {
                metric: MetricInfoView::from_proto(m.metric.as_ref()),
                comparison: m
                    .comparison
                    .as_ref()
                    .map(PeriodView::from_proto)
                    .unwrap_or_else(|| PeriodView::from_proto(&hub::PeriodComparison::default())),
            })
            .collect(),
        cost_avoided: r
            .cost_avoided
            .iter()
            .map(|c| CostView {
                level_2_released: period_from_proto(r.period.as_ref(), "period").is_ok_and(|p| {
                    lacnet_core::release::carries(
                        p.granularity(),
                        lacnet_core::metrics::level_outcome(
                            lacnet_core::vocab::SupportLevel::Level2,
                            lacnet_core::vocab::Outcome::ALL[0],
                        ),
                    )
                }),
                site_name: name(&c.site_code),
                site_code: c.site_code.clone(),
                pounds: c.cost_avoided_pence as f64 / 100.0,
                partial: c.partial,
                level_2_pounds: c.level_2_cost_avoided_pence as f64 / 100.0,
                level_2_partial: c.level_2_partial,
            })
            .collect(),
        network_cost_avoided_pounds: r.network_cost_avoided_pence as f64 / 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_step_back_across_years() {
        let q = Period::parse("2016-Q1").unwrap();
        assert_eq!(periods_before(q, 7).to_string(), "2014-Q2");
        let m = Period::parse("2016-02").unwrap();
        assert_eq!(periods_before(m, 3).to_string(), "2015-11");
    }

    #[test]
    fn spans_read_as_analysts_say_them_and_never_win_the_latest_period() {
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(
            describe_period(p("FY2024")),
            "FY2024: financial year 2024/25 (2024-04-01 to 2025-03-31)"
        );
        assert!(describe_period(p("PTD2024-07")).contains("programme to date"));
        assert_eq!(periods_before(p("FY2024"), 2).to_string(), "FY2022");
        let site = |period: &str| hub::SiteInfo {
            last_submission: Some(hub::SubmissionRef {
                period: Some(period_to_proto(p(period))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sites = hub::ListSitesResponse {
            sites: vec![
                site("PTD2025-03"),
                site("2025-Q1"),
                site("FY2024"),
                site("2024-Q4"),
            ],
            ..Default::default()
        };
        assert_eq!(latest_period(&sites).unwrap(), p("2025-Q1"));
    }

    #[test]
    fn suppressed_serialises_as_a_marker_not_zero() {
        let json = serde_json::to_string(&[CountView::Value(0), CountView::Suppressed]).unwrap();
        assert_eq!(json, "[0,\"suppressed\"]");
    }
}
