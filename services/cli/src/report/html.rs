//! The report as one self-contained HTML page: inline CSS and inline SVG
//! charts, no scripts, no fonts or images fetched from anywhere, so it opens
//! offline, on a phone, and prints.
//!
//! Charts: each metric as a bar chart of sites with the network median; a
//! funnel plot (share against denominator, with 95% and 99.8% control
//! limits) for proportions; trend lines across periods; cost avoided per
//! site. A suppressed value is drawn as a hatched "suppressed" band and its
//! trend line breaks, never a bar or point at zero.

use std::fmt::Write;

use lacnet_core::compare::funnel_limits;

use super::model::{ComparisonView, CountView, MetricPeriod, PeriodView, Report};
use super::table::{sites_in, thousands};

/// Metric groups drawn as bar charts in the summary.
const BAR_GROUPS: &[&str] = &["headline", "support_level", "age_group", "outcome"];
/// Proportions drawn as funnel plots.
const FUNNEL_METRICS: &[&str] = &[
    "support_level.level_2",
    "age_group.65_plus",
    "primary_need.mental_health",
    "outcome.community_connection",
];
/// One colour per site, in order (colour-blind-safe palette).
const PALETTE: &[&str] = &[
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ink: #1b1b1b; --muted: #5f6368; --rule: #d0d4d9; --bg: #ffffff; --panel: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: var(--ink); background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; border-bottom: 2px solid var(--rule); padding-bottom: 0.25rem; }
h3 { font-size: 1rem; margin: 0 0 0.25rem; }
p.lead, .muted { color: var(--muted); }
.note { background: var(--panel); border-left: 4px solid #0072b2; padding: 0.5rem 0.75rem; margin: 0.75rem 0; }
.note ul { margin: 0.25rem 0 0; padding-left: 1.25rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 1rem; }
figure.wide { max-width: 720px; }
figure { margin: 0; padding: 0.75rem; background: var(--panel); border-radius: 6px; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 0.25rem; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 11.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
svg .small { font-size: 10px; fill: var(--muted); }
svg .supp { font-style: italic; fill: #6b4e00; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.suppressed { font-style: italic; color: #6b4e00; background: repeating-linear-gradient(135deg, #fff3cd, #fff3cd 4px, #ffffff 4px, #ffffff 8px); }
.key span { display: inline-block; margin-right: 1rem; white-space: nowrap; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.3em; vertical-align: -0.05em; }
details summary { cursor: pointer; font-weight: 600; }
dl.glossary dt { font-weight: 600; margin-top: 0.5rem; }
dl.glossary dd { margin: 0 0 0 1rem; color: var(--muted); }
figure .empty { padding: 2rem 0.5rem; color: var(--muted); }
@media (max-width: 600px) { body { font-size: 15px; } main { padding: 0.5rem; } .grid { grid-template-columns: 1fr; } }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  figure { background: none; border: 1px solid var(--rule); }
  .grid { grid-template-columns: 1fr 1fr; }
  details > *:not(summary) { display: block; }
}
"#;

/// Renders the report.
pub fn render(report: &Report) -> String {
    let sites = sites_in(report);
    let colour = |code: &str| {
        let i = sites.iter().position(|(c, _)| c == code).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let mut h = String::new();
    head(&mut h, report, &sites, &colour);
    policies(&mut h, report);
    if let Some(summary) = &report.summary {
        summary_sections(&mut h, report, summary, &colour);
    }
    if !report.comparisons.is_empty() {
        h.push_str("<h2 id=\"trends\">Trends across periods</h2>\n<div class=\"grid\">\n");
        for c in &report.comparisons {
            trend_chart(&mut h, c, &colour);
        }
        h.push_str("</div>\n");
    }
    data_table(&mut h, report);
    if !report.glossary.is_empty() {
        h.push_str("<h2 id=\"glossary\">What each figure counts</h2>\n<dl class=\"glossary\">\n");
        for (labels, description) in report.glossary_grouped() {
            let _ = writeln!(
                h,
                "<dt>{}</dt><dd>{}</dd>",
                esc(&labels.join("; ")),
                esc(description)
            );
        }
        h.push_str("</dl>\n");
    }
    h.push_str(
        "<p class=\"muted\">Made by <code>lacnet report --format html</code>. This page loads nothing from the network.</p>\n\
         </main>\n</body>\n</html>\n",
    );
    h
}

/// The document's head, title, period rule, notes, the sites' colour key
/// and what "suppressed" means.
fn head(
    h: &mut String,
    report: &Report,
    sites: &[(String, String)],
    colour: &dyn Fn(&str) -> &'static str,
) {
    let _ = writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>",
        esc(&report.title)
    );
    // One hatch pattern for every chart's suppressed band.
    h.push_str(
        "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\"><defs>\
         <pattern id=\"hatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"8\" height=\"8\" fill=\"#fff8e1\"/><rect width=\"4\" height=\"8\" fill=\"#ffe08a\"/></pattern></defs></svg>\n",
    );
    let _ = writeln!(
        h,
        "<h1>{}</h1>\n<p class=\"lead\">Pulled from the LAC Network hub on {}. Aggregates only: every count was \
         protected by its site before it left the council.</p>",
        esc(&report.title),
        esc(&report.pulled_on)
    );
    if let Some(rule) = &report.period_rule {
        let _ = writeln!(h, "<p>{}</p>", esc(rule));
    }
    for note in &report.notes {
        let _ = writeln!(
            h,
            "<p class=\"note\"><strong>Note:</strong> {}</p>",
            esc(note)
        );
    }
    let key: String = sites
        .iter()
        .map(|(code, name)| {
            format!(
                "<span><i class=\"swatch\" style=\"background:{}\"></i>{}</span>",
                colour(code),
                esc(name)
            )
        })
        .collect();
    let _ = writeln!(h, "<p class=\"key\">{key}</p>");
    h.push_str(
        "<p class=\"note\"><span class=\"suppressed\">&nbsp;suppressed&nbsp;</span> marks a count withheld by \
         disclosure control: a small count (from 0 to the site's threshold) or a larger one withheld so that a \
         small one cannot be worked out. It may be zero, and it is never drawn as a value: bars show a hatched \
         band, and trend lines break.</p>\n",
    );
}

/// The summary's sections: cost avoided, each metric across sites, and funnel plots.
fn summary_sections(
    h: &mut String,
    report: &Report,
    summary: &super::model::SummaryView,
    colour: &dyn Fn(&str) -> &'static str,
) {
    let _ = writeln!(
        h,
        "<h2 id=\"cost\">Estimated cost avoided, {}{}</h2>",
        esc(&summary.period_description),
        if summary.level_2_only {
            ", Level 2 alone"
        } else {
            ""
        }
    );
    cost_chart(h, report, colour);
    let _ = writeln!(
        h,
        "<h2 id=\"metrics\">Each metric across sites, {}</h2>\n<p class=\"muted\">Counts are compared as rates per \
         10,000 adult residents; proportions as the share of their denominator. The dashed line is the network median.</p>\n<div class=\"grid\">",
        esc(&summary.period)
    );
    for m in summary
        .metrics
        .iter()
        .filter(|m| BAR_GROUPS.contains(&m.metric.group.as_str()))
    {
        bar_chart(h, m, colour);
    }
    h.push_str("</div>\n");
    let funnels: Vec<&MetricPeriod> = summary
        .metrics
        .iter()
        .filter(|m| FUNNEL_METRICS.contains(&m.metric.id.as_str()))
        .collect();
    if !funnels.is_empty() {
        h.push_str(
            "<h2 id=\"funnel\">Funnel plots</h2>\n<p class=\"muted\">Each site's share against the size of its \
             denominator. Inside the inner funnel (95%) a difference from the network is within chance; outside the \
             outer funnel (99.8%) it is unlikely to be chance.</p>\n<div class=\"grid\">\n",
        );
        for m in funnels {
            funnel_plot(h, m, colour);
        }
        h.push_str("</div>\n");
    }
}

fn policies(h: &mut String, report: &Report) {
    h.push_str("<h2 id=\"policy\">Sites and their disclosure policies</h2>\n");
    if let Some(p) = &report.network_policy {
        let _ = writeln!(
            h,
            "<p>Network policy (every submission must meet it): {}.</p>",
            esc(&p.text)
        );
    }
    h.push_str(
        "<div class=\"table-wrap\"><table><thead><tr><th>Site</th><th>ONS code</th><th class=\"num\">Adults (18+)</th>\
         <th>Disclosure policy applied</th><th>Latest period with new people</th><th>Latest release</th></tr></thead><tbody>\n",
    );
    let shown = sites_in(report);
    for s in report
        .sites
        .iter()
        .filter(|s| shown.iter().any(|(c, _)| c == &s.code))
    {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.code),
            thousands(s.adult_population),
            s.policy
                .as_ref()
                .map_or_else(|| "no submission yet".into(), |p| esc(&p.text)),
            esc(s.latest_with_figures.as_deref().unwrap_or("-")),
            esc(&last_release(s)),
        );
    }
    h.push_str("</tbody></table></div>\n");
}

/// "2014-Q1 (published 2026-11-30, revised)": the period, the day, and
/// whether it was revised; never a revision number or a time.
fn last_release(s: &super::model::SiteView) -> String {
    // The latest month or quarter published (often one with every figure
    // withheld: agents publish up to the present); a financial year sent
    // beside its quarter is not "latest" in that sense.
    let Some(period) = s.latest_period.as_ref().or(s.last_period.as_ref()) else {
        return "-".into();
    };
    let revised = if s.last_revised { ", revised" } else { "" };
    match &s.last_published_on {
        Some(day) => format!("{period} (published {day}{revised})"),
        None => period.clone(),
    }
}

fn fmt_value(proportion: bool, x: f64) -> String {
    if proportion {
        format!("{:.0}%", x * 100.0)
    } else {
        format!("{x:.1}")
    }
}

/// A "nice" upper bound for an axis.
fn nice_max(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(x.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if x <= step * mag {
            return step * mag;
        }
    }
    10.0 * mag
}

fn bar_chart(h: &mut String, m: &MetricPeriod, colour: &dyn Fn(&str) -> &'static str) {
    let proportion = m.metric.proportion;
    let p = &m.comparison;
    let metric_of = |v: &super::model::SiteValue| if proportion { v.share } else { v.rate_per_10k };
    let median = if proportion {
        p.median_share
    } else {
        p.median_rate
    };
    let max = p
        .sites
        .iter()
        .filter_map(metric_of)
        .chain(median)
        .fold(0.0, f64::max);
    let max = nice_max(max);
    let (left, right, top, row) = (84.0, 286.0, 24.0, 24.0);
    let height = top + row * p.sites.len() as f64 + 22.0;
    let width = right - left;
    let _ = write!(
        h,
        "<figure><h3>{}</h3><svg viewBox=\"0 0 360 {height}\" role=\"img\" aria-label=\"{} by site\">",
        esc(&m.metric.label),
        esc(&m.metric.label)
    );
    let unit = if proportion {
        "share of the denominator"
    } else {
        "per 10,000 adults"
    };
    let _ = write!(
        h,
        "<text x=\"{left}\" y=\"14\" class=\"small\">{unit}</text>"
    );
    let scale = BarScale {
        left,
        width,
        row,
        max,
        proportion,
    };
    for (i, s) in p.sites.iter().enumerate() {
        let y = top + row * i as f64;
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + row * 0.55,
            esc(&s.site_name)
        );
        bar_row(h, &scale, y, s, metric_of(s), colour);
    }
    if let Some(md) = median {
        let x = left + md / max * width;
        let bottom = top + row * p.sites.len() as f64;
        let _ = write!(
            h,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{bottom}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{x:.1}\" y=\"{}\" class=\"small\" text-anchor=\"middle\">median {}</text>",
            top - 2.0,
            bottom + 14.0,
            fmt_value(proportion, md)
        );
    }
    let _ = writeln!(
        h,
        "</svg><figcaption>{} sites known, {} suppressed. Axis to {}.</figcaption></figure>",
        p.sites_known,
        p.sites_suppressed,
        fmt_value(proportion, max)
    );
}

