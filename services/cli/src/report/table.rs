//! Plain-text tables for a terminal: the report pivoted to one row per metric
//! and one column per site, and the helper other commands print with.

use super::model::{CountView, PeriodView, Report, SiteValue};

/// A simple left-aligned text table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i >= w.len() {
                    w.push(0);
                }
                w[i] = w[i].max(c.chars().count());
            }
        }
        w
    }

    fn line(cells: &[String], widths: &[usize]) -> String {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map_or("", String::as_str);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        }
        s.trim_end().to_owned() + "\n"
    }

    /// With the header and a rule under it.
    pub fn render(&self) -> String {
        let w = self.widths();
        let mut out = Table::line(&self.header, &w);
        let rule: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
        out.push_str(&Table::line(&rule, &w));
        for r in &self.rows {
            out.push_str(&Table::line(r, &w));
        }
        out
    }

    /// Rows only (for key/value listings).
    pub fn render_plain(&self) -> String {
        let w = self.widths();
        self.rows.iter().map(|r| Table::line(r, &w)).collect()
    }
}

/// How a suppressed value is shown in text.
pub const SUPPRESSED: &str = "[suppressed]";
/// How a figure the period kind does not carry is shown in text.
pub const NOT_RELEASED: &str = "[not released]";

/// A site's value as a cell: `25 (1.9/10k)`, `30%` for shares, or the marker.
pub fn cell(v: &SiteValue, proportion: bool) -> String {
    match v.value {
        CountView::Suppressed => SUPPRESSED.to_owned(),
        CountView::NotReleased => NOT_RELEASED.to_owned(),
        CountView::Value(n) => match (proportion, v.share, v.rate_per_10k) {
            (true, Some(s), _) => format!("{n} ({:.0}%)", s * 100.0),
            (_, _, Some(r)) => format!("{n} ({r:.1}/10k)"),
            _ => n.to_string(),
        },
    }
}

fn median_cell(p: &PeriodView, proportion: bool) -> String {
    match (proportion, p.median_share, p.median_rate) {
        (true, Some(s), _) => format!("{:.0}%", s * 100.0),
        (_, _, Some(r)) => format!("{r:.1}/10k"),
        _ => "-".to_owned(),
    }
}

/// Sites appearing anywhere in the report, in registry order.
pub fn sites_in(report: &Report) -> Vec<(String, String)> {
    let mut seen: Vec<String> = Vec::new();
    let periods = report
        .summary
        .iter()
        .flat_map(|s| s.metrics.iter().map(|m| &m.comparison))
        .chain(report.comparisons.iter().flat_map(|c| c.periods.iter()));
    for p in periods {
        for s in &p.sites {
            if !seen.contains(&s.site_code) {
                seen.push(s.site_code.clone());
            }
        }
    }
    report
        .sites
        .iter()
        .filter(|s| seen.contains(&s.code))
        .map(|s| (s.code.clone(), s.name.clone()))
        .collect()
}

/// The summary period as a metric-by-site table, restricted to `groups` if given.
pub fn summary_table(report: &Report, groups: Option<&[&str]>) -> String {
    let Some(summary) = &report.summary else {
        return String::new();
    };
    let sites = sites_in(report);
    let mut t = Table::new(site_header("metric", &sites));
    for m in &summary.metrics {
        if groups.is_some_and(|g| !g.contains(&m.metric.group.as_str())) {
            continue;
        }
        t.row(period_row(
            m.metric.label.clone(),
            &sites,
            &m.comparison,
            m.metric.proportion,
        ));
    }
    let pounds = |p: f64, partial: bool| {
        format!(
            "£{}{}",
            thousands(p.round() as u64),
            if partial { " (at least)" } else { "" }
        )
    };
    let mut cost = cost_row("Estimated cost avoided", &sites, summary, |c| {
        pounds(c.pounds, c.partial)
    });
    cost.push(format!(
        "total £{}",
        thousands(summary.network_cost_avoided_pounds.round() as u64)
    ));
    t.row(cost);
    let mut level_2 = cost_row(
        "Estimated cost avoided, Level 2 alone",
        &sites,
        summary,
        |c| {
            if c.level_2_released {
                pounds(c.level_2_pounds, c.level_2_partial)
            } else {
                NOT_RELEASED.to_owned()
            }
        },
    );
    level_2.push(String::new());
    t.row(level_2);
    t.render()
}

/// A header: `first`, each site's name, then the network median.
fn site_header(first: &str, sites: &[(String, String)]) -> Vec<String> {
    let mut header = vec![first.to_owned()];
    header.extend(sites.iter().map(|(_, n)| n.clone()));
    header.push("network median".into());
    header
}

