//! `lacnet.hub.v1.Reports`: cross-site comparisons for analysts (and, by the
//! `sites_see_network` switch, for sites).
//!
//! Built only from the latest revision of each site's submission for each
//! period, held in memory by the store, so a report never reads the disk. The
//! numbers come from `lacnet_core::compare`; this module picks the inputs
//! (which sites, which periods, which metric), names each site's policy and
//! revision, and leaves suppressed values suppressed. Metrics come from the
//! one catalogue in `lacnet_core::metrics`, so a new metric needs no change here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use lacnet_core::compare::{self, SiteInput};
use lacnet_core::metrics::{self, MetricKind, catalogue};
use lacnet_core::period::Period;
use lacnet_core::vocab::SupportLevel;
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_server::Reports;
use lacnet_tls::Peer;
use tracing::instrument;

use crate::authz::{self, ReadScope};
use crate::bounded::{self, Alphabet};
use crate::convert::{
    funnel_flag_to_proto, funnel_limits_to_proto, metric_info, summary_to_proto, trend_to_proto,
};
use crate::registry::Site;
use crate::store::{AuditEvent, Latest};
use crate::submissions::peer_label;
use crate::{Hub, HubError};
use lacnet_proto::convert::{count_to_proto, period_from_proto, period_to_proto, policy_to_proto};

/// The most periods one comparison may span (50 years of quarters, 16 of months).
pub const MAX_PERIODS: usize = 200;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct ReportsService {
    hub: Hub,
}

impl ReportsService {
    /// Wraps an open hub.
    pub fn new(hub: Hub) -> ReportsService {
        ReportsService { hub }
    }
}

/// The registry sites a reader may see, in registry order.
fn visible_sites<'a>(sites: &'a [Site], scope: &ReadScope) -> Vec<&'a Site> {
    match scope {
        ReadScope::Network => sites.iter().collect(),
        ReadScope::OwnSite(code) => sites.iter().filter(|s| &s.code == code).collect(),
    }
}

/// One metric in one period across `sites`, from the latest tables of that period.
fn period_comparison(
    metric: usize,
    period: Period,
    sites: &[&Site],
    latest: Option<&HashMap<String, Arc<Latest>>>,
) -> hub::PeriodComparison {
    let denominator = match catalogue().def(metric).kind {
        MetricKind::Count => None,
        MetricKind::Proportion { denominator } => Some(denominator),
    };
    // A council that did not exist during the period takes no part in it;
    // one whose population is unknown for the period's year keeps its counts
    // but gets no rate (population 0), never another year's.
    let rows: Vec<(&Site, &Latest, (u64, i32))> = match latest {
        Some(map) => sites
            .iter()
            .filter(|s| s.in_use_during(period))
            .filter_map(|s| {
                let pop = s.population_for(period).unwrap_or((0, 0));
                map.get(&s.code).map(|l| (*s, l.as_ref(), pop))
            })
            .collect(),
        None => Vec::new(),
    };
    let inputs: Vec<SiteInput> = rows
        .iter()
        .map(|(site, l, (population, _))| SiteInput {
            site_code: &site.code,
            adult_population: *population,
            value: l.published.counts[metric],
            denominator: denominator.map(|d| l.published.counts[d]),
        })
        .collect();
    let cmp = compare::compare_period(&inputs);
    let site_values = cmp
        .sites
        .iter()
        .zip(&rows)
        .map(|(c, (site, l, (population, year)))| hub::SiteValue {
            site_code: site.code.clone(),
            site_name: site.name.clone(),
            value: Some(count_to_proto(c.value)),
            denominator: c.denominator.map(count_to_proto),
            rate_per_10k: c.rate_per_10k,
            share: c.share,
            rank: c.rank.unwrap_or(0),
            funnel_flag: funnel_flag_to_proto(c.funnel_flag) as i32,
            funnel_limits: c.funnel_limits.as_ref().map(funnel_limits_to_proto),
            policy: Some(policy_to_proto(&l.policy)),
            adult_population: *population,
            population_year: *year,
            // Only the one undated figure can be marked approximate; a
            // yearly list is the published estimates.
            population_approximate: site.population_approximate && site.populations.is_empty(),
            published_on: published_on(l),
            revised: l.revised,
        })
        .collect();
    hub::PeriodComparison {
        period: Some(period_to_proto(period)),
        sites: site_values,
        value_summary: Some(summary_to_proto(&cmp.value_summary)),
        rate_summary: Some(summary_to_proto(&cmp.rate_summary)),
        share_summary: Some(summary_to_proto(&cmp.share_summary)),
        funnel_target: cmp.funnel_target,
    }
}