/// Where a bar chart's bars go: from `left`, `width` wide for `max`, one `row` per site.
#[derive(Clone, Copy)]
struct BarScale {
    left: f64,
    width: f64,
    row: f64,
    max: f64,
    proportion: bool,
}

/// One site's bar (or why there is none) at height `y`; `x` is its rate or share.
fn bar_row(
    h: &mut String,
    scale: &BarScale,
    y: f64,
    s: &super::model::SiteValue,
    x: Option<f64>,
    colour: &dyn Fn(&str) -> &'static str,
) {
    let BarScale {
        left,
        width,
        row,
        max,
        proportion,
    } = *scale;
    match (s.value, x) {
        (CountView::Value(n), Some(x)) => {
            let w = (x / max * width).max(1.0);
            let _ = write!(
                h,
                "<rect class=\"bar\" x=\"{left}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" class=\"small\">{} ({n})</text>",
                y + 4.0,
                row - 8.0,
                colour(&s.site_code),
                left + w + 4.0,
                y + row * 0.55,
                fmt_value(proportion, x),
            );
        }
        (CountView::Value(n), None) => {
            let _ = write!(
                h,
                "<text x=\"{left}\" y=\"{}\" class=\"small\">{n} (no rate)</text>",
                y + row * 0.55
            );
        }
        (CountView::NotReleased, _) => {
            let _ = write!(
                h,
                "<text x=\"{}\" y=\"{}\" class=\"small\">not released for this kind of period</text>",
                left + 6.0,
                y + row * 0.55,
            );
        }
        (CountView::Suppressed, _) => {
            let _ = write!(
                h,
                "<rect class=\"suppressed-band\" x=\"{left}\" y=\"{}\" width=\"{width}\" height=\"{}\" fill=\"url(#hatch)\" opacity=\"0.8\"/>\
                 <text x=\"{}\" y=\"{}\" class=\"supp\">withheld (may be 0)</text>",
                y + 4.0,
                row - 8.0,
                left + 6.0,
                y + row * 0.55,
            );
        }
    }
}

