//! The report as one CSV table in long form (one row per period, metric and
//! site), which a spreadsheet opens cleanly and can pivot. A UTF-8 byte
//! order mark makes Excel read the file as UTF-8 (site names, labels); suppressed
//! counts leave `value` empty and say `suppressed` in their own column, so a
//! sum never treats them as zero.

use super::model::{CountView, MetricInfoView, PeriodView, Report, SummaryView};
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
    "support_level",
    "across_periods",
    "adult_population",
    "population_year",
    "population_note",
];

fn opt(v: Option<f64>, places: usize) -> String {
    v.map(|x| format!("{x:.places$}")).unwrap_or_default()
}

/// Renders the report.
pub fn render(report: &Report) -> Result<String, CliError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER)?;
    let policy = |code: &str| {
        report
            .sites
            .iter()
            .find(|s| s.code == code)
            .and_then(|s| s.policy.as_ref())
            .map(|p| p.text.clone())
            .unwrap_or_default()
    };
    let mut rows = |section: &str, m: &MetricInfoView, p: &PeriodView| -> Result<(), CliError> {
        let (id, label) = (m.id.as_str(), m.label.as_str());
        for s in &p.sites {
            let (value, suppressed) = match s.value {
                CountView::Value(v) => (v.to_string(), "no"),
                CountView::Suppressed => (String::new(), "yes"),
                CountView::NotReleased => (String::new(), "not released"),
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
                m.support_level.as_deref().unwrap_or("all"),
                &m.across_periods,
                &s.adult_population.to_string(),
                &s.population_year.map(|y| y.to_string()).unwrap_or_default(),
                s.population_note.as_deref().unwrap_or_default(),
            ])?;
        }
        Ok(())
    };
    if let Some(s) = &report.summary {
        for m in &s.metrics {
            rows("summary", &m.metric, &m.comparison)?;
        }
    }
    for c in &report.comparisons {
        for p in &c.periods {
            rows("trend", &c.metric, p)?;
        }
    }
    if let Some(s) = &report.summary {
        cost_rows(&mut w, s)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    let mut out = String::from('\u{feff}');
    out.push_str(&String::from_utf8_lossy(&bytes));
    Ok(out)
}

/// Cost avoided in pounds per site, all levels and Level 2 alone ("at least" when partial).
fn cost_rows(w: &mut csv::Writer<Vec<u8>>, s: &SummaryView) -> Result<(), CliError> {
    for c in &s.cost_avoided {
        let kinds = if c.level_2_released { 2 } else { 1 };
        for (id, label, pounds, partial, level) in [
            (
                "cost_avoided",
                "Estimated cost avoided (£)",
                c.pounds,
                c.partial,
                "all",
            ),
            (
                "level_2.cost_avoided",
                "Level 2: estimated cost avoided (£)",
                c.level_2_pounds,
                c.level_2_partial,
                "level_2",
            ),
        ]
        .into_iter()
        .take(kinds)
        {
            let mut row = vec![String::new(); HEADER.len()];
            row[0] = "cost_avoided".into();
            row[1] = s.period.clone();
            row[2] = id.into();
            row[3] = if partial {
                format!("{label}, at least")
            } else {
                label.into()
            };
            row[4] = c.site_code.clone();
            row[5] = c.site_name.clone();
            row[6] = format!("{pounds:.0}");
            row[7] = "no".into();
            row[15] = level.into();
            row[16] = "distinct".into();
            w.write_record(&row)?;
        }
    }
    Ok(())
}
