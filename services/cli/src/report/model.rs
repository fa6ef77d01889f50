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

/// A period as typed on the command line.
pub fn parse_period(s: &str) -> Result<Period, CliError> {
    Period::parse(s).map_err(|source| CliError::Period {
        value: s.to_owned(),
        source,
    })
}

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
    /// The latest month or quarter (its series) it has published: the
    /// period a comparison is drawn for, and what the default period is
    /// chosen from.
    pub latest_period: Option<String>,
    /// The latest month or quarter in which it published a count of people
    /// newly introduced (above zero): the default period is chosen from these.
    pub latest_with_figures: Option<String>,
    /// The first day its code was in use, when the registry limits it.
    pub valid_from: Option<String>,
    /// The last day its code was in use, when the registry limits it.
    pub valid_until: Option<String>,
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
    /// The registry marks the population as approximate.
    pub population_approximate: bool,
    /// What a reader must know about the denominator, e.g. "mid-2022
    /// estimate, approximate; the period is in 2015"; absent when it is the
    /// published estimate for the period's own year.
    pub population_note: Option<String>,
}

/// The caveat on a rate's denominator, if any: undated, approximate, or an
/// estimate for another year than the period's.
pub fn population_note(
    period: Option<Period>,
    year: Option<i32>,
    approximate: bool,
) -> Option<String> {
    let other_year = match (period, year) {
        (Some(p), Some(y)) if y != p.population_year() => Some(p.population_year()),
        _ => None,
    };
    let mut note = match year {
        Some(_) if !approximate && other_year.is_none() => return None,
        Some(y) => format!(
            "{}mid-{y} estimate",
            if approximate { "approximate " } else { "" }
        ),
        None => format!(
            "{}undated registry figure",
            if approximate { "approximate " } else { "" }
        ),
    };
    if let Some(py) = other_year {
        note.push_str(&format!(", for a {py} period"));
    }
    Some(note)
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
        let period = period_from_proto(c.period.as_ref(), "period").ok();
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
                        population_approximate: s.population_approximate,
                        population_note: population_note(
                            period,
                            (s.population_year != 0).then_some(s.population_year),
                            s.population_approximate,
                        ),
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
    /// Name.
    pub site_name: String,
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
    /// How the period was chosen when none was asked for, in words.
    pub period_rule: Option<String>,
    /// What a reader must know before reading the figures: why a period has
    /// no data, and the caveats of the denominators.
    pub notes: Vec<String>,
    /// Every figure the report shows, defined.
    pub glossary: Vec<GlossaryEntry>,
}

/// One figure in the glossary, from the metric catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct GlossaryEntry {
    /// Stable id, e.g. `people_new`.
    pub id: String,
    /// Its label in the report.
    pub label: String,
    /// What it counts.
    pub description: String,
}

impl Report {
    /// The glossary with the figures that share a definition (every outcome,
    /// say) listed together, in the order they first appear.
    pub fn glossary_grouped(&self) -> Vec<(Vec<&str>, &str)> {
        let mut out: Vec<(Vec<&str>, &str)> = Vec::new();
        for g in &self.glossary {
            match out.iter_mut().find(|(_, d)| *d == g.description) {
                Some((labels, _)) => labels.push(&g.label),
                None => out.push((vec![&g.label], &g.description)),
            }
        }
        out
    }

