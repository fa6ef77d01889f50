//! The report as pretty-printed JSON. Suppressed counts are the string
//! `"suppressed"`, never `0`, and absent rates are `null`.

use super::model::Report;
use crate::error::CliError;

/// Renders the report.
pub fn render(report: &Report) -> Result<String, CliError> {
    Ok(serde_json::to_string_pretty(report)? + "\n")
}
