//! The local evaluation: a council's own figures over a span (a financial
//! year or the programme to date), exactly, in the form of the evaluations
//! sites publish about themselves ("256 people aged 18 to 98 in the first 14
//! months, 31% older people...").
//!
//! These are the council's own data, so nothing is rounded or suppressed:
//! that is why the table never leaves the agent (it is not a submission and
//! never enters the outbox) and is served only to the council's operators
//! (`spiffe://lacnet/operator/<name>`), the staff who already run the agent.
//! The case system's certificate (`spiffe://lacnet/council/<name>`) only
//! pushes records and cannot read it. Every call is audited by
//! [`crate::grpc`]: who asked, for which span, and the outcome, with no
//! figures and no personal data in the log.

use lacnet_core::aggregate::PeriodAggregator;
use lacnet_core::metrics::catalogue;
use lacnet_core::vocab::AgeBand;
use lacnet_core::{Granularity, Period};
use lacnet_proto::convert::period_to_proto;
use lacnet_proto::site::v1 as site;

use crate::{Agent, AgentError};

/// Exact counts for `span` from every stored record, under the agent's rules.
pub async fn local_evaluation(
    agent: &Agent,
    span: Period,
) -> Result<site::LocalEvaluation, AgentError> {
    let o = agent.options();
    if !span.is_span() {
        return Err(AgentError::invalid(
            "span",
            format!(
                "{span} is a {}: the local evaluation covers a financial year (e.g. FY2024) or the programme to date (e.g. PTD2025-09)",
                span.granularity().label()
            ),
        ));
    }
    if span.granularity() == Granularity::ProgrammeToDate && o.programme_start.is_none() {
        return Err(AgentError::invalid(
            "span",
            "the programme to date needs the agent's --programme-start",
        ));
    }
    let rules = o.rules();
    let from = span.start_for(rules.programme_start);
    if from > agent.today() {
        return Err(AgentError::invalid("span", "must not start in the future"));
    }
    let a = agent.clone();
    agent
        .spawn_blocking(move || {
            let mut agg = PeriodAggregator::with_rules(span, rules, 0);
            let to = span.end();
            let mut bands: Option<(AgeBand, AgeBand)> = None;
            for r in a.store().records() {
                let r = r?;
                if from <= r.facts.introduced_on && r.facts.introduced_on <= to {
                    let b = r.facts.age_band;
                    bands = Some(bands.map_or((b, b), |(lo, hi)| (lo.min(b), hi.max(b))));
                }
                agg.add(&r);
            }
            let counts = agg.finish();
            let o = a.options();
            Ok(site::LocalEvaluation {
                site_code: o.site_code.clone(),
                span: Some(period_to_proto(span)),
                from: from.to_string(),
                to: to.to_string(),
                inactivity_months: o.inactivity_months,
                cells: catalogue()
                    .metrics()
                    .iter()
                    .zip(counts.counts.iter())
                    .map(|(def, v)| site::ExactCell {
                        metric: def.id.clone(),
                        label: def.label.clone(),
                        value: *v,
                    })
                    .collect(),
                youngest_band: bands.map(|(lo, _)| lo.id().to_owned()).unwrap_or_default(),
                oldest_band: bands.map(|(_, hi)| hi.id().to_owned()).unwrap_or_default(),
            })
        })
        .await?
}
