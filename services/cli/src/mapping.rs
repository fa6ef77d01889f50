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
use crate::error::{CliError, TomlProblem};

/// Why a mapping file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The file is not TOML of the mapping's shape.
    #[error(transparent)]
    Toml(TomlProblem),
    /// `[columns]` names a column lacnet does not have.
    #[error(
        "[columns]: `{name}` is not a lacnet column (they are: {})",
        column_names()
    )]
    NotAColumn {
        /// The name given.
        name: String,
    },
    /// A `[codes.<field>]` table for a column lacnet does not have.
    #[error("[codes.{field}]: `{field}` is not a lacnet column")]
    NotACodedColumn {
        /// The field named.
        field: String,
    },
    /// A code maps onto a value the field does not accept.
    #[error("[codes.{}]: {theirs:?} maps to {ours:?}: not a lacnet {} value", field.name(), field.name())]
    BadTarget {
        /// The field.
        field: Field,
        /// The export's code.
        theirs: String,
        /// The value it maps to.
        ours: String,
    },
    /// `outcomes_separator = ""`.
    #[error("[format]: outcomes_separator must not be empty")]
    EmptySeparator,
}

/// A code in a file that a field's `[codes.*]` table does not map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unmapped code {:?}: add it under [codes.{}] in the mapping file", echo(code), field.name())]
pub struct UnmappedCode {
    /// The field.
    pub field: Field,
    /// The code as it stands in the file.
    pub code: String,
}

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
        Mapping::parse(&text).map_err(|source| CliError::Mapping {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses mapping text and checks every name and target value in it.
    pub fn parse(text: &str) -> Result<Mapping, MappingError> {
        let m: Mapping =
            toml::from_str(text).map_err(|e| MappingError::Toml(TomlProblem::new(text, &e)))?;
        let known = |name: &str| COLUMNS.iter().any(|c| c.name == name);
        if let Some(name) = m.columns.keys().find(|ours| !known(ours)) {
            return Err(MappingError::NotAColumn { name: name.clone() });
        }
        for (field, table) in &m.codes {
            let Some(col) = COLUMNS.iter().find(|c| c.name == field) else {
                return Err(MappingError::NotACodedColumn {
                    field: field.clone(),
                });
            };
            if let Some((theirs, ours)) = table.iter().find(|(_, ours)| !col.field.accepts(ours)) {
                return Err(MappingError::BadTarget {
                    field: col.field,
                    theirs: theirs.clone(),
                    ours: ours.clone(),
                });
            }
        }
        if m.format.outcomes_separator.is_empty() {
            return Err(MappingError::EmptySeparator);
        }
        Ok(m)
    }

    /// The export's column name for a lacnet column.
    pub fn source_column<'a>(&'a self, ours: &'a str) -> &'a str {
        self.columns.get(ours).map_or(ours, String::as_str)
    }

    /// Translates one code of `field`. `Ok(None)` when the field has no code table.
    pub fn translate(&self, field: Field, value: &str) -> Result<Option<String>, UnmappedCode> {
        let Some(table) = self.codes.get(field.name()) else {
            return Ok(None);
        };
        match table.get(value) {
            Some(v) => Ok(Some(v.clone())),
            None if field.is_canonical_code(value) => Ok(Some(value.to_owned())),
            None => Err(UnmappedCode {
                field,
                code: value.to_owned(),
            }),
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
        assert_eq!(
            err,
            UnmappedCode {
                field: Field::PrimaryNeed,
                code: "ZZ".into()
            }
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
        let err = t(Field::PrimaryNeed, &long).unwrap_err().to_string();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn bad_targets_and_names_are_refused() {
        let err = Mapping::parse("[codes.primary_need]\nMH = \"mental\"\n").unwrap_err();
        assert!(
            matches!(&err, MappingError::BadTarget { field: Field::PrimaryNeed, theirs, ours } if theirs == "MH" && ours == "mental"),
            "{err}"
        );
        let err = Mapping::parse("[columns]\nneed = \"Need\"\n").unwrap_err();
        assert!(
            matches!(&err, MappingError::NotAColumn { name } if name == "need"),
            "{err}"
        );
        let err = Mapping::parse("[format]\ndate = \"mm/dd/yy\"\n").unwrap_err();
        assert!(
            matches!(&err, MappingError::Toml(p) if p.position.is_some_and(|(line, _)| line == 2)),
            "{err}"
        );
        let err = Mapping::parse("[format]\noutcomes_separator = \"\"\n").unwrap_err();
        assert_eq!(err, MappingError::EmptySeparator);
    }
}