/// The day a release was published (accepted by the hub): all an analyst
/// learns of its timing. Never the time, never the revision number.
fn published_on(l: &Latest) -> String {
    lacnet_core::Date::from_unix_seconds(l.received_at_unix).to_string()
}

impl Hub {
    fn scope(&self, peer: &Result<Peer, tonic::Status>) -> Result<ReadScope, HubError> {
        let peer = peer
            .as_ref()
            .map_err(|s| HubError::Unauthenticated(s.message().to_string()))?;
        authz::read_scope(peer, self.inner.sites_see_network)
    }

    /// Every registry site the reader may see, with its latest submission.
    pub fn list_sites(&self, scope: &ReadScope) -> hub::ListSitesResponse {
        let registry = self.registry();
        let sites = visible_sites(registry.sites(), scope);
        // The most recently received latest table of each site.
        let mut last: HashMap<&str, (Period, Arc<Latest>)> = HashMap::new();
        let mut series: HashMap<&str, Period> = HashMap::new();
        self.store().with_latest(|index| {
            for (period, by_site) in index {
                for site in &sites {
                    if let Some(l) = by_site.get(&site.code) {
                        if !period.is_span() {
                            let later = series
                                .get(site.code.as_str())
                                .is_none_or(|p| (period.end(), *period) > (p.end(), *p));
                            if later {
                                series.insert(site.code.as_str(), *period);
                            }
                        }
                        let newer = last.get(site.code.as_str()).is_none_or(|(p, cur)| {
                            (l.received_at_unix, *period) > (cur.received_at_unix, *p)
                        });
                        if newer {
                            last.insert(site.code.as_str(), (*period, l.clone()));
                        }
                    }
                }
            }
        });
        hub::ListSitesResponse {
            sites: sites
                .iter()
                .map(|s| {
                    let latest = last.get(s.code.as_str());
                    hub::SiteInfo {
                        code: s.code.clone(),
                        name: s.name.clone(),
                        adult_population: s.adult_population,
                        valid_until: s.valid_until.map(|d| d.to_string()).unwrap_or_default(),
                        valid_from: s.valid_from.map(|d| d.to_string()).unwrap_or_default(),
                        policy: latest.map(|(_, l)| policy_to_proto(&l.policy)),
                        last_submission: latest.map(|(p, l)| hub::SubmissionRef {
                            period: Some(period_to_proto(*p)),
                            published_on: published_on(l),
                            revised: l.revised,
                        }),
                        latest_series_period: series
                            .get(s.code.as_str())
                            .map(|p| period_to_proto(*p)),
                    }
                })
                .collect(),
            network_policy: Some(policy_to_proto(registry.policy())),
        }
    }

    /// Every catalogue metric with its unit cost.
    pub fn list_metrics(&self) -> hub::ListMetricsResponse {
        hub::ListMetricsResponse {
            metrics: (0..catalogue().metrics().len())
                .map(|i| metric_info(i, self.registry()))
                .collect(),
        }
    }

