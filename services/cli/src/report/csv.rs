//! The report as one CSV table in long form (one row per period, metric and
//! site), which a spreadsheet opens cleanly and can pivot. A UTF-8 byte
//! order mark makes Excel read the file as UTF-8 (site names, labels); suppressed
//! counts leave `value` empty and say `suppressed` in their own column, so a
//! sum never treats them as zero.

use super::model::{CountView, PeriodView, Report};
use crate::error::CliError;

const HEADER: &[&str] = &[
    "section",
    "period",
    "metric",
    "metric_label",
    "site_code",
    "site_name",
    "value",
    "suppressed",
    "rate_per_10k",
    "share",
    "rank",
    "funnel",
    "network_median_rate_per_10k",
    "network_median_share",
    "site_disclosure_policy",
];

fn opt(v: Option<f64>, places: usize) -> String {
    v.map(|x| format!("{x:.places$}")).unwrap_or_default()
}

/// Renders the report.
pub fn render(report: &Report) -> Result<String, CliError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| CliError::Invalid(format!("cannot write CSV: {e}"));
    w.write_record(HEADER).map_err(fail)?;
    let policy = |code: &str| {
        report
            .sites
            .iter()
            .find(|s| s.code == code)
            .and_then(|s| s.policy.as_ref())
            .map(|p| p.text.clone())
            .unwrap_or_default()
    };
    let mut rows = |section: &str, id: &str, label: &str, p: &PeriodView| -> Result<(), CliError> {
        for s in &p.sites {
            let (value, suppressed) = match s.value {
                CountView::Value(v) => (v.to_string(), "no"),
                CountView::Suppressed => (String::new(), "yes"),
            };
            w.write_record([
                section,
                p.period.as_str(),
                id,
                label,
                s.site_code.as_str(),
                s.site_name.as_str(),
                &value,
                suppressed,
                &opt(s.rate_per_10k, 2),
                &opt(s.share, 4),
                &s.rank.map(|r| r.to_string()).unwrap_or_default(),
                s.funnel.as_deref().unwrap_or_default(),
                &opt(p.median_rate, 2),
                &opt(p.median_share, 4),
                &policy(&s.site_code),
            ])
            .map_err(fail)?;
        }
        Ok(())
    };
    if let Some(s) = &report.summary {
        for m in &s.metrics {
            rows("summary", &m.metric.id, &m.metric.label, &m.comparison)?;
        }
    }
    for c in &report.comparisons {
        for p in &c.periods {
            rows("trend", &c.metric.id, &c.metric.label, p)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CliError::Invalid(format!("cannot write CSV: {e}")))?;
    let mut out = String::from('\u{feff}');
    out.push_str(&String::from_utf8_lossy(&bytes));
    Ok(out)
}
