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

use clap::ValueEnum;

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

/// Renders `report` in `format`.
pub fn render(report: &model::Report, format: Format) -> Result<String, crate::error::CliError> {
    Ok(match format {
        Format::Table => table::render(report),
        Format::Csv => csv::render(report)?,
        Format::Json => json::render(report)?,
        Format::Html => html::render(report),
    })
}