    /// One metric across the visible sites for every period in `[from, to]`, with trends.
    pub fn compare_metric(
        &self,
        scope: &ReadScope,
        request: &hub::CompareMetricRequest,
    ) -> Result<hub::MetricComparison, HubError> {
        bounded::check(
            "metric",
            &request.metric,
            bounded::MAX_METRIC_ID_LEN,
            Alphabet::MetricId,
        )?;
        let metric = catalogue().index_of(&request.metric).ok_or_else(|| {
            HubError::invalid(
                "metric",
                format!(
                    "unknown metric id {:?} (ListMetrics gives the ids)",
                    request.metric
                ),
            )
        })?;
        let from = published_kind(period_from_proto(request.from.as_ref(), "from")?, "from")?;
        let to = published_kind(period_from_proto(request.to.as_ref(), "to")?, "to")?;
        if from.granularity() != to.granularity() {
            return Err(HubError::invalid(
                "to",
                "must have the same granularity as from",
            ));
        }
        if to < from {
            return Err(HubError::invalid("to", format!("{to} is before {from}")));
        }
        let span = to.ordinal() - from.ordinal() + 1;
        if span > MAX_PERIODS as i64 {
            return Err(HubError::invalid(
                "to",
                format!("the range spans {span} periods; at most {MAX_PERIODS} are allowed"),
            ));
        }
        // Programmes to date are published a year apart.
        let periods: Vec<Period> = Period::range(from, to)
            .into_iter()
            .filter(|p| published_kind(*p, "").is_ok())
            .collect();
        let sites = visible_sites(self.registry().sites(), scope);
        let comparisons: Vec<hub::PeriodComparison> = self.store().with_latest(|index| {
            periods
                .iter()
                .map(|p| period_comparison(metric, *p, &sites, index.get(p)))
                .collect()
        });
        // Each site's rate series, one point per period (None where missing or suppressed).
        let mut series: HashMap<&str, Vec<Option<f64>>> = sites
            .iter()
            .map(|s| (s.code.as_str(), vec![None; periods.len()]))
            .collect();
        for (i, pc) in comparisons.iter().enumerate() {
            for row in &pc.sites {
                if let Some(points) = series.get_mut(row.site_code.as_str()) {
                    points[i] = row.rate_per_10k;
                }
            }
        }
        let trends = sites
            .iter()
            .map(|s| {
                let points = series.get(s.code.as_str()).map_or(&[][..], Vec::as_slice);
                trend_to_proto(&s.code, &compare::trend(points))
            })
            .collect();
        Ok(hub::MetricComparison {
            metric: Some(metric_info(metric, self.registry())),
            periods: comparisons,
            trends,
        })
    }

    /// Every metric for one period, and estimated cost avoided per site.
    pub fn network_summary(
        &self,
        scope: &ReadScope,
        request: &hub::NetworkSummaryRequest,
    ) -> Result<hub::NetworkSummaryResponse, HubError> {
        let period = published_kind(
            period_from_proto(request.period.as_ref(), "period")?,
            "period",
        )?;
        let registry = self.registry();
        let sites = visible_sites(registry.sites(), scope);
        let unit_costs = registry.unit_costs();
        self.store().with_latest(|index| {
            let latest = index.get(&period);
            // Only the figures this kind of period carries: the rest are
            // published for other periods (`lacnet_core::release`).
            let carried = lacnet_core::release::carried(period.granularity());
            let metrics = (0..catalogue().metrics().len())
                .filter(|m| carried[*m])
                .map(|m| hub::MetricSnapshot {
                    metric: Some(metric_info(m, registry)),
                    comparison: Some(period_comparison(m, period, &sites, latest)),
                })
                .collect();
            let mut cost_avoided = Vec::new();
            let mut network = 0u64;
            let mut submitted = 0u32;
            // Cost avoided follows the outcomes: a month carries none.
            let costed = carried[metrics::outcome(lacnet_core::vocab::Outcome::ALL[0])];
            for site in sites.iter().filter(|s| s.in_use_during(period)) {
                let Some(l) = latest.and_then(|m| m.get(&site.code)) else {
                    continue;
                };
                submitted += 1;
                if !costed {
                    continue;
                }
                // Outcome counts are people who achieved the outcome in the
                // period (once each over a span), so each person's outcome is
                // charged once.
                let items: Vec<_> = unit_costs
                    .iter()
                    .map(|(i, u)| (l.published.counts[*i], u.pence))
                    .collect();
                let cost = compare::cost_avoided(&items);
                let level_2: Vec<_> = unit_costs
                    .iter()
                    .map(|(_, u)| {
                        let m = metrics::level_outcome(SupportLevel::Level2, u.outcome);
                        (l.published.counts[m], u.pence)
                    })
                    .collect();
                let level_2 = compare::cost_avoided(&level_2);
                network = network.saturating_add(cost.pence);
                cost_avoided.push(hub::SiteCostAvoided {
                    site_code: site.code.clone(),
                    cost_avoided_pence: cost.pence,
                    partial: cost.partial,
                    level_2_cost_avoided_pence: level_2.pence,
                    level_2_partial: level_2.partial,
                });
            }
            Ok(hub::NetworkSummaryResponse {
                period: Some(period_to_proto(period)),
                metrics,
                sites_submitted: submitted,
                cost_avoided,
                network_cost_avoided_pence: network,
            })
        })
    }

