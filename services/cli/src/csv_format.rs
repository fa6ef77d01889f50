//! lacnet's CSV format for records, one row per introduction, with a header.
//! `lacnet generate` writes it and `lacnet import` reads it (directly, or
//! through a [`crate::mapping::Mapping`] from a case system's own export).
//!
//! | column | required | value |
//! |---|---|---|
//! | `local_case_id` | yes | the council's case id for this introduction; once per file (a repeat is rejected, naming the first line) |
//! | `nhs_number` | no | 10 digits (spaces allowed), checked by the agent: modulus 11, and not a number the NHS never issues (`0000000000`) |
//! | `introduced_on` | yes | `YYYY-MM-DD` |
//! | `closed_on` | no | `YYYY-MM-DD`; empty while open |
//! | `support_level` | yes | `1` or `2` |
//! | `age_years` | one of these two | whole years at introduction |
//! | `year_of_birth` | one of these two | e.g. `1950` |
//! | `primary_need` | yes | `older_people_frailty`, `mental_health`, `learning_disability`, `physical_disability`, `sensory_impairment`, `memory_cognition`, `long_term_condition`, `carer`, `social_isolation`, `other` |
//! | `introduction_source` | yes | `self`, `family_friend`, `gp_health`, `adult_social_care`, `mental_health_team`, `housing`, `police_fire`, `voluntary_community`, `other` |
//! | `outcomes` | no | `;`-separated: `crisis_avoided`, `community_connection`, `volunteering`, `alternative_to_day_services`, `reduced_gp_ae_use`, `tenancy_sustained`, `social_care_referral_avoided`, `training_employment`, `carer_supported`, each optionally with the day it was achieved: `volunteering@2024-03-02` (an undated outcome counts as achieved on the introduction date) |
//! | `ward_code` | no | ONS ward code; stays at the site |
//! | `last_contact_on` | no | `YYYY-MM-DD`; an open case with no contact for the site's inactivity limit stops counting as active |
//!
//! `lacnet import --columns` prints this table from
//! [`crate::columns::COLUMNS`] and the vocabularies, so the format is
//! documented where users look.
//!
//! This module turns one CSV row into a wire record, or into the problems
//! that stop it (the CLI's own, local rejections). Everything the site agent
//! can judge (NHS check digits, dates in the future, ages) is left to the
//! agent, so the rules live in one place.

use csv::StringRecord;
use lacnet_core::Date;
use lacnet_core::vocab::{IntroductionSource, Outcome, PrimaryNeed};
use lacnet_proto::site::v1::{Record, record::Age};

use crate::columns::{COLUMNS, Field, echo, parse_level};
use crate::mapping::{DateFormat, Mapping};

/// Why one cell of one row cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based column in the file; 0 when the problem is not one cell's.
    pub column: usize,
    /// The lacnet field name.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub reason: String,
}

/// `lacnet import --columns`: every column, whether it is required, and
/// the codes each coded column accepts, as a council's IT person needs them
/// to write an export or a mapping file.
pub fn columns_help() -> String {
    let mut out = String::from(
        "lacnet CSV: one row per introduction, with a header row. Columns (any order; others are ignored):\n\n",
    );
    for c in COLUMNS {
        let need = if c.required { "required" } else { "optional" };
        out.push_str(&format!("  {:<20} {need:<9} {}\n", c.name, c.about));
        let codes = c.field.codes();
        if !codes.is_empty() {
            out.push_str(&format!(
                "  {:<20} {:<9} codes: {}\n",
                "",
                "",
                codes.join(", ")
            ));
        }
    }
    out.push_str(
        "\nA case system's own export: `lacnet import --map mapping.toml` renames its columns ([columns]),\n\
         reads its dates ([format] date = \"dd/mm/yyyy\") and translates its codes ([codes.<column>]);\n\
         the codes above pass through a [codes.*] table unchanged. Example: services/cli/examples/casesys-mapping.toml.\n",
    );
    out
}

/// Why a file's header is refused: every column it lacks, and its own
/// columns (each quoted at most [`crate::columns::MAX_ECHO_CHARS`] long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the header lacks {}. The header's columns are: {}", join(missing, "; "), header.join(", "))]
pub struct HeaderError {
    /// What is missing, in the format's column order.
    pub missing: Vec<Missing>,
    /// The header's columns, as read.
    pub header: Vec<String>,
}