/// One period's figures under [`site_header`]: `first`, each site's cell
/// (`-` when it has none), then the network median.
fn period_row(
    first: String,
    sites: &[(String, String)],
    p: &PeriodView,
    proportion: bool,
) -> Vec<String> {
    let mut row = vec![first];
    for (code, _) in sites {
        row.push(
            p.sites
                .iter()
                .find(|s| &s.site_code == code)
                .map_or_else(|| "-".to_owned(), |v| cell(v, proportion)),
        );
    }
    row.push(median_cell(p, proportion));
    row
}

/// `label`, then each site's cost avoided as `cost` writes it (`-` when it has none).
fn cost_row(
    label: &str,
    sites: &[(String, String)],
    summary: &super::model::SummaryView,
    cost: impl Fn(&super::model::CostView) -> String,
) -> Vec<String> {
    let mut row = vec![label.to_owned()];
    for (code, _) in sites {
        row.push(
            summary
                .cost_avoided
                .iter()
                .find(|c| &c.site_code == code)
                .map_or_else(|| "-".to_owned(), &cost),
        );
    }
    row
}

/// What cost avoided counts and leaves out, in words.
pub fn cost_notes(summary: &super::model::SummaryView) -> String {
    let mut out = String::from(
        "Cost avoided charges each person's outcome once: an outcome counts in the period it was \
         achieved, and once per person over a financial year or the programme to date.\n",
    );
    for (label, reason) in &summary.cost_exclusions {
        out.push_str(&format!("Not costed: {label}: {reason}\n"));
    }
    out
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The whole report as text.
pub fn render(report: &Report) -> String {
    let mut out = format!("{}\n(pulled {})\n", report.title, report.pulled_on);
    // What was chosen and what is missing come first: a reader who stops
    // after three lines must not take an empty report for a quiet period.
    if let Some(rule) = &report.period_rule {
        out.push_str(&format!("{rule}\n"));
    }
    for note in &report.notes {
        out.push_str(&format!("Note: {note}\n"));
    }
    out.push('\n');
    if let Some(p) = &report.network_policy {
        out.push_str(&format!("Network disclosure policy: {}\n", p.text));
    }
    out.push_str(&format!(
        "Counts shown as {SUPPRESSED} were withheld by disclosure control: a small count (possibly zero) or one withheld to protect a small one. \
         {NOT_RELEASED} marks a figure this kind of period does not carry: months carry the headline figures, quarters add the age groups and outcomes, \
         financial years carry every breakdown, and the programme to date (published at financial-year ends) counts people.\n\n"
    ));
    let sites = sites_in(report);
    let mut t = Table::new([
        "site",
        "ONS code",
        "adults",
        "latest with new people",
        "disclosure policy",
    ]);
    for s in report
        .sites
        .iter()
        .filter(|s| sites.iter().any(|(c, _)| c == &s.code))
    {
        t.row([
            s.name.clone(),
            s.code.clone(),
            thousands(s.adult_population),
            s.latest_with_figures.clone().unwrap_or_else(|| "-".into()),
            s.policy
                .as_ref()
                .map_or_else(|| "no submission yet".into(), |p| p.text.clone()),
        ]);
    }
    out.push_str(&t.render());
    if let Some(s) = &report.summary {
        out.push_str(&format!(
            "\n{} sites submitted for {}{}. Counts, then the rate per 10,000 adults or, for proportions, the share of the denominator:\n\n",
            s.sites_submitted,
            s.period_description,
            if s.level_2_only {
                ", Level 2 (longer-term support) alone"
            } else {
                ""
            }
        ));
        out.push_str(&summary_table(report, None));
        out.push_str(&cost_notes(s));
        if s.period != s.period_description {
            out.push_str(
                "People over a financial year or the programme to date are distinct people, counted once however many quarters they were supported in: never add quarters up to get them.\n",
            );
        }
    }
    for c in &report.comparisons {
        out.push_str(&format!(
            "\n{} ({}), by period:\n\n",
            c.metric.label, c.metric.id
        ));
        let mut t = Table::new(site_header("period", &sites));
        for p in &c.periods {
            t.row(period_row(p.period.clone(), &sites, p, c.metric.proportion));
        }
        out.push_str(&t.render());
        let trends: Vec<String> = c
            .trends
            .iter()
            .map(|t| format!("{} {}", t.site_name, t.direction))
            .collect();
        if !trends.is_empty() {
            out.push_str(&format!("trend: {}\n", trends.join("; ")));
        }
    }
    if !report.glossary.is_empty() {
        out.push_str("\nWhat each figure counts:\n");
        for (labels, description) in report.glossary_grouped() {
            out.push_str(&format!("  {}: {description}\n", labels.join("; ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_numbers_group() {
        let mut t = Table::new(["a", "bb"]);
        t.row(["xxx", "y"]);
        assert_eq!(t.render(), "a    bb\n---  --\nxxx  y\n");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