    /// Whether the hub had nothing for what was asked: no site's figure in
    /// the summary's period (its trend lines do not count: they end there),
    /// or, for one metric over a range, in any period of it.
    pub fn nothing_found(&self) -> bool {
        match &self.summary {
            Some(s) => s.sites_submitted == 0,
            None => self
                .comparisons
                .iter()
                .all(|c| c.periods.iter().all(|p| p.sites.is_empty())),
        }
    }
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
    let sites = client
        .list_sites(hub::ListSitesRequest {})
        .await
        .map_err(|s| Service::Hub.status_error(url, s))?
        .into_inner();
    let mut site_views: Vec<SiteView> = sites.sites.iter().map(SiteView::from_proto).collect();
    let today = lacnet_core::Date::from_unix_seconds(now_unix);
    fill_latest_with_figures(client, url, &mut site_views).await?;
    let mut report = Report {
        title: String::new(),
        pulled_on: today.to_string(),
        network_policy: sites.network_policy.as_ref().map(PolicyView::from_proto),
        sites: site_views,
        summary: None,
        comparisons: Vec::new(),
        period_rule: None,
        notes: Vec::new(),
        glossary: Vec::new(),
    };
    match request {
        Request::Summary {
            period,
            trend_periods,
            level_2,
        } => {
            let period = match period {
                Some(p) => *p,
                None => match default_period(&report.sites) {
                    Some((p, rule)) => {
                        report.period_rule = Some(rule);
                        p
                    }
                    None => {
                        report.title = "LAC Network summary: nothing published yet".into();
                        report.notes.push(
                            "No site has published anything to the hub yet. A site agent publishes a period once it \
                             has closed and its embargo (14 days by default) has passed, a few seconds after an \
                             import settles; `lacnet report --wait 60` waits for it."
                                .into(),
                        );
                        return Ok(report);
                    }
                },
            };
            let span = (period, *trend_periods, *level_2);
            fill_summary(client, url, &mut report, span, today).await?;
        }
        Request::Metric { metric, from, to } => {
            let c = compare(client, url, metric, *from, *to, &report.sites).await?;
            report.title = format!("{}, {from} to {to}", c.metric.label);
            if c.periods.iter().all(|p| p.sites.is_empty()) {
                for p in [*from, *to] {
                    report.notes.extend(explain_empty(p, &report.sites, today));
                }
                report.notes.dedup();
            }
            report.comparisons.push(c);
        }
    }
    report.glossary = glossary(&report);
    Ok(report)
}

/// The network summary for `period` and the trend lines over the
/// `trend_periods` up to it (Level 2 alone if asked), into `report`.
async fn fill_summary(
    client: &mut ReportsClient<Channel>,
    url: &str,
    report: &mut Report,
    (period, trend_periods, level_2): (Period, u32, bool),
    today: lacnet_core::Date,
) -> Result<(), CliError> {
    let reply = client
        .network_summary(hub::NetworkSummaryRequest {
            period: Some(period_to_proto(period)),
        })
        .await
        .map_err(|s| Service::Hub.status_error(url, s))?
        .into_inner();
    let mut summary = summary_view(&reply, &report.sites);
    if summary.sites_submitted == 0 {
        report
            .notes
            .extend(explain_empty(period, &report.sites, today));
    }
    report.notes.extend(denominator_note(&summary));
    let trend_metrics = if level_2 {
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
        if level_2 { ", Level 2 alone" } else { "" },
        summary.period_description
    );
    report.summary = Some(summary);
    let from = periods_before(period, trend_periods.saturating_sub(1));
    for metric in trend_metrics {
        report
            .comparisons
            .push(compare(client, url, metric, from, period, &report.sites).await?);
    }
    Ok(())
}

impl SiteView {
    fn from_proto(s: &hub::SiteInfo) -> SiteView {
        SiteView {
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
            latest_period: s
                .latest_series_period
                .as_ref()
                .map(|p| period_name(Some(p))),
            latest_with_figures: None,
            valid_from: (!s.valid_from.is_empty()).then(|| s.valid_from.clone()),
            valid_until: (!s.valid_until.is_empty()).then(|| s.valid_until.clone()),
        }
    }
}