fn cost_chart(h: &mut String, report: &Report, colour: &dyn Fn(&str) -> &'static str) {
    let Some(s) = &report.summary else { return };
    if s.cost_avoided.is_empty() {
        h.push_str("<p>No site has outcomes with an agreed unit cost in this period.</p>\n");
        return;
    }
    let max = nice_max(s.cost_avoided.iter().map(|c| c.pounds).fold(0.0, f64::max));
    let (left, right, top, row) = (100.0, 440.0, 10.0, 30.0);
    let height = top + row * s.cost_avoided.len() as f64 + 10.0;
    let _ = write!(
        h,
        "<figure class=\"wide\"><svg viewBox=\"0 0 600 {height}\" role=\"img\" aria-label=\"Estimated cost avoided by site\">"
    );
    for (i, c) in s.cost_avoided.iter().enumerate() {
        let y = top + row * i as f64;
        let w = (c.pounds / max * (right - left)).max(1.0);
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{left}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\" class=\"small\">£{}{}</text>",
            left - 8.0,
            y + row * 0.55,
            esc(&c.site_name),
            y + 4.0,
            row - 10.0,
            colour(&c.site_code),
            left + w + 6.0,
            y + row * 0.55,
            thousands(c.pounds.round() as u64),
            if c.partial { " at least" } else { "" },
        );
    }
    let _ = writeln!(
        h,
        "</svg><figcaption>Network total £{}. People who achieved each outcome times the network's agreed unit \
         costs, each person's outcome charged once (an outcome counts in the period it was achieved, and once per \
         person over a financial year or the programme to date); \"at least\" means some outcome counts were \
         suppressed and add nothing. Level 2 alone: {}.</figcaption></figure>",
        thousands(s.network_cost_avoided_pounds.round() as u64),
        esc(&s
            .cost_avoided
            .iter()
            .map(|c| if c.level_2_released {
                format!(
                    "{} £{}{}",
                    c.site_name,
                    thousands(c.level_2_pounds.round() as u64),
                    if c.level_2_partial { " (at least)" } else { "" }
                )
            } else {
                format!(
                    "{} not released for this kind of period (published for financial years)",
                    c.site_name
                )
            })
            .collect::<Vec<_>>()
            .join("; "))
    );
    if !s.cost_exclusions.is_empty() {
        // One box, the list inside it: a heading box and a list box read as
        // two notes, and the bullets fell outside the border.
        h.push_str("<div class=\"note\"><strong>Not costed:</strong>\n<ul>\n");
        for (label, reason) in &s.cost_exclusions {
            let _ = writeln!(h, "<li>{}: {}</li>", esc(label), esc(reason));
        }
        h.push_str("</ul></div>\n");
    }
}