/// One thing a header lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// A required column, or one the mapping names, is not there.
    #[error("{name:?}{}{}", match mapped_from {
        Some(ours) => format!(" (mapped from {ours} in [columns])"),
        None => " (required)".to_owned(),
    }, did_you_mean(near))]
    Column {
        /// The column's name in the file.
        name: String,
        /// The lacnet column a mapping renamed it from, if one did.
        mapped_from: Option<&'static str>,
        /// The header's columns that nearly match it.
        near: Vec<String>,
    },
    /// An optional lacnet column is there in other case or spacing: the
    /// same typo, unmapped.
    #[error(
        "{ours:?}: the header has {found:?}; rename it, or map it with `{ours} = {found:?}` under [columns]"
    )]
    OtherCase {
        /// The lacnet column.
        ours: &'static str,
        /// What the header has.
        found: String,
    },
    /// Neither an age nor a year of birth.
    #[error("{age_years:?} or {year_of_birth:?} (one is required)")]
    Age {
        /// The age column's name in the file.
        age_years: String,
        /// The year-of-birth column's name in the file.
        year_of_birth: String,
    },
}

fn join(missing: &[Missing], sep: &str) -> String {
    missing
        .iter()
        .map(Missing::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

fn did_you_mean(near: &[String]) -> String {
    if near.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = near.iter().map(|n| format!("{n:?}")).collect();
    format!(" (did you mean {}?)", quoted.join(" or "))
}

/// Where each lacnet field is in a particular file.
#[derive(Debug, Clone)]
pub struct Layout {
    positions: Vec<(Field, usize)>,
    width: usize,
}

impl Layout {
    /// Finds every lacnet column in `header` (through the mapping's renames).
    /// The whole file is refused, before any row is sent, when a required
    /// column is missing, when the mapping names a column the header lacks
    /// (a typo there would silently drop that field from every row), or when
    /// a header column is an optional lacnet column in all but case or
    /// spacing. The error lists the header's columns and near matches.
    pub fn from_header(header: &StringRecord, mapping: &Mapping) -> Result<Layout, HeaderError> {
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        let mut positions = Vec::new();
        let mut missing = Vec::new();
        for c in COLUMNS {
            let source = mapping.source_column(c.name);
            let mapped = mapping.columns.contains_key(c.name);
            match names.iter().position(|h| *h == source) {
                Some(i) => positions.push((c.field, i)),
                None if c.required || mapped => missing.push(Missing::Column {
                    name: source.to_owned(),
                    mapped_from: mapped.then_some(c.name),
                    near: near_matches(source, &names),
                }),
                None => {
                    // lacnet's own name in other case or spacing: the same typo, unmapped.
                    if let Some(h) = names.iter().find(|h| loose(h) == loose(source)) {
                        missing.push(Missing::OtherCase {
                            ours: c.name,
                            found: echo(h),
                        });
                    }
                }
            }
        }
        if !positions
            .iter()
            .any(|(f, _)| matches!(f, Field::AgeYears | Field::YearOfBirth))
        {
            missing.push(Missing::Age {
                age_years: mapping.source_column("age_years").to_owned(),
                year_of_birth: mapping.source_column("year_of_birth").to_owned(),
            });
        }
        if !missing.is_empty() {
            return Err(HeaderError {
                missing,
                header: names.iter().map(|h| echo(h)).collect(),
            });
        }
        Ok(Layout {
            positions,
            width: header.len(),
        })
    }

    /// The lacnet fields this file has, with their 1-based columns.
    pub fn fields(&self) -> impl Iterator<Item = (Field, usize)> + '_ {
        self.positions.iter().map(|&(f, i)| (f, i + 1))
    }

    /// The 1-based column holding a lacnet field, from a violation's field path
    /// such as `outcomes[2]`.
    pub fn column_of(&self, field_path: &str) -> Option<usize> {
        let name = field_path.split(['[', '.']).next().unwrap_or(field_path);
        let name = if name == "age" { "age_years" } else { name };
        self.positions
            .iter()
            .find(|(f, _)| f.name() == name)
            .map(|(_, i)| i + 1)
    }

    /// How many columns the header has.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Turns one row into a record, or every problem in it.
    pub fn parse(&self, row: &StringRecord, mapping: &Mapping) -> Result<Record, Vec<Problem>> {
        let mut problems = Vec::new();
        if row.len() != self.width {
            problems.push(Problem {
                column: 0,
                field: "row".into(),
                reason: format!("has {} fields, the header has {}", row.len(), self.width),
            });
            return Err(problems);
        }
        let mut r = Record::default();
        for &(field, i) in &self.positions {
            let raw = row.get(i).unwrap_or_default().trim();
            let mut bad = |reason: String| {
                problems.push(Problem {
                    column: i + 1,
                    field: field.name().to_owned(),
                    reason,
                })
            };
            // Outcomes are a list: each item is translated on its own.
            if field == Field::Outcomes {
                for item in raw
                    .split(mapping.format.outcomes_separator.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    // `id@date` is an outcome with the day it was achieved.
                    let (item, achieved_on) = match item.split_once('@') {
                        Some((id, on)) => (id.trim(), Some(on.trim())),
                        None => (item, None),
                    };
                    let id = match mapping.translate(field, item) {
                        Ok(Some(v)) => v,
                        Ok(None) => item.to_owned(),
                        Err(e) => {
                            bad(e.to_string());
                            continue;
                        }
                    };
                    if id.is_empty() {
                        continue; // mapped to nothing on purpose, e.g. a "none" code
                    }
                    match (Outcome::from_id(&id), achieved_on) {
                        (Some(o), None) => r.outcomes.push(o.code()),
                        (Some(o), Some(on)) => match date(on.to_owned(), mapping.format.date) {
                            Ok(on) if !on.is_empty() => {
                                r.dated_outcomes.push(lacnet_proto::site::v1::DatedOutcome {
                                    outcome: o.code(),
                                    achieved_on: on,
                                })
                            }
                            Ok(_) => bad(format!("{}@ needs the date it was achieved", echo(&id))),
                            Err(e) => bad(format!("{}@{}: {e}", echo(&id), echo(on))),
                        },
                        (None, _) => bad(format!("unknown outcome {:?}", echo(&id))),
                    }
                }
                continue;
            }
            let value = if raw.is_empty() {
                String::new()
            } else {
                match mapping.translate(field, raw) {
                    Ok(Some(v)) => v,
                    Ok(None) => raw.to_owned(),
                    Err(e) => {
                        bad(e.to_string());
                        continue;
                    }
                }
            };
            if let Err(reason) = fill(&mut r, field, value, mapping.format.date) {
                bad(reason);
            }
        }
        if problems.is_empty() {
            Ok(r)
        } else {
            Err(problems)
        }
    }
}

/// A name folded for near matching: lower case, no spaces, `_` or `-`.
fn loose(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance between two short names (for "did you mean").
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The header's columns that nearly match `wanted`: the same but for case
/// and spacing, or within a couple of edits.
fn near_matches(wanted: &str, header: &[&str]) -> Vec<String> {
    let want = loose(wanted);
    header
        .iter()
        .filter(|h| {
            let h = loose(h);
            h == want || distance(&h, &want) <= (want.chars().count() / 4).clamp(1, 2)
        })
        .map(|h| echo(h))
        .collect()
}

/// Puts one (translated) value into the record.
fn fill(r: &mut Record, field: Field, value: String, dates: DateFormat) -> Result<(), String> {
    match field {
        Field::LocalCaseId => r.local_case_id = value,
        Field::NhsNumber => r.nhs_number = value,
        Field::IntroducedOn => r.introduced_on = date(value, dates)?,
        Field::ClosedOn => r.closed_on = date(value, dates)?,
        Field::LastContactOn => r.last_contact_on = date(value, dates)?,
        Field::WardCode => r.ward_code = value,
        Field::SupportLevel => {
            if !value.is_empty() {
                r.support_level = parse_level(&value)
                    .ok_or_else(|| format!("{:?} is not a support level (1 or 2)", echo(&value)))?
                    .code();
            }
        }
        Field::AgeYears => {
            if !value.is_empty() {
                let age = value
                    .parse::<u32>()
                    .map_err(|_| "is not a whole number of years".to_owned())?;
                r.age = Some(Age::AgeYears(age));
            }
        }
        Field::YearOfBirth => {
            // An age, when given too, wins: it is the more precise of the two.
            if !value.is_empty() && r.age.is_none() {
                let y = value
                    .parse::<i32>()
                    .map_err(|_| "is not a year (e.g. 1950)".to_owned())?;
                r.age = Some(Age::YearOfBirth(y));
            }
        }
        Field::PrimaryNeed => {
            if !value.is_empty() {
                r.primary_need = PrimaryNeed::from_id(&value)
                    .ok_or_else(|| format!("unknown primary need {:?}", echo(&value)))?
                    .code();
            }
        }
        Field::IntroductionSource => {
            if !value.is_empty() {
                r.introduction_source = IntroductionSource::from_id(&value)
                    .ok_or_else(|| format!("unknown introduction source {:?}", echo(&value)))?
                    .code();
            }
        }
        Field::Outcomes => {}
    }
    Ok(())
}

/// A date in the file's format, as the ISO date the agent expects.
fn date(value: String, format: DateFormat) -> Result<String, String> {
    if value.is_empty() {
        return Ok(value);
    }
    match format {
        // The agent checks ISO dates itself; only say so here if it is not even a date.
        DateFormat::Iso => Date::parse(&value)
            .map(|_| value)
            .map_err(|_| "is not a date (YYYY-MM-DD)".to_owned()),
        DateFormat::DayMonthYear => {
            let parts: Vec<&str> = value.split('/').collect();
            let parsed = match parts.as_slice() {
                [d, m, y] => match (d.parse::<u8>(), m.parse::<u8>(), y.parse::<i32>()) {
                    (Ok(d), Ok(m), Ok(y)) if y >= 1000 => Date::new(y, m, d).ok(),
                    _ => None,
                },
                _ => None,
            };
            parsed
                .map(|d| d.to_string())
                .ok_or_else(|| "is not a date (dd/mm/yyyy)".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::header;

    fn row(cells: &[&str]) -> StringRecord {
        StringRecord::from(cells.to_vec())
    }

    #[test]
    fn a_good_row_becomes_a_record() {
        let layout = Layout::from_header(&row(&header()), &Mapping::default()).unwrap();
        let r = layout
            .parse(
                &row(&[
                    "C1",
                    "943 476 5919",
                    "2014-01-02",
                    "",
                    "2",
                    "70",
                    "",
                    "mental_health",
                    "gp_health",
                    "volunteering@2014-03-01;crisis_avoided",
                    "",
                    "2014-04-10",
                ]),
                &Mapping::default(),
            )
            .unwrap();
        assert_eq!(r.local_case_id, "C1");
        assert_eq!(r.support_level, 2);
        assert_eq!(r.age, Some(Age::AgeYears(70)));
        assert_eq!(r.primary_need, PrimaryNeed::MentalHealth.code());
        // One undated outcome, one with the day it was achieved.
        assert_eq!(r.outcomes, vec![Outcome::CrisisAvoided.code()]);
        assert_eq!(r.dated_outcomes.len(), 1);
        assert_eq!(r.dated_outcomes[0].outcome, Outcome::Volunteering.code());
        assert_eq!(r.dated_outcomes[0].achieved_on, "2014-03-01");
        assert_eq!(r.last_contact_on, "2014-04-10");
    }

    #[test]
    fn a_dated_outcome_needs_a_real_date() {
        let layout = Layout::from_header(&row(&header()), &Mapping::default()).unwrap();
        let cells = |outcomes: &'static str| {
            row(&[
                "C1",
                "",
                "2014-01-02",
                "",
                "2",
                "70",
                "",
                "mental_health",
                "gp_health",
                outcomes,
                "",
                "",
            ])
        };
        for bad in [
            "volunteering@",
            "volunteering@2014-13-01",
            "teleport@2014-03-01",
        ] {
            let problems = layout.parse(&cells(bad), &Mapping::default()).unwrap_err();
            assert_eq!(problems[0].field, "outcomes", "{bad}");
            assert_eq!(problems[0].column, 10, "{bad}");
        }
    }

    #[test]
    fn bad_cells_name_their_column() {
        let layout = Layout::from_header(&row(&header()), &Mapping::default()).unwrap();
        let problems = layout
            .parse(
                &row(&[
                    "C1",
                    "",
                    "02/01/2014",
                    "",
                    "3",
                    "old",
                    "",
                    "sadness",
                    "gp_health",
                    "",
                    "",
                    "",
                ]),
                &Mapping::default(),
            )
            .unwrap_err();
        let cols: Vec<usize> = problems.iter().map(|p| p.column).collect();
        assert_eq!(cols, vec![3, 5, 6, 8], "{problems:?}");
        let short = layout
            .parse(&row(&["C1", ""]), &Mapping::default())
            .unwrap_err();
        assert!(short[0].reason.contains("2 fields"), "{short:?}");
    }

    #[test]
    fn a_missing_required_column_fails_the_file() {
        let err = Layout::from_header(
            &row(&["local_case_id", "introduced_on"]),
            &Mapping::default(),
        )
        .unwrap_err();
        assert!(
            err.missing.iter().any(|m| matches!(
                m,
                Missing::Column { name, mapped_from: None, .. } if name == "support_level"
            )),
            "{err}"
        );
        assert!(
            err.missing.contains(&Missing::Age {
                age_years: "age_years".into(),
                year_of_birth: "year_of_birth".into()
            }),
            "{err}"
        );
    }

    fn casesys_header() -> StringRecord {
        row(&[
            "Case Ref",
            "Referral Date",
            "End Date",
            "Level",
            "Age",
            "Need Code",
            "Referred By",
        ])
    }

    #[test]
    fn a_mapped_column_the_header_lacks_fails_the_file_and_suggests_the_near_match() {
        let m = Mapping::parse(
            "[columns]\nlocal_case_id = \"Case Ref\"\nintroduced_on = \"Referral Date\"\n\
             closed_on = \"End date\"\nsupport_level = \"Level\"\nage_years = \"Age\"\n\
             primary_need = \"Need Code\"\nintroduction_source = \"Referred By\"\n",
        )
        .unwrap();
        let err = Layout::from_header(&casesys_header(), &m).unwrap_err();
        assert_eq!(
            err.missing,
            vec![Missing::Column {
                name: "End date".into(),
                mapped_from: Some("closed_on"),
                near: vec!["End Date".into()],
            }]
        );
        assert_eq!(err.header[..3], ["Case Ref", "Referral Date", "End Date"]);
        // What a user reads names the column, the near match and the header.
        let text = err.to_string();
        assert!(
            text.contains(
                "\"End date\" (mapped from closed_on in [columns]) (did you mean \"End Date\"?)"
            ) && text.contains("The header's columns are: Case Ref, Referral Date, End Date"),
            "{text}"
        );
        // Spelled as the header spells it, the file is fine and closures arrive.
        let fixed = Mapping {
            columns: m
                .columns
                .iter()
                .map(|(k, v)| (k.clone(), v.replace("End date", "End Date")))
                .collect(),
            ..m
        };
        let layout = Layout::from_header(&casesys_header(), &fixed).unwrap();
        assert!(layout.fields().any(|(f, c)| f == Field::ClosedOn && c == 3));
    }

    #[test]
    fn an_optional_lacnet_column_in_other_case_fails_the_file() {
        let mut h: Vec<&str> = header();
        h[3] = "Closed_On";
        let err = Layout::from_header(&row(&h), &Mapping::default()).unwrap_err();
        assert_eq!(
            err.missing,
            vec![Missing::OtherCase {
                ours: "closed_on",
                found: "Closed_On".into()
            }]
        );
        // Left out altogether, an optional column is simply absent.
        h.remove(3);
        assert!(Layout::from_header(&row(&h), &Mapping::default()).is_ok());
    }

    #[test]
    fn echoed_values_are_bounded() {
        assert_eq!(echo("short"), "short");
        let big = "é".repeat(5_000_000);
        let e = echo(&big);
        assert!(
            e.len() < 300 && e.ends_with("(10000000 bytes in all)"),
            "{e}"
        );
        let layout = Layout::from_header(&row(&header()), &Mapping::default()).unwrap();
        let huge = "x".repeat(10 << 20);
        let mut cells = vec![
            "C1",
            "",
            "2014-01-02",
            "",
            "2",
            "70",
            "",
            "mental_health",
            "gp_health",
            "",
            "",
            "",
        ];
        cells[7] = &huge;
        let problems = layout.parse(&row(&cells), &Mapping::default()).unwrap_err();
        assert!(
            problems[0].reason.len() < 300,
            "{}",
            problems[0].reason.len()
        );
    }

    #[test]
    fn uk_dates_convert() {
        assert_eq!(
            date("31/07/2014".into(), DateFormat::DayMonthYear).unwrap(),
            "2014-07-31"
        );
        assert!(date("31/13/2014".into(), DateFormat::DayMonthYear).is_err());
    }
}
