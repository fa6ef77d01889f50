//! `lacnet report`: pulls cross-site comparisons from the hub as an analyst
//! and renders them as a terminal table, CSV (for spreadsheets), JSON, or one
//! self-contained HTML page with inline SVG charts.
//!
//! [`model`] fetches and flattens the hub's replies into one serialisable
//! [`model::Report`]; each renderer works from that alone, so every format
//! shows the same numbers, and a suppressed value is the same marker in all.

pub mod csv;
pub mod html;
pub mod json;
pub mod model;
pub mod table;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use lacnet_clock::Clock;

use crate::Outcome;
use crate::config::{EndpointFlags, HubFlags};
use crate::error::CliError;
use model::parse_period;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for a terminal.
    Table,
    /// Comma-separated values with a header, one row per site, metric and period.
    Csv,
    /// The whole report as JSON.
    Json,
    /// One HTML file with inline SVG charts, no network access needed.
    Html,
}

/// `lacnet report`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The network summary for this period: a quarter (YYYY-Qn), month
    /// (YYYY-MM), financial year (FY2024 = April 2024 to March 2025) or
    /// programme to date at a financial-year end (PTD2025-03) [default:
    /// the latest month or quarter that at least half of the sites have
    /// published].
    #[arg(long, conflicts_with = "metric")]
    pub period: Option<String>,
    /// Wait up to this many seconds for figures to arrive when there are
    /// none yet (an agent publishes a few seconds after an import settles).
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Show Level 2 alone (longer-term support: the like-for-like figure sites quote).
    #[arg(long, conflicts_with = "metric")]
    pub level_2: bool,
    /// One metric across sites over --from..--to, e.g. outcome.volunteering.
    #[arg(long, requires_all = ["from", "to"])]
    pub metric: Option<String>,
    /// First period of the range (with --metric).
    #[arg(long)]
    pub from: Option<String>,
    /// Last period of the range (with --metric).
    #[arg(long)]
    pub to: Option<String>,
    /// Quarters (or months) of trend lines in a summary report.
    #[arg(long, default_value_t = 8)]
    pub trend_periods: u32,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub conn: HubFlags,
}

impl ReportArgs {
    /// What to ask the hub for.
    fn request(&self) -> Result<model::Request, CliError> {
        Ok(match &self.metric {
            Some(metric) => model::Request::Metric {
                metric: metric.clone(),
                from: parse_period(self.from.as_deref().unwrap_or_default())?,
                to: parse_period(self.to.as_deref().unwrap_or_default())?,
            },
            None => model::Request::Summary {
                period: self.period.as_deref().map(parse_period).transpose()?,
                trend_periods: self.trend_periods.max(1),
                level_2: self.level_2,
            },
        })
    }
}

/// `lacnet report`: pulls the report (waiting up to `--wait` for figures),
/// renders it and writes it out. [`Outcome::NothingPublished`] when no site
/// had published anything for what was asked.
pub async fn command(args: ReportArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let endpoint = EndpointFlags::from(args.conn.clone()).hub()?;
    let request = args.request()?;
    let mut c = crate::client::reports(&endpoint, clock).await?;
    let deadline = Instant::now() + Duration::from_secs(args.wait.unwrap_or(0));
    let r = loop {
        let r = model::fetch(&mut c, &endpoint.url, &request, clock.now_unix()).await?;
        if !r.nothing_found() || Instant::now() >= deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let text = render(&r, args.format)?;
    if args.format != Format::Table || args.out.is_some() {
        // The table prints them first; other formats carry them in
        // their data, and a reader of the terminal still sees why.
        for note in r.period_rule.iter().chain(&r.notes) {
            eprintln!("{note}");
        }
    }
    match args.out {
        Some(path) => {
            crate::certs::write_file(&path, &text, false)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(if r.nothing_found() {
        Outcome::NothingPublished
    } else {
        Outcome::Done
    })
}

/// Renders `report` in `format`.
pub fn render(report: &model::Report, format: Format) -> Result<String, CliError> {
    Ok(match format {
        Format::Table => table::render(report),
        Format::Csv => csv::render(report)?,
        Format::Json => json::render(report)?,
        Format::Html => html::render(report),
    })
}