fn funnel_plot(h: &mut String, m: &MetricPeriod, colour: &dyn Fn(&str) -> &'static str) {
    let p = &m.comparison;
    if let Some(why) = no_funnel(p) {
        // An empty box reads as "no difference"; say what is missing instead.
        let _ = writeln!(
            h,
            "<figure><h3>{}</h3><p class=\"empty\">No funnel plot: {}</p></figure>",
            esc(&m.metric.label),
            esc(why)
        );
        return;
    }
    let (left, right, top, bottom) = (38.0, 350.0, 14.0, 206.0);
    let known: Vec<(&super::model::SiteValue, f64, u64)> = p
        .sites
        .iter()
        .filter_map(|s| Some((s, s.share?, s.denominator?.value()?)))
        .collect();
    let n_max = nice_max(known.iter().map(|k| k.2 as f64).fold(10.0, f64::max) * 1.1);
    let y_max = nice_max(
        known
            .iter()
            .map(|k| k.1)
            .chain(known.iter().filter_map(|k| k.0.limits.map(|l| l.upper_998)))
            .fold(0.05, f64::max)
            .min(1.0),
    )
    .min(1.0);
    let plot = Funnel {
        left,
        right,
        top,
        bottom,
        n_max,
        y_max,
    };
    let _ = write!(
        h,
        "<figure><h3>{}</h3><svg viewBox=\"0 0 360 240\" role=\"img\" aria-label=\"Funnel plot of {}\">",
        esc(&m.metric.label),
        esc(&m.metric.label)
    );
    // Axes.
    let _ = write!(
        h,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" class=\"small\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" class=\"small\" text-anchor=\"end\">0%</text>\
         <text x=\"{right}\" y=\"{}\" class=\"small\" text-anchor=\"end\">{} (denominator: {})</text>",
        left - 4.0,
        top + 4.0,
        fmt_value(true, y_max),
        left - 4.0,
        bottom,
        bottom + 16.0,
        thousands(n_max as u64),
        esc(m.metric.denominator.as_deref().unwrap_or("?")),
    );
    if let Some(target) = p.funnel_target {
        plot.target_and_limits(h, target);
    }
    for (s, share, n) in &known {
        let _ = write!(
            h,
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\" stroke=\"#fff\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"small\">{}</text>",
            plot.sx(*n as f64),
            plot.sy(*share),
            colour(&s.site_code),
            plot.sx(*n as f64) + 8.0,
            plot.sy(*share) - 6.0,
            esc(&s.site_name)
        );
    }
    let missing: Vec<String> = p
        .sites
        .iter()
        .filter(|s| s.share.is_none())
        .map(|s| esc(&s.site_name))
        .collect();
    let _ = writeln!(
        h,
        "</svg><figcaption>Solid lines: 95% limits; dotted: 99.8%.{}</figcaption></figure>",
        if missing.is_empty() {
            String::new()
        } else {
            format!(" Not plotted (suppressed): {}.", missing.join(", "))
        }
    );
}