    /// Authorises, times, counts and audits one report call.
    async fn report<T>(
        &self,
        event: &'static str,
        peer: &Result<Peer, tonic::Status>,
        build: impl FnOnce(&ReadScope) -> Result<T, HubError>,
    ) -> Result<tonic::Response<T>, tonic::Status> {
        let started = Instant::now();
        let result = self.scope(peer).and_then(|scope| build(&scope));
        self.metrics()
            .report_latency
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(body) => {
                // Information governance asks who read the network's figures, not only who was refused.
                self.audit(AuditEvent {
                    at_unix: self.clock().now_unix(),
                    event: event.to_owned(),
                    peer: peer_label(peer),
                    site: None,
                    period: None,
                    revision: None,
                    outcome: "served".into(),
                    reason: None,
                    digest: None,
                    generated_at_unix: None,
                    received_at_unix: None,
                })
                .await;
                Ok(tonic::Response::new(body))
            }
            Err(e) => {
                self.refused(event, &peer_label(peer), None, None, None, &e)
                    .await;
                Err(e.into())
            }
        }
    }
}

#[tonic::async_trait]
impl Reports for ReportsService {
    #[instrument(skip_all, fields(peer))]
    async fn list_sites(
        &self,
        request: tonic::Request<hub::ListSitesRequest>,
    ) -> Result<tonic::Response<hub::ListSitesResponse>, tonic::Status> {
        let peer = lacnet_tls::peer_of(&request);
        tracing::Span::current().record("peer", peer_label(&peer).as_str());
        self.hub
            .report("list_sites", &peer, |scope| Ok(self.hub.list_sites(scope)))
            .await
    }

    #[instrument(skip_all, fields(peer))]
    async fn list_metrics(
        &self,
        request: tonic::Request<hub::ListMetricsRequest>,
    ) -> Result<tonic::Response<hub::ListMetricsResponse>, tonic::Status> {
        let peer = lacnet_tls::peer_of(&request);
        tracing::Span::current().record("peer", peer_label(&peer).as_str());
        self.hub
            .report("list_metrics", &peer, |_| Ok(self.hub.list_metrics()))
            .await
    }

    #[instrument(skip_all, fields(peer, metric))]
    async fn compare_metric(
        &self,
        request: tonic::Request<hub::CompareMetricRequest>,
    ) -> Result<tonic::Response<hub::MetricComparison>, tonic::Status> {
        let peer = lacnet_tls::peer_of(&request);
        let span = tracing::Span::current();
        span.record("peer", peer_label(&peer).as_str());
        let body = request.into_inner();
        if catalogue().index_of(&body.metric).is_some() {
            span.record("metric", body.metric.as_str());
        }
        self.hub
            .report("compare_metric", &peer, |scope| {
                self.hub.compare_metric(scope, &body)
            })
            .await
    }

    #[instrument(skip_all, fields(peer))]
    async fn network_summary(
        &self,
        request: tonic::Request<hub::NetworkSummaryRequest>,
    ) -> Result<tonic::Response<hub::NetworkSummaryResponse>, tonic::Status> {
        let peer = lacnet_tls::peer_of(&request);
        tracing::Span::current().record("peer", peer_label(&peer).as_str());
        let body = request.into_inner();
        self.hub
            .report("network_summary", &peer, |scope| {
                self.hub.network_summary(scope, &body)
            })
            .await
    }
}

/// `period`, if it is a kind of period the network publishes: a programme
/// to date only at a financial-year end (see `lacnet_core::release`); else
/// INVALID_ARGUMENT naming `field`, with the nearest period that is.
fn published_kind(period: Period, field: &str) -> Result<Period, HubError> {
    if period.granularity() != lacnet_core::Granularity::ProgrammeToDate
        || lacnet_core::linked::publishes_programme_to_date(period)
    {
        return Ok(period);
    }
    let fy = Period::containing(lacnet_core::Granularity::FinancialYear, period.end());
    let next = Period::containing(lacnet_core::Granularity::ProgrammeToDate, fy.end());
    Err(HubError::invalid(
        field,
        format!(
            "{period}: the programme to date is published at financial-year ends (31 March) only, e.g. {next}"
        ),
    ))
}
