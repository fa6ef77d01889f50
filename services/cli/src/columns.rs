//! The columns of lacnet's CSV format ([`crate::csv_format`] has the table):
//! their names, which are required, the codes each coded column accepts, and
//! how a value from a file is quoted back in a message. Both the row parser
//! ([`crate::csv_format`]) and the mapping files ([`crate::mapping`]) stand on
//! this module, so neither imports the other's half.

use lacnet_core::vocab::{IntroductionSource, Outcome, PrimaryNeed, SupportLevel};

/// A lacnet CSV column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `local_case_id`.
    LocalCaseId,
    /// `nhs_number`.
    NhsNumber,
    /// `introduced_on`.
    IntroducedOn,
    /// `closed_on`.
    ClosedOn,
    /// `support_level`.
    SupportLevel,
    /// `age_years`.
    AgeYears,
    /// `year_of_birth`.
    YearOfBirth,
    /// `primary_need`.
    PrimaryNeed,
    /// `introduction_source`.
    IntroductionSource,
    /// `outcomes`.
    Outcomes,
    /// `ward_code`.
    WardCode,
    /// `last_contact_on`.
    LastContactOn,
}

/// One column of the format.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header name.
    pub name: &'static str,
    /// Which field it fills.
    pub field: Field,
    /// Whether the header must be present.
    pub required: bool,
    /// What goes in it, for `lacnet import --columns`.
    pub about: &'static str,
}

/// Every column, in the order `generate` writes them.
pub const COLUMNS: &[Column] = &[
    col(
        "local_case_id",
        Field::LocalCaseId,
        true,
        "the council's case id for this introduction, at most 64 characters; once per file",
    ),
    col(
        "nhs_number",
        Field::NhsNumber,
        false,
        "10 digits (spaces or hyphens allowed) that pass the modulus-11 check and are not a placeholder such as 0000000000; empty if unknown",
    ),
    col(
        "introduced_on",
        Field::IntroducedOn,
        true,
        "date of the introduction, YYYY-MM-DD (or the mapping's [format] date)",
    ),
    col(
        "closed_on",
        Field::ClosedOn,
        false,
        "date the case closed; empty while open",
    ),
    col(
        "support_level",
        Field::SupportLevel,
        true,
        "1 (information and advice) or 2 (a longer-term relationship)",
    ),
    col(
        "age_years",
        Field::AgeYears,
        false,
        "whole years at introduction (this or year_of_birth is required)",
    ),
    col(
        "year_of_birth",
        Field::YearOfBirth,
        false,
        "e.g. 1950 (this or age_years is required)",
    ),
    col("primary_need", Field::PrimaryNeed, true, "one code"),
    col(
        "introduction_source",
        Field::IntroductionSource,
        true,
        "one code",
    ),
    col(
        "outcomes",
        Field::Outcomes,
        false,
        "codes separated by ; (or the mapping's outcomes_separator), each optionally with the day achieved: volunteering@2024-03-02",
    ),
    col(
        "ward_code",
        Field::WardCode,
        false,
        "ONS ward code; stays at the site",
    ),
    col(
        "last_contact_on",
        Field::LastContactOn,
        false,
        "date of the last contact; empty if unknown",
    ),
];

const fn col(name: &'static str, field: Field, required: bool, about: &'static str) -> Column {
    Column {
        name,
        field,
        required,
        about,
    }
}

/// The header line `generate` writes.
pub fn header() -> Vec<&'static str> {
    COLUMNS.iter().map(|c| c.name).collect()
}

impl Field {
    /// The column name.
    pub fn name(self) -> &'static str {
        COLUMNS
            .iter()
            .find(|c| c.field == self)
            .map_or("?", |c| c.name)
    }

    /// The codes a coded column accepts (empty for free-text columns).
    pub fn codes(self) -> Vec<&'static str> {
        match self {
            Field::SupportLevel => vec!["1", "2"],
            Field::PrimaryNeed => PrimaryNeed::ALL.iter().map(|v| v.id()).collect(),
            Field::IntroductionSource => IntroductionSource::ALL.iter().map(|v| v.id()).collect(),
            Field::Outcomes => Outcome::ALL.iter().map(|v| v.id()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `value` is one of this coded field's own codes, which pass
    /// through a mapping's `[codes.*]` table without an entry.
    pub fn is_canonical_code(self, value: &str) -> bool {
        !self.codes().is_empty() && !value.is_empty() && self.accepts(value)
    }

    /// Whether `value` (after mapping) is acceptable for this field's code table.
    pub fn accepts(self, value: &str) -> bool {
        match self {
            Field::SupportLevel => parse_level(value).is_some(),
            Field::PrimaryNeed => PrimaryNeed::from_id(value).is_some(),
            Field::IntroductionSource => IntroductionSource::from_id(value).is_some(),
            Field::Outcomes => {
                let id = value.split('@').next().unwrap_or(value);
                id.is_empty() || Outcome::from_id(id).is_some()
            }
            _ => true,
        }
    }
}

pub(crate) fn parse_level(v: &str) -> Option<SupportLevel> {
    match v {
        "1" => Some(SupportLevel::Level1),
        "2" => Some(SupportLevel::Level2),
        other => SupportLevel::from_id(other),
    }
}

/// Longest value quoted back in a message, in characters.
pub const MAX_ECHO_CHARS: usize = 80;

/// A value from the file as it may be quoted back in a message: at most
/// [`MAX_ECHO_CHARS`] characters, so a 10 MB cell costs a line, not 10 MB.
pub fn echo(value: &str) -> String {
    bounded(value, MAX_ECHO_CHARS)
}

/// `value` cut to at most `max` characters, saying how long it was.
pub fn bounded(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &value[..cut], value.len()),
    }
}
