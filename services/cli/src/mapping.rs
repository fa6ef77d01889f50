//! Mapping files (`lacnet import --map FILE`): councils' case systems export
//! CSV with their own column names, date formats and codes. A mapping renames
//! the columns onto lacnet's and translates each code onto a lacnet id, e.g. a
//! case system's `MH` onto `mental_health`.
//!
//! ```toml
//! [columns]                 # lacnet column = the export's column
//! local_case_id = "Case Ref"
//! primary_need = "Need Code"
//!
//! [format]
//! date = "dd/mm/yyyy"       # or "yyyy-mm-dd" (the default)
//! outcomes_separator = "|"  # default ";"
//!
//! [codes.primary_need]      # the export's code = lacnet id
//! MH = "mental_health"
//! ```
//!
//! Once a field has a `[codes.<field>]` table, every non-empty value in that
//! column must be in it or be one of lacnet's own codes for the field (which
//! pass through, so `mental_health` needs no `mental_health = "mental_health"`
//! line): any other code rejects the row and names the code, so nothing is
//! ever filed silently under `other`.
//!
//! Every column named under `[columns]` must be in the file's header: a typo
//! there (`"End date"` for `"End Date"`) fails the import before any row is
//! sent, rather than silently leaving every case open.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::columns::{COLUMNS, Field, echo};
use crate::error::CliError;

/// How dates are written in the export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DateFormat {
    /// `2014-07-31` (lacnet's own format).
    #[default]
    #[serde(rename = "yyyy-mm-dd")]
    Iso,
    /// `31/07/2014`, as UK case systems often export.
    #[serde(rename = "dd/mm/yyyy")]
    DayMonthYear,
}

/// The `[format]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FormatSection {
    /// How dates are written.
    #[serde(default)]
    pub date: DateFormat,
    /// What separates several outcomes in one cell.
    #[serde(default = "default_separator")]
    pub outcomes_separator: String,
}

fn default_separator() -> String {
    ";".to_owned()
}

impl Default for FormatSection {
    fn default() -> Self {
        FormatSection {
            date: DateFormat::Iso,
            outcomes_separator: default_separator(),
        }
    }
}

/// A parsed mapping file. [`Mapping::default`] is the identity: lacnet's own format.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// lacnet column name → the export's column name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Dates and separators.
    #[serde(default)]
    pub format: FormatSection,
    /// Per lacnet field: the export's code → lacnet's value.
    #[serde(default)]
    pub codes: BTreeMap<String, BTreeMap<String, String>>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::io("cannot read the mapping file", path, e))?;
        Mapping::parse(&text).map_err(|detail| CliError::Toml {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parses mapping text and checks every name and target value in it.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let m: Mapping = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let known = |name: &str| COLUMNS.iter().any(|c| c.name == name);
        for ours in m.columns.keys() {
            if !known(ours) {
                return Err(format!(
                    "[columns]: `{ours}` is not a lacnet column (they are: {})",
                    column_names()
                ));
            }
        }
        for (field, table) in &m.codes {
            let Some(col) = COLUMNS.iter().find(|c| c.name == field) else {
                return Err(format!("[codes.{field}]: `{field}` is not a lacnet column"));
            };
            for (theirs, ours) in table {
                if let Err(reason) = col.field.check_value(ours) {
                    return Err(format!(
                        "[codes.{field}]: {theirs:?} maps to {ours:?}: {reason}"
                    ));
                }
            }
        }
        if m.format.outcomes_separator.is_empty() {
            return Err("[format]: outcomes_separator must not be empty".into());
        }
        Ok(m)
    }

    /// The export's column name for a lacnet column.
    pub fn source_column<'a>(&'a self, ours: &'a str) -> &'a str {
        self.columns.get(ours).map_or(ours, String::as_str)
    }

    /// Translates one code of `field`. `Ok(None)` when the field has no code table.
    pub fn translate(&self, field: Field, value: &str) -> Result<Option<String>, String> {
        let Some(table) = self.codes.get(field.name()) else {
            return Ok(None);
        };
        match table.get(value) {
            Some(v) => Ok(Some(v.clone())),
            None if field.is_canonical_code(value) => Ok(Some(value.to_owned())),
            None => Err(format!(
                "unmapped code {:?}: add it under [codes.{}] in the mapping file",
                echo(value),
                field.name()
            )),
        }
    }
}

fn column_names() -> String {
    COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_and_translates() {
        let m = Mapping::parse(include_str!("../examples/casesys-mapping.toml")).unwrap();
        assert_eq!(m.format.date, DateFormat::DayMonthYear);
        assert_eq!(
            m.translate(Field::PrimaryNeed, "MH").unwrap().as_deref(),
            Some("mental_health")
        );
        let err = m.translate(Field::PrimaryNeed, "ZZ").unwrap_err();
        assert!(
            err.contains("\"ZZ\"") && err.contains("[codes.primary_need]"),
            "{err}"
        );
        assert_eq!(m.translate(Field::WardCode, "x").unwrap(), None);
    }

    #[test]
    fn canonical_codes_pass_through_a_code_table() {
        let m = Mapping::parse(
            "[codes.primary_need]\nMH = \"mental_health\"\nother = \"carer\"\n\
             [codes.outcomes]\nVOL = \"volunteering\"\n[codes.support_level]\nL2 = \"2\"\n",
        )
        .unwrap();
        let t = |f, v| m.translate(f, v).map(|o| o.unwrap_or_default());
        assert_eq!(t(Field::PrimaryNeed, "carer").unwrap(), "carer");
        assert_eq!(t(Field::PrimaryNeed, "MH").unwrap(), "mental_health");
        // The table wins over a canonical code it names.
        assert_eq!(t(Field::PrimaryNeed, "other").unwrap(), "carer");
        assert_eq!(
            t(Field::Outcomes, "crisis_avoided").unwrap(),
            "crisis_avoided"
        );
        assert_eq!(t(Field::SupportLevel, "1").unwrap(), "1");
        // Anything else is still refused by name, and quoted bounded.
        assert!(t(Field::PrimaryNeed, "Mental Health").is_err());
        let long = "x".repeat(100_000);
        let err = t(Field::PrimaryNeed, &long).unwrap_err();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn bad_targets_and_names_are_refused() {
        let err = Mapping::parse("[codes.primary_need]\nMH = \"mental\"\n").unwrap_err();
        assert!(err.contains("\"mental\""), "{err}");
        let err = Mapping::parse("[columns]\nneed = \"Need\"\n").unwrap_err();
        assert!(err.contains("`need`"), "{err}");
        assert!(Mapping::parse("[format]\ndate = \"mm/dd/yy\"\n").is_err());
    }
}