/// Why a funnel plot has no point to draw, or `None` when it has one.
fn no_funnel(p: &super::model::PeriodView) -> Option<&'static str> {
    if p.sites.iter().any(|s| s.share.is_some()) {
        return None;
    }
    Some(if p.sites.is_empty() {
        "No site published this period."
    } else if p.sites.iter().all(|s| s.value == CountView::NotReleased) {
        "This kind of period does not carry this figure."
    } else {
        "No site's share can be plotted: each count or its denominator was withheld by disclosure \
         control (it may be zero) or is not carried by this kind of period."
    })
}

/// A funnel plot's frame: denominators 0..`n_max` across, shares 0..`y_max` up.
struct Funnel {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    n_max: f64,
    y_max: f64,
}

impl Funnel {
    fn sx(&self, n: f64) -> f64 {
        self.left + n / self.n_max * (self.right - self.left)
    }

    fn sy(&self, v: f64) -> f64 {
        self.bottom - v / self.y_max * (self.bottom - self.top)
    }

    /// The network's share as a dashed line, and the 95% and 99.8% control
    /// limits around it.
    fn target_and_limits(&self, h: &mut String, target: f64) {
        let (left, right) = (self.left, self.right);
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"small\">network {}</text>",
            left + 4.0,
            self.sy(target) - 4.0,
            fmt_value(true, target),
            y = self.sy(target)
        );
        // Control limits drawn from the same formula the hub uses.
        let steps = 60;
        let mut paths = [String::new(), String::new(), String::new(), String::new()];
        for i in 1..=steps {
            let n = (self.n_max * i as f64 / steps as f64).max(1.0);
            let l = funnel_limits(target, n.round() as u64);
            for (k, v) in [l.lower_95, l.upper_95, l.lower_998, l.upper_998]
                .into_iter()
                .enumerate()
            {
                let _ = write!(
                    paths[k],
                    "{}{:.1},{:.1} ",
                    if i == 1 { "M" } else { "L" },
                    self.sx(n),
                    self.sy(v.min(self.y_max))
                );
            }
        }
        for (k, d) in paths.iter().enumerate() {
            let (stroke, dash) = if k < 2 {
                ("#777", "")
            } else {
                ("#bbb", " stroke-dasharray=\"2 2\"")
            };
            let _ = write!(
                h,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{stroke}\"{dash}/>"
            );
        }
    }
}