/// One line naming each site's denominator and its caveat, when any rate in
/// the summary divides by an approximate, undated or other year's figure.
fn denominator_note(summary: &SummaryView) -> Option<String> {
    // (site, population, caveat), each site once.
    let mut seen: Vec<(&str, u64, Option<&str>)> = Vec::new();
    for s in summary
        .metrics
        .iter()
        .flat_map(|m| m.comparison.sites.iter())
    {
        if !seen.iter().any(|(name, _, _)| *name == s.site_name) {
            seen.push((
                &s.site_name,
                s.adult_population,
                s.population_note.as_deref(),
            ));
        }
    }
    if seen.iter().all(|(_, _, note)| note.is_none()) {
        return None;
    }
    let figure = |(name, n, _): &(&str, u64, Option<&str>)| {
        format!("{name} {}", crate::report::table::thousands(*n))
    };
    let first = seen[0].2;
    let listed = if seen.iter().all(|(_, _, note)| *note == first) {
        format!(
            "each an {}: {}",
            first.unwrap_or_default(),
            seen.iter().map(figure).collect::<Vec<_>>().join(", ")
        )
    } else {
        seen.iter()
            .map(|x| {
                format!(
                    "{} ({})",
                    figure(x),
                    x.2.unwrap_or("the estimate for the period's year")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(format!(
        "Rates per 10,000 divide by the adult (18+) populations in the hub's registry, {listed}. \
         Compare rates with care: an approximate population, or another year's, moves every rate."
    ))
}

/// Every figure the report shows, defined from the metric catalogue.
fn glossary(report: &Report) -> Vec<GlossaryEntry> {
    let catalogue = lacnet_core::metrics::catalogue();
    let mut ids: Vec<&str> = Vec::new();
    if let Some(s) = &report.summary {
        ids.extend(s.metrics.iter().map(|m| m.metric.id.as_str()));
    }
    ids.extend(report.comparisons.iter().map(|c| c.metric.id.as_str()));
    let mut out: Vec<GlossaryEntry> = Vec::new();
    for id in ids {
        if out.iter().any(|g| g.id == id) {
            continue;
        }
        if let Some(i) = catalogue.index_of(id) {
            let def = catalogue.def(i);
            out.push(GlossaryEntry {
                id: def.id.clone(),
                label: def.label.clone(),
                description: def.description(),
            });
        }
    }
    out
}

/// The period a summary shows when none is asked for: the latest month or
/// quarter for which at least half of the sites with figures have published
/// people newly introduced ([`SiteView::latest_with_figures`]). One site
/// that is ahead of the others does not turn the network comparison into a
/// comparison of one, and a period whose every figure is withheld is not
/// chosen. Returns the period and the rule in words.
pub fn default_period(sites: &[SiteView]) -> Option<(Period, String)> {
    let mut latest: Vec<Period> = sites
        .iter()
        .filter_map(|s| s.latest_with_figures.as_deref())
        .filter_map(|p| Period::parse(p).ok())
        .collect();
    if latest.is_empty() {
        return None;
    }
    latest.sort_by_key(|p| std::cmp::Reverse((p.end(), *p)));
    let needed = latest.len().div_ceil(2);
    let period = latest[needed - 1];
    let reached = latest.iter().filter(|p| p.end() >= period.end()).count();
    let rule = format!(
        "Period {period}: the latest month or quarter for which at least half of the sites with figures \
         ({reached} of {}) have published people newly introduced (each site's latest is in the site table). \
         Ask for another with --period.",
        latest.len()
    );
    Some((period, rule))
}

/// Fills each site's [`SiteView::latest_with_figures`] from one comparison
/// of people newly introduced per kind of series, over the [`LOOK_BACK`]
/// periods up to the latest one published.
async fn fill_latest_with_figures(
    client: &mut ReportsClient<Channel>,
    url: &str,
    sites: &mut [SiteView],
) -> Result<(), CliError> {
    let latest: Vec<Period> = sites
        .iter()
        .filter_map(|s| s.latest_period.as_deref())
        .filter_map(|p| Period::parse(p).ok())
        .collect();
    for kind in [Granularity::Quarter, Granularity::Month] {
        let Some(to) = latest
            .iter()
            .filter(|p| p.granularity() == kind)
            .max_by_key(|p| (p.end(), **p))
            .copied()
        else {
            continue;
        };
        let from = (0..=LOOK_BACK)
            .rev()
            .map(|k| periods_before(to, k))
            .find(|f| *f != to)
            .unwrap_or(to);
        let c = compare(client, url, LIVE_METRIC, from, to, sites).await?;
        for s in sites.iter_mut() {
            if let Some(p) = latest_with_figures(&c.periods, &s.code) {
                s.latest_with_figures = Some(p.to_string());
            }
        }
    }
    Ok(())
}

/// The figure that says a period is live at a site: people newly introduced.
/// Agents publish every quarter up to the present (open cases, cases gone
/// quiet), so the latest period published is often one whose figures are
/// all withheld; the latest with new people is where the data is.
const LIVE_METRIC: &str = "people_new";

/// How far back, in periods, the latest period with figures is looked for.
const LOOK_BACK: u32 = 119;

/// The latest period in which `site` published a count above zero.
pub fn latest_with_figures(periods: &[PeriodView], site: &str) -> Option<Period> {
    periods.iter().rev().find_map(|p| {
        let s = p.sites.iter().find(|s| s.site_code == site)?;
        s.value
            .value()
            .filter(|v| *v > 0)
            .and_then(|_| Period::parse(&p.period).ok())
    })
}

/// Why a period has no published figures, in words an analyst can act on:
/// not a kind of period this network publishes, not published yet (with
/// when to expect it), or sites that did not exist then.
pub fn explain_empty(period: Period, sites: &[SiteView], today: lacnet_core::Date) -> Vec<String> {
    let mut notes = Vec::new();
    let series: Vec<Period> = sites
        .iter()
        .filter_map(|s| s.latest_period.as_deref())
        .filter_map(|p| Period::parse(p).ok())
        .collect();
    match period.granularity() {
        Granularity::ProgrammeToDate if period.index() != 3 => notes.push(format!(
            "No site publishes {period}: the programme to date is published only at financial-year ends \
             (31 March), e.g. PTD{}-03.",
            if period.index() > 3 { period.year() + 1 } else { period.year() }
        )),
        g @ (Granularity::Month | Granularity::Quarter)
            if !series.is_empty() && series.iter().all(|p| p.granularity() != g) =>
        {
            let (asked, publish) = match g {
                Granularity::Month => ("months", "quarters (YYYY-Qn)"),
                _ => ("quarters", "months (YYYY-MM)"),
            };
            notes.push(format!(
                "No site publishes {asked}: every site that has published uses {publish}, with financial \
                 years (FY2024) and the programme to date at financial-year ends (PTD2025-03). Months carry \
                 only the headline figures."
            ));
        }
        _ => {}
    }
    if notes.is_empty() {
        // The default embargo: the agent publishes a period 14 days after it ends.
        let expected =
            lacnet_core::Date::from_days_since_epoch(period.end().days_since_epoch() + 15);
        if today < expected {
            notes.push(format!(
                "{period} is not published yet: a site publishes a period once it has ended ({}) and its \
                 embargo has passed (14 days by default), so expect it from {expected}.",
                period.end()
            ));
        } else if series.is_empty() {
            notes.push(
                "No site has published anything to the hub yet: an agent publishes a few seconds after an \
                 import settles; `--wait 60` waits for it."
                    .into(),
            );
        } else {
            let latest: Vec<String> = sites
                .iter()
                .filter_map(|s| Some(format!("{} {}", s.name, s.latest_period.as_deref()?)))
                .collect();
            notes.push(format!(
                "No site has published {period}. The latest each site has published: {}. A recent import \
                 reaches the hub a few seconds after it settles (`--wait 60` waits for it).",
                latest.join(", ")
            ));
        }
    }
    let absent: Vec<&str> = sites
        .iter()
        .filter(|s| {
            let from = s
                .valid_from
                .as_deref()
                .and_then(|d| lacnet_core::Date::parse(d).ok());
            let until = s
                .valid_until
                .as_deref()
                .and_then(|d| lacnet_core::Date::parse(d).ok());
            from.is_some_and(|f| period.end() < f) || until.is_some_and(|u| period.start() > u)
        })
        .map(|s| s.name.as_str())
        .collect();
    if !absent.is_empty() {
        notes.push(format!(
            "Not in this period because the council did not exist then (its code was not in use): {}.",
            absent.join(", ")
        ));
    }
    notes
}

async fn compare(
    client: &mut ReportsClient<Channel>,
    url: &str,
    metric: &str,
    from: Period,
    to: Period,
    sites: &[SiteView],
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
    let periods: Vec<PeriodView> = c.periods.iter().map(PeriodView::from_proto).collect();
    let appears = |code: &str| {
        periods
            .iter()
            .any(|p| p.sites.iter().any(|s| s.site_code == code))
    };
    Ok(ComparisonView {
        metric: MetricInfoView::from_proto(c.metric.as_ref()),
        // A registry site with no release in the range has no trend to tell.
        trends: c
            .trends
            .iter()
            .filter(|t| appears(&t.site_code))
            .map(|t| TrendView {
                site_name: sites
                    .iter()
                    .find(|s| s.code == t.site_code)
                    .map_or_else(|| t.site_code.clone(), |s| s.name.clone()),
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
        periods,
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
    fn spans_read_as_analysts_say_them_and_the_default_period_is_what_most_sites_reached() {
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(
            describe_period(p("FY2024")),
            "FY2024: financial year 2024/25 (2024-04-01 to 2025-03-31)"
        );
        assert!(describe_period(p("PTD2024-07")).contains("programme to date"));
        assert_eq!(periods_before(p("FY2024"), 2).to_string(), "FY2022");
        let site = |name: &str, latest: Option<&str>| SiteView {
            code: name.into(),
            name: name.into(),
            adult_population: 1,
            policy: None,
            last_period: Some("FY2017".into()),
            last_published_on: None,
            last_revised: false,
            latest_period: Some("2026-Q3".into()),
            latest_with_figures: latest.map(Into::into),
            valid_from: None,
            valid_until: None,
        };
        // One site ahead of the others does not make a comparison of one.
        let sites = vec![
            site("a", Some("2017-Q1")),
            site("b", Some("2016-Q1")),
            site("c", Some("2016-Q1")),
            site("d", None),
        ];
        let (period, rule) = default_period(&sites).unwrap();
        assert_eq!(period, p("2016-Q1"));
        assert!(rule.contains("(3 of 3)"), "{rule}");
        let sites = vec![site("a", Some("2017-Q1")), site("b", Some("2016-Q4"))];
        assert_eq!(default_period(&sites).unwrap().0, p("2017-Q1"));
        assert!(default_period(&[site("d", None)]).is_none());
    }

    #[test]
    fn the_default_is_the_latest_period_with_figures_not_a_withheld_one() {
        let value = |code: &str, v: CountView| SiteValue {
            site_code: code.into(),
            site_name: code.into(),
            value: v,
            denominator: None,
            rate_per_10k: None,
            share: None,
            rank: None,
            funnel: None,
            limits: None,
            adult_population: 1,
            population_year: None,
            population_approximate: false,
            population_note: None,
        };
        let period = |p: &str, sites: Vec<SiteValue>| PeriodView {
            period: p.into(),
            sites,
            median_value: None,
            median_rate: None,
            median_share: None,
            funnel_target: None,
            sites_known: 0,
            sites_suppressed: 0,
        };
        let periods = vec![
            period(
                "2016-Q1",
                vec![
                    value("a", CountView::Value(40)),
                    value("b", CountView::Value(25)),
                ],
            ),
            period(
                "2016-Q2",
                vec![
                    value("a", CountView::Value(40)),
                    value("b", CountView::Suppressed),
                ],
            ),
            period(
                "2016-Q3",
                vec![
                    value("a", CountView::Suppressed),
                    value("b", CountView::Suppressed),
                ],
            ),
        ];
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(latest_with_figures(&periods, "a"), Some(p("2016-Q2")));
        assert_eq!(latest_with_figures(&periods, "b"), Some(p("2016-Q1")));
        assert_eq!(latest_with_figures(&periods, "c"), None);
        let zero = vec![period("2016-Q4", vec![value("a", CountView::Value(0))])];
        assert_eq!(
            latest_with_figures(&zero, "a"),
            None,
            "no new people: not live"
        );
    }

    #[test]
    fn an_empty_period_says_why() {
        let p = |s: &str| Period::parse(s).unwrap();
        let today = lacnet_core::Date::parse("2026-12-07").unwrap();
        let site = |latest: &str| SiteView {
            code: "E06000034".into(),
            name: "Thurrock".into(),
            adult_population: 1,
            policy: None,
            last_period: None,
            last_published_on: None,
            last_revised: false,
            latest_period: Some(latest.into()),
            latest_with_figures: None,
            valid_from: None,
            valid_until: Some("2015-03-31".into()),
        };
        let sites = [site("2014-Q4")];
        let said = explain_empty(p("PTD2025-02"), &sites, today).join(" ");
        assert!(
            said.contains("only at financial-year ends") && said.contains("PTD2025-03"),
            "{said}"
        );
        let said = explain_empty(p("2014-05"), &sites, today).join(" ");
        assert!(said.contains("No site publishes months"), "{said}");
        let said = explain_empty(p("2026-Q4"), &sites, today).join(" ");
        assert!(said.contains("expect it from 2027-01-15"), "{said}");
        let said = explain_empty(p("2014-Q3"), &sites, today).join(" ");
        assert!(said.contains("Thurrock 2014-Q4"), "{said}");
        let said = explain_empty(p("2016-Q1"), &sites, today).join(" ");
        assert!(
            said.contains("did not exist then (its code was not in use): Thurrock"),
            "{said}"
        );
    }

    #[test]
    fn suppressed_serialises_as_a_marker_not_zero() {
        let json = serde_json::to_string(&[CountView::Value(0), CountView::Suppressed]).unwrap();
        assert_eq!(json, "[0,\"suppressed\"]");
    }
}