/// One site's trend line through `values` (per period: a value, suppressed,
/// or not published), drawn with `(sx, sy)`; returns how many suppressed
/// periods it marked under the axis at `bottom`.
fn trend_line(
    h: &mut String,
    values: &[Option<Option<f64>>],
    (sx, sy): (&dyn Fn(usize) -> f64, &dyn Fn(f64) -> f64),
    bottom: f64,
    col: &str,
) -> usize {
    let mut suppressed_marks = 0;
    let mut d = String::new();
    let mut pen_down = false;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(Some(v)) => {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    sx(i),
                    sy(*v)
                );
                pen_down = true;
                let _ = write!(
                    h,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{col}\"/>",
                    sx(i),
                    sy(*v)
                );
            }
            Some(None) => {
                // Suppressed: the line breaks and a hollow marker sits in the band above the axis.
                pen_down = false;
                suppressed_marks += 1;
                let _ = write!(
                    h,
                    "<rect class=\"suppressed-mark\" x=\"{:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"url(#hatch)\" stroke=\"{col}\"/>",
                    sx(i) - 5.0,
                    bottom + 22.0
                );
            }
            None => pen_down = false,
        }
    }
    if !d.is_empty() {
        let _ = write!(
            h,
            "<path class=\"trend\" d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"/>"
        );
    }
    suppressed_marks
}

fn trend_chart(h: &mut String, c: &ComparisonView, colour: &dyn Fn(&str) -> &'static str) {
    let proportion = c.metric.proportion;
    let (left, right, top, bottom) = (38.0, 340.0, 18.0, 186.0);
    let value = |p: &PeriodView, code: &str| -> Option<Option<f64>> {
        let s = p.sites.iter().find(|s| s.site_code == code)?;
        Some(if proportion { s.share } else { s.rate_per_10k })
    };
    let mut codes: Vec<(String, String)> = Vec::new();
    for p in &c.periods {
        for s in &p.sites {
            if !codes.iter().any(|(code, _)| code == &s.site_code) {
                codes.push((s.site_code.clone(), s.site_name.clone()));
            }
        }
    }
    let max = nice_max(
        c.periods
            .iter()
            .flat_map(|p| {
                codes
                    .iter()
                    .filter_map(move |(code, _)| value(p, code).flatten())
            })
            .fold(0.0, f64::max),
    );
    let n = c.periods.len().max(1);
    let sx = |i: usize| {
        if n == 1 {
            (left + right) / 2.0
        } else {
            left + (right - left) * i as f64 / (n - 1) as f64
        }
    };
    let sy = |v: f64| bottom - v / max * (bottom - top);
    let unit = if proportion {
        "share"
    } else {
        "per 10,000 adults"
    };
    let _ = write!(
        h,
        "<figure><h3>{}</h3><svg viewBox=\"0 0 360 236\" role=\"img\" aria-label=\"Trend of {}\">\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" class=\"small\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{bottom}\" class=\"small\" text-anchor=\"end\">0</text>\
         <text x=\"{}\" y=\"10\" class=\"small\">{unit}</text>",
        esc(&c.metric.label),
        esc(&c.metric.label),
        left - 4.0,
        top + 4.0,
        fmt_value(proportion, max),
        left - 4.0,
        left + 4.0,
    );
    for (i, p) in c.periods.iter().enumerate() {
        // Label every period when few, else every other one, so labels never overlap.
        if n <= 5 || (n - 1 - i) % 2 == 0 {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{}\" class=\"small\" text-anchor=\"middle\">{}</text>",
                sx(i),
                bottom + 16.0,
                esc(&p.period)
            );
        }
    }
    let mut suppressed_marks = 0;
    for (code, _) in &codes {
        let values: Vec<Option<Option<f64>>> = c.periods.iter().map(|p| value(p, code)).collect();
        suppressed_marks += trend_line(h, &values, (&sx, &sy), bottom, colour(code));
    }
    let trends: Vec<String> = c
        .trends
        .iter()
        .map(|t| format!("{} {}", esc(&t.site_name), esc(&t.direction)))
        .collect();
    let _ = writeln!(
        h,
        "</svg><figcaption>{}{}</figcaption></figure>",
        if trends.is_empty() {
            String::new()
        } else {
            format!("Trend: {}.", trends.join("; "))
        },
        if suppressed_marks > 0 {
            " Hatched squares under the axis mark suppressed periods (the line breaks there)."
        } else {
            ""
        }
    );
}

fn data_table(h: &mut String, report: &Report) {
    let Some(s) = &report.summary else { return };
    let sites = sites_in(report);
    let _ = write!(
        h,
        "<h2 id=\"data\">All figures, {}</h2>\n<details open><summary>Every metric by site</summary>\
         <div class=\"table-wrap\"><table><thead><tr><th>Metric</th>",
        esc(&s.period)
    );
    for (_, name) in &sites {
        let _ = write!(h, "<th class=\"num\">{}</th>", esc(name));
    }
    h.push_str("</tr></thead><tbody>\n");
    for m in &s.metrics {
        let _ = write!(h, "<tr><td>{}</td>", esc(&m.metric.label));
        for (code, _) in &sites {
            match m.comparison.sites.iter().find(|v| &v.site_code == code) {
                Some(v) if v.value == CountView::Suppressed => {
                    h.push_str("<td class=\"num suppressed\">suppressed</td>");
                }
                Some(v) => {
                    let _ = write!(
                        h,
                        "<td class=\"num\">{}</td>",
                        esc(&super::table::cell(v, m.metric.proportion))
                    );
                }
                None => h.push_str("<td class=\"num\">-</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    // Every rate's denominator, with its year and caveat, under the figures it divides.
    h.push_str("<tr><td>Adults (18+) the rates divide by</td>");
    for (code, _) in &sites {
        let v = s
            .metrics
            .iter()
            .flat_map(|m| m.comparison.sites.iter())
            .find(|v| &v.site_code == code);
        match v {
            Some(v) => {
                let _ = write!(
                    h,
                    "<td class=\"num\">{}{}</td>",
                    thousands(v.adult_population),
                    v.population_note.as_deref().map_or_else(
                        || v.population_year
                            .map(|y| format!(" (mid-{y})"))
                            .unwrap_or_default(),
                        |n| format!(" ({})", esc(n))
                    )
                );
            }
            None => h.push_str("<td class=\"num\">-</td>"),
        }
    }
    h.push_str("</tr>\n</tbody></table></div></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_funnel_with_no_published_point_says_why_instead_of_an_empty_box() {
        use super::super::model::{MetricInfoView, SiteValue};
        let site = |value| SiteValue {
            site_code: "E06000034".into(),
            site_name: "Thurrock".into(),
            value,
            denominator: Some(CountView::Value(40)),
            rate_per_10k: None,
            share: None,
            rank: None,
            funnel: None,
            limits: None,
            adult_population: 134_700,
            population_year: Some(2022),
            population_approximate: true,
            population_note: None,
        };
        let metric = |sites| MetricPeriod {
            metric: MetricInfoView {
                id: "outcome.volunteering".into(),
                label: "Volunteering".into(),
                group: "outcome".into(),
                proportion: true,
                denominator: Some("people_active".into()),
                unit_cost_pence: None,
                unit_cost_excluded_reason: None,
                across_periods: "distinct".into(),
                support_level: None,
            },
            comparison: PeriodView {
                period: "2016-Q1".into(),
                sites,
                median_value: None,
                median_rate: None,
                median_share: None,
                funnel_target: None,
                sites_known: 0,
                sites_suppressed: 1,
            },
        };
        let colour = |_: &str| "#000000";
        for (sites, why) in [
            (
                vec![site(CountView::Suppressed)],
                "withheld by disclosure control (it may be zero)",
            ),
            (
                vec![site(CountView::NotReleased)],
                "does not carry this figure",
            ),
            (Vec::new(), "No site published this period"),
        ] {
            let mut h = String::new();
            funnel_plot(&mut h, &metric(sites), &colour);
            assert!(h.contains("No funnel plot: ") && h.contains(why), "{h}");
            assert!(!h.contains("<svg"), "no empty box: {h}");
        }
    }

    #[test]
    fn text_is_escaped_and_axes_are_nice() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(0.23), 0.25);
        assert_eq!(nice_max(130.0), 200.0);
    }
}
