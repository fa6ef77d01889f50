//! Validation: the first step of the data flow, turning a council's raw record
//! into a [`ValidRecord`] or the full list of what is wrong with it.
//!
//! Everything here still holds raw identifiers (local case id, NHS number),
//! an exact age and a ward code, so nothing in this module may echo them: the
//! reasons in a [`FieldViolation`] describe the rule broken, never the value,
//! and the `Debug` of every type holding them is hand-written to redact them.
//! The next step, [`crate::record`], replaces the identifiers with pseudonyms.

use crate::date::Date;
use crate::period::Period;
use crate::record::CaseFacts;
use crate::vocab::{
    AgeBand, IntroductionSource, NO_OUTCOME_DATES, Outcome, OutcomeDates, OutcomeSet, PrimaryNeed,
    SupportLevel,
};
use std::fmt;

/// Longest local case id accepted, in characters.
pub const MAX_LOCAL_CASE_ID_CHARS: usize = 64;
/// Oldest age accepted, in years.
pub const MAX_AGE_YEARS: u32 = 120;
/// Problems in a repeated field (`outcomes`) reported one by one; the rest
/// are summed up in one more violation, so a record that repeats an outcome a
/// million times costs a few violations, not a million.
pub const MAX_ITEM_VIOLATIONS: usize = 3;
/// Most violations reported for one record, whatever it holds. Every scalar
/// field adds at most two and `outcomes` at most [`MAX_ITEM_VIOLATIONS`] + 1,
/// so this only bites if a new field forgets its own bound; the last one kept
/// then says how many were left out.
pub const MAX_VIOLATIONS_PER_RECORD: usize = 16;

/// The age as a council sends it: one of the two forms of the proto `oneof age`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AgeInput {
    /// Age in whole years at introduction.
    Years(u32),
    /// Year of birth; the age is the introduction year minus this.
    YearOfBirth(i32),
}

impl fmt::Debug for AgeInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Exact ages never leave the site, not even in a debug log.
        match self {
            AgeInput::Years(_) => f.write_str("Years(<redacted>)"),
            AgeInput::YearOfBirth(_) => f.write_str("YearOfBirth(<redacted>)"),
        }
    }
}

/// A record as received, before any checks. Enum fields carry the proto
/// numbers so validation can refuse 0 (unspecified) and unknown values.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordInput {
    /// The council's case id for this introduction (required).
    pub local_case_id: String,
    /// NHS number; `None` or empty means absent. Spaces and hyphens allowed.
    pub nhs_number: Option<String>,
    /// Date of introduction, `YYYY-MM-DD`.
    pub introduced_on: String,
    /// Date of closure, `YYYY-MM-DD`; `None` or empty while open.
    pub closed_on: Option<String>,
    /// Proto `SupportLevel` number.
    pub support_level: i32,
    /// Age in years or year of birth (required).
    pub age: Option<AgeInput>,
    /// Proto `PrimaryNeed` number.
    pub primary_need: i32,
    /// Proto `IntroductionSource` number.
    pub introduction_source: i32,
    /// Proto `Outcome` numbers, undated: each is dated to the introduction
    /// (see [`crate::record::CaseFacts::achieved_on`]).
    pub outcomes: Vec<i32>,
    /// ONS ward code; `None` or empty means absent.
    pub ward_code: Option<String>,
    /// Outcomes with the day each was achieved: (proto `Outcome` number, `YYYY-MM-DD`).
    pub dated_outcomes: Vec<(i32, String)>,
    /// The last contact with the person, `YYYY-MM-DD`; `None` or empty when unknown.
    pub last_contact_on: Option<String>,
}

const REDACTED: &str = "<redacted>";

/// Shows `Some(<redacted>)` / `None`: whether a value is present is useful, the value is not.
struct RedactedOption(bool);

impl fmt::Debug for RedactedOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 {
            write!(f, "Some({REDACTED})")
        } else {
            f.write_str("None")
        }
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Debug for RecordInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordInput")
            .field("local_case_id", &Redacted)
            .field("nhs_number", &RedactedOption(self.nhs_number.is_some()))
            .field("introduced_on", &self.introduced_on)
            .field("closed_on", &self.closed_on)
            .field("support_level", &self.support_level)
            .field("age", &self.age)
            .field("primary_need", &self.primary_need)
            .field("introduction_source", &self.introduction_source)
            .field("outcomes", &self.outcomes)
            .field("ward_code", &RedactedOption(self.ward_code.is_some()))
            .field("dated_outcomes", &self.dated_outcomes)
            .field("last_contact_on", &self.last_contact_on)
            .finish()
    }
}

/// The record field a rule is about: a closed set, so a caller counts
/// violations by kind (a metric label) without parsing the field path back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordField {
    /// `local_case_id`.
    LocalCaseId,
    /// `nhs_number`.
    NhsNumber,
    /// `introduced_on`.
    IntroducedOn,
    /// `closed_on`.
    ClosedOn,
    /// `last_contact_on`.
    LastContactOn,
    /// `support_level`.
    SupportLevel,
    /// `age_years`, `year_of_birth` or their absence.
    Age,
    /// `primary_need`.
    PrimaryNeed,
    /// `introduction_source`.
    IntroductionSource,
    /// `outcomes`.
    Outcomes,
    /// `dated_outcomes`.
    DatedOutcomes,
    /// `ward_code`.
    WardCode,
    /// The record as a whole (e.g. its size).
    Record,
}

impl RecordField {
    /// The proto field name.
    pub fn name(self) -> &'static str {
        match self {
            RecordField::LocalCaseId => "local_case_id",
            RecordField::NhsNumber => "nhs_number",
            RecordField::IntroducedOn => "introduced_on",
            RecordField::ClosedOn => "closed_on",
            RecordField::LastContactOn => "last_contact_on",
            RecordField::SupportLevel => "support_level",
            RecordField::Age => "age",
            RecordField::PrimaryNeed => "primary_need",
            RecordField::IntroductionSource => "introduction_source",
            RecordField::Outcomes => "outcomes",
            RecordField::DatedOutcomes => "dated_outcomes",
            RecordField::WardCode => "ward_code",
            RecordField::Record => "record",
        }
    }
}

/// One broken rule: the proto field name and a reason that never quotes a
/// sensitive value. Displays as `field: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Which field the rule is about.
    pub kind: RecordField,
    /// Proto field path, e.g. `nhs_number` or `outcomes[2]`.
    pub field: String,
    /// What is wrong, without the offending value.
    pub reason: String,
}

impl FieldViolation {
    fn new(kind: RecordField, reason: impl Into<String>) -> Self {
        FieldViolation::at(kind, kind.name(), reason)
    }

    /// A violation at a path inside `kind` (an element, or a named variant
    /// such as `age_years`).
    fn at(kind: RecordField, field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldViolation {
            kind,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldViolation {}

/// Who a record is about: the NHS number when given, else the local case id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PersonId {
    /// A normalised NHS number: exactly 10 digits that pass modulus 11.
    Nhs(String),
    /// The local case id, used when there is no NHS number.
    LocalCase(String),
}

impl fmt::Debug for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersonId::Nhs(_) => write!(f, "Nhs({REDACTED})"),
            PersonId::LocalCase(_) => write!(f, "LocalCase({REDACTED})"),
        }
    }
}

/// A record that passed every check, with typed fields. It still holds raw
/// identifiers and the ward code: pseudonymise it ([`ValidRecord::pseudonymise`])
/// before storing anything.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidRecord {
    /// The trimmed local case id.
    pub local_case_id: String,
    /// The person key.
    pub person: PersonId,
    /// The case itself: what pseudonymisation keeps as it is.
    pub facts: CaseFacts,
    /// Normalised (upper-case) ONS ward code, kept only to be pseudonymised locally.
    pub ward_code: Option<String>,
}

impl fmt::Debug for ValidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidRecord")
            .field("local_case_id", &Redacted)
            .field("person", &self.person)
            .field("facts", &self.facts)
            .field("ward_code", &RedactedOption(self.ward_code.is_some()))
            .finish()
    }
}

/// The modulus-11 check digit for the first nine digits of an NHS number
/// (ASCII): weights 10 down to 2, check digit = 11 - (sum mod 11), where 11
/// becomes 0; `None` when the result is 10, which no valid number has.
pub fn nhs_check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    if !first_nine.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

/// Whether ten ASCII digits form a valid NHS number (see [`nhs_check_digit`]).
pub fn nhs_number_is_valid(ten_digits: &str) -> bool {
    let Some((first_nine, last)) = ten_digits.as_bytes().split_first_chunk::<9>() else {
        return false;
    };
    match (last, nhs_check_digit(first_nine)) {
        ([d], Some(check)) => d.is_ascii_digit() && d - b'0' == check,
        _ => false,
    }
}

/// Why a number that passes modulus 11 is still not one the NHS issues to a
/// person, or `None` when it may be real.
///
/// NHS numbers for England, Wales and the Isle of Man are issued from
/// 300 000 000–399 999 999 (England; 320 000 001 upwards is Northern
/// Ireland's), 400 000 000–499 999 999 and 600 000 000–799 999 999; Scotland's
/// CHI numbers start at 010 100 0000, being a date of birth (DDMMYY) and four
/// digits. Numbers below that are in no UK scheme. Every all-same-digit
/// number passes modulus 11 (each digit d weighs 54d, and 54 = 11·5 − 1), so
/// `0000000000` and `1111111111` are placeholders, not people. Sources: the
/// NHS number article (<https://en.wikipedia.org/wiki/NHS_number>, "Format,
/// number ranges") and the `nhs-number` crate's range notes
/// (<https://docs.rs/nhs-number>).
///
/// Two ranges stay accepted on purpose: 999 000 0000–999 999 9999 is reserved
/// for test data and never issued, which is why `lacnet generate` and the
/// demo use it; and numbers outside today's ranges (such as the textbook
/// example 943 476 5919) may yet be issued.
pub fn nhs_number_never_issued(ten_digits: &str) -> Option<&'static str> {
    let bytes = ten_digits.as_bytes();
    if bytes.len() != 10 {
        return None;
    }
    if bytes.iter().all(|b| *b == bytes[0]) {
        return Some("is a placeholder the NHS never issues (all ten digits the same)");
    }
    if ten_digits < "0101000000" {
        return Some("is in no issued range (NHS and CHI numbers start at 010 100 0000)");
    }
    None
}

/// An NHS number as councils write it, with spaces or hyphens between the
/// digits, reduced to its digits if it is valid.
pub fn normalise_nhs_number(raw: &str) -> Option<String> {
    let digits = nhs_digits(raw);
    nhs_number_is_valid(&digits).then_some(digits)
}

fn nhs_digits(raw: &str) -> String {
    raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

/// The first valid NHS number whose first nine digits are `prefix` or a
/// later prefix: synthetic numbers for demos, tests and benchmarks.
pub fn synthetic_nhs_number(mut prefix: u64) -> String {
    loop {
        // Prefixes past nine digits wrap, so the loop always ends.
        let first_nine = format!("{:09}", prefix % 1_000_000_000);
        let check = <&[u8; 9]>::try_from(first_nine.as_bytes())
            .ok()
            .and_then(nhs_check_digit);
        if let Some(check) = check {
            let n = format!("{first_nine}{check}");
            if nhs_number_never_issued(&n).is_none() {
                return n;
            }
        }
        prefix += 1;
    }
}

/// Validates `input`, collecting every violation. `today` is the latest date
/// allowed for introduction and closure.
pub fn validate(input: &RecordInput, today: Date) -> Result<ValidRecord, Vec<FieldViolation>> {
    let mut v = Vec::new();

    let local_case_id = check_local_case_id(&input.local_case_id, &mut v);
    let nhs = check_nhs_number(input.nhs_number.as_deref(), &mut v);
    let facts = check_facts(input, today, &mut v);
    let ward_code = check_ward_code(input.ward_code.as_deref(), &mut v);

    cap_violations(&mut v);

    let (Some(local_case_id), Some(facts)) = (local_case_id, facts) else {
        return Err(v);
    };
    if !v.is_empty() {
        return Err(v);
    }
    let person = match nhs {
        Some(n) => PersonId::Nhs(n),
        None => PersonId::LocalCase(local_case_id.clone()),
    };
    Ok(ValidRecord {
        local_case_id,
        person,
        facts,
        ward_code,
    })
}

/// Checks what `input` says about the case, adding to `v`. `None` when a
/// field every case needs is missing or wrong; every check still runs first,
/// so the caller reports all the violations at once.
fn check_facts(input: &RecordInput, today: Date, v: &mut Vec<FieldViolation>) -> Option<CaseFacts> {
    let introduced_on = check_introduced_on(&input.introduced_on, today, v);
    let closed_on =
        check_optional_date(input.closed_on.as_deref(), RecordField::ClosedOn, today, v);
    check_not_before(introduced_on, closed_on, RecordField::ClosedOn, v);

    let age_band = check_age(input.age, introduced_on, v);
    let support_level = check_enum(
        input.support_level,
        RecordField::SupportLevel,
        SupportLevel::from_code,
        v,
    );
    let primary_need = check_enum(
        input.primary_need,
        RecordField::PrimaryNeed,
        PrimaryNeed::from_code,
        v,
    );
    let source = check_enum(
        input.introduction_source,
        RecordField::IntroductionSource,
        IntroductionSource::from_code,
        v,
    );

    let mut outcomes = check_outcomes(&input.outcomes, v);
    let outcome_dates = check_dated_outcomes(
        &input.dated_outcomes,
        &mut outcomes,
        (introduced_on, closed_on),
        today,
        v,
    );
    let last_contact_on = check_optional_date(
        input.last_contact_on.as_deref(),
        RecordField::LastContactOn,
        today,
        v,
    );
    check_not_before(
        introduced_on,
        last_contact_on,
        RecordField::LastContactOn,
        v,
    );

    Some(CaseFacts {
        introduced_on: introduced_on?,
        closed_on,
        support_level: support_level?,
        age_band: age_band?,
        primary_need: primary_need?,
        source: source?,
        outcomes,
        outcome_dates,
        last_contact_on,
    })
}

/// The introduction date, which every record needs.
fn check_introduced_on(s: &str, today: Date, v: &mut Vec<FieldViolation>) -> Option<Date> {
    let field = RecordField::IntroducedOn;
    let date = parse_date(s, (field, field.name()), today, v);
    if date.is_none() && s.is_empty() {
        v.push(FieldViolation::new(field, "is required"));
    }
    date
}

/// A date that may be left out (absent or empty).
fn check_optional_date(
    s: Option<&str>,
    field: RecordField,
    today: Date,
    v: &mut Vec<FieldViolation>,
) -> Option<Date> {
    match s {
        None | Some("") => None,
        Some(s) => parse_date(s, (field, field.name()), today, v),
    }
}

/// A date of the introduction (`field`, when given) must not come before
/// the introduction itself.
fn check_not_before(
    introduced_on: Option<Date>,
    date: Option<Date>,
    field: RecordField,
    v: &mut Vec<FieldViolation>,
) {
    if let (Some(i), Some(d)) = (introduced_on, date)
        && d < i
    {
        v.push(FieldViolation::new(
            field,
            "must not be before introduced_on",
        ));
    }
}

/// Adds `dated` to `outcomes` and returns their dates. An outcome is achieved
/// while the introduction is open: on or after its introduction, not after
/// its closure, and not in the future. An outcome listed twice (here or in
/// the undated `outcomes`) is refused, so a record has one date per outcome.
fn check_dated_outcomes(
    dated: &[(i32, String)],
    outcomes: &mut OutcomeSet,
    (introduced_on, closed_on): (Option<Date>, Option<Date>),
    today: Date,
    v: &mut Vec<FieldViolation>,
) -> OutcomeDates {
    let mut dates = NO_OUTCOME_DATES;
    let mut problems = 0usize;
    let mut push = |v: &mut Vec<FieldViolation>, field: String, reason: String| {
        problems += 1;
        if problems <= MAX_ITEM_VIOLATIONS {
            v.push(FieldViolation::at(
                RecordField::DatedOutcomes,
                field,
                reason,
            ));
        }
    };
    for (i, (code, on)) in dated.iter().enumerate() {
        let outcome = match Outcome::from_code(*code) {
            Some(o) if outcomes.insert(o) => Some(o),
            Some(_) => {
                push(
                    v,
                    format!("dated_outcomes[{i}].outcome"),
                    "repeats an earlier outcome".into(),
                );
                None
            }
            None => {
                push(
                    v,
                    format!("dated_outcomes[{i}].outcome"),
                    unknown_enum_reason(*code),
                );
                None
            }
        };
        let field = format!("dated_outcomes[{i}].achieved_on");
        if on.is_empty() {
            push(v, field, "is required".into());
            continue;
        }
        let mut scratch = Vec::new();
        let Some(d) = parse_date(
            on,
            (RecordField::DatedOutcomes, &field),
            today,
            &mut scratch,
        ) else {
            for s in scratch {
                push(v, s.field, s.reason);
            }
            continue;
        };
        if introduced_on.is_some_and(|i| d < i) {
            push(v, field, "must not be before introduced_on".into());
        } else if closed_on.is_some_and(|c| d > c) {
            push(v, field, "must not be after closed_on".into());
        } else if let Some(o) = outcome {
            dates[o.index()] = Some(d);
        }
    }
    let more = problems.saturating_sub(MAX_ITEM_VIOLATIONS);
    if more > 0 {
        v.push(FieldViolation::new(
            RecordField::DatedOutcomes,
            format!("{more} more problems (only the first {MAX_ITEM_VIOLATIONS} are listed)"),
        ));
    }
    dates
}

/// The set of outcomes, pushing the first [`MAX_ITEM_VIOLATIONS`] problems
/// (unknown or repeated) by index and one summary violation for the rest.
fn check_outcomes(codes: &[i32], v: &mut Vec<FieldViolation>) -> OutcomeSet {
    let mut outcomes = OutcomeSet::EMPTY;
    let mut problems = 0usize;
    for (i, code) in codes.iter().enumerate() {
        let reason = match Outcome::from_code(*code) {
            Some(o) if outcomes.insert(o) => continue,
            Some(_) => "repeats an earlier outcome".to_owned(),
            None => unknown_enum_reason(*code),
        };
        problems += 1;
        if problems <= MAX_ITEM_VIOLATIONS {
            v.push(FieldViolation::at(
                RecordField::Outcomes,
                format!("outcomes[{i}]"),
                reason,
            ));
        }
    }
    let more = problems.saturating_sub(MAX_ITEM_VIOLATIONS);
    if more > 0 {
        v.push(FieldViolation::new(
            RecordField::Outcomes,
            format!("{more} more repeated or unknown outcomes (only the first {MAX_ITEM_VIOLATIONS} are listed)"),
        ));
    }
    outcomes
}

/// Keeps at most [`MAX_VIOLATIONS_PER_RECORD`] violations, the last of them
/// saying how many were left out, so no record can make the reply unbounded.
fn cap_violations(v: &mut Vec<FieldViolation>) {
    if v.len() <= MAX_VIOLATIONS_PER_RECORD {
        return;
    }
    let dropped = v.len() - (MAX_VIOLATIONS_PER_RECORD - 1);
    v.truncate(MAX_VIOLATIONS_PER_RECORD - 1);
    v.push(FieldViolation::new(
        RecordField::Record,
        format!("{dropped} more violations not listed"),
    ));
}

fn check_local_case_id(raw: &str, v: &mut Vec<FieldViolation>) -> Option<String> {
    let id = raw.trim();
    let before = v.len();
    if id.is_empty() {
        v.push(FieldViolation::new(RecordField::LocalCaseId, "is required"));
    } else {
        if id.chars().count() > MAX_LOCAL_CASE_ID_CHARS {
            v.push(FieldViolation::new(
                RecordField::LocalCaseId,
                format!("must be at most {MAX_LOCAL_CASE_ID_CHARS} characters"),
            ));
        }
        if id.chars().any(char::is_control) {
            v.push(FieldViolation::new(
                RecordField::LocalCaseId,
                "must not contain control characters",
            ));
        }
    }
    (v.len() == before).then(|| id.to_owned())
}

/// Returns the normalised number when present and valid; `None` when absent
/// or invalid (a violation is pushed in the latter case).
fn check_nhs_number(raw: Option<&str>, v: &mut Vec<FieldViolation>) -> Option<String> {
    let raw = raw?;
    let digits = nhs_digits(raw);
    if digits.is_empty() {
        return None;
    }
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        v.push(FieldViolation::new(
            RecordField::NhsNumber,
            "must be 10 digits (spaces and hyphens are allowed between them)",
        ));
        return None;
    }
    if !nhs_number_is_valid(&digits) {
        v.push(FieldViolation::new(
            RecordField::NhsNumber,
            "fails the modulus-11 check",
        ));
        return None;
    }
    if let Some(reason) = nhs_number_never_issued(&digits) {
        v.push(FieldViolation::new(RecordField::NhsNumber, reason));
        return None;
    }
    Some(digits)
}

fn parse_date(
    raw: &str,
    (kind, field): (RecordField, &str),
    today: Date,
    v: &mut Vec<FieldViolation>,
) -> Option<Date> {
    if raw.is_empty() {
        return None;
    }
    match Date::parse(raw) {
        Ok(d) if d > today => {
            v.push(FieldViolation::at(kind, field, "must not be in the future"));
            None
        }
        // A date before the first reporting period would fall in a period the
        // hub refuses, and is a typo or a default (0001-01-01) anyway.
        Ok(d) if d.year() < Period::MIN_YEAR => {
            v.push(FieldViolation::at(
                kind,
                field,
                format!(
                    "must not be before {}-01-01, the start of the earliest reporting period",
                    Period::MIN_YEAR
                ),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            v.push(FieldViolation::at(kind, field, e.to_string()));
            None
        }
    }
}

fn check_age(
    age: Option<AgeInput>,
    introduced_on: Option<Date>,
    v: &mut Vec<FieldViolation>,
) -> Option<AgeBand> {
    match age {
        None => {
            v.push(FieldViolation::new(
                RecordField::Age,
                "one of age_years or year_of_birth is required",
            ));
            None
        }
        Some(AgeInput::Years(years)) => {
            if years > MAX_AGE_YEARS {
                v.push(FieldViolation::at(
                    RecordField::Age,
                    "age_years",
                    format!("must be between 0 and {MAX_AGE_YEARS}"),
                ));
                return None;
            }
            Some(AgeBand::from_age(years))
        }
        Some(AgeInput::YearOfBirth(yob)) => {
            // Without a valid introduction date the age cannot be worked out;
            // the record is refused for introduced_on already.
            let year = introduced_on?.year();
            if yob > year {
                v.push(FieldViolation::at(
                    RecordField::Age,
                    "year_of_birth",
                    "must not be after the year of introduction",
                ));
                return None;
            }
            let age = i64::from(year) - i64::from(yob);
            if age > i64::from(MAX_AGE_YEARS) {
                v.push(FieldViolation::at(
                    RecordField::Age,
                    "year_of_birth",
                    format!("gives an age over {MAX_AGE_YEARS} at introduction"),
                ));
                return None;
            }
            Some(AgeBand::from_age(age as u32))
        }
    }
}

fn unknown_enum_reason(code: i32) -> String {
    // Enum numbers are not sensitive, and quoting them helps a council fix its export.
    if code == 0 {
        "is required (0 means unspecified)".to_owned()
    } else {
        format!("has unknown value {code}")
    }
}

fn check_enum<T>(
    code: i32,
    field: RecordField,
    from_code: fn(i32) -> Option<T>,
    v: &mut Vec<FieldViolation>,
) -> Option<T> {
    let value = from_code(code);
    if value.is_none() {
        v.push(FieldViolation::new(field, unknown_enum_reason(code)));
    }
    value
}

/// Whether `code` looks like an ONS ward code: E05, W05, S13 or N08, then six digits.
pub fn ward_code_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 9
        && matches!(&b[..3], b"E05" | b"W05" | b"S13" | b"N08")
        && b[3..].iter().all(u8::is_ascii_digit)
}

fn check_ward_code(raw: Option<&str>, v: &mut Vec<FieldViolation>) -> Option<String> {
    let code = raw?.trim().to_ascii_uppercase();
    if code.is_empty() {
        return None;
    }
    if !ward_code_is_valid(&code) {
        v.push(FieldViolation::new(
            RecordField::WardCode,
            "must be an ONS ward code (E05, W05, S13 or N08 followed by six digits)",
        ));
        return None;
    }
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::parse("2025-06-30").unwrap()
    }

    fn input() -> RecordInput {
        RecordInput {
            local_case_id: "  LAC-000123 ".into(),
            nhs_number: Some("943 476 5919".into()),
            introduced_on: "2025-01-15".into(),
            closed_on: Some("2025-03-01".into()),
            support_level: 2,
            age: Some(AgeInput::Years(71)),
            primary_need: 9,
            introduction_source: 3,
            outcomes: vec![2, 5],
            ward_code: Some("e05001234".into()),
            dated_outcomes: vec![],
            last_contact_on: None,
        }
    }

    fn violations(r: &RecordInput) -> Vec<FieldViolation> {
        validate(r, today()).unwrap_err()
    }

    fn fields(r: &RecordInput) -> Vec<String> {
        violations(r).into_iter().map(|v| v.field).collect()
    }

    /// Makes a valid NHS number from nine digits by computing its check digit.
    fn with_check_digit(nine: &str) -> Option<String> {
        let sum: u32 = nine
            .bytes()
            .zip((2..=10u32).rev())
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        match 11 - sum % 11 {
            10 => None,
            11 => Some(format!("{nine}0")),
            c => Some(format!("{nine}{c}")),
        }
    }

    #[test]
    fn a_good_record_becomes_typed_and_normalised() {
        let r = validate(&input(), today()).unwrap();
        assert_eq!(r.local_case_id, "LAC-000123");
        assert_eq!(r.person, PersonId::Nhs("9434765919".into()));
        assert_eq!(r.facts.closed_on, Some(Date::parse("2025-03-01").unwrap()));
        assert_eq!(r.facts.support_level, SupportLevel::Level2);
        assert_eq!(r.facts.age_band, AgeBand::From65To74);
        assert_eq!(r.facts.primary_need, PrimaryNeed::SocialIsolation);
        assert_eq!(r.facts.source, IntroductionSource::GpHealth);
        assert!(
            r.facts.outcomes.contains(Outcome::CommunityConnection)
                && r.facts.outcomes.contains(Outcome::ReducedGpAeUse)
        );
        assert_eq!(r.facts.outcomes.len(), 2);
        assert_eq!(r.ward_code.as_deref(), Some("E05001234"));
    }

    #[test]
    fn nhs_number_modulus_11() {
        assert!(nhs_number_is_valid("9434765919"));
        assert!(!nhs_number_is_valid("9434765918"));
        assert!(!nhs_number_is_valid("943476591"));
        assert!(!nhs_number_is_valid("943476591x"));
        // Generated: the computed check digit passes, every other digit fails.
        for nine in [
            "401023213",
            "123456789",
            "999999999",
            "000000001",
            "485777345",
            "111111111",
        ] {
            match with_check_digit(nine) {
                Some(good) => {
                    assert!(nhs_number_is_valid(&good), "{good}");
                    for d in b'0'..=b'9' {
                        let other = format!("{nine}{}", d as char);
                        if other != good {
                            assert!(!nhs_number_is_valid(&other), "{other}");
                        }
                    }
                }
                // Remainder 1 means check 10: no digit makes a valid number.
                None => {
                    for d in b'0'..=b'9' {
                        assert!(!nhs_number_is_valid(&format!("{nine}{}", d as char)));
                    }
                }
            }
        }
        // 11 - 0 = 11 becomes a check digit of 0.
        assert!(nhs_number_is_valid("0000000000"));
        // 123456789: sum 10*1+9*2+...+2*9 = 210, 210 mod 11 = 1, so check 10: never valid.
        assert_eq!(with_check_digit("123456789"), None);
    }

    #[test]
    fn synthetic_and_normalised_nhs_numbers_are_valid() {
        assert_eq!(synthetic_nhs_number(943_476_591), "9434765919");
        // 123456789 has no check digit, so the next prefix is used.
        assert_eq!(
            synthetic_nhs_number(123_456_789),
            with_check_digit("123456790").unwrap()
        );
        for prefix in (400_000_000..400_000_500).step_by(7) {
            let n = synthetic_nhs_number(prefix);
            assert!(nhs_number_is_valid(&n), "{n}");
            assert!(n[..9].parse::<u64>().unwrap() >= prefix);
        }
        assert_eq!(
            normalise_nhs_number("943 476 5919").as_deref(),
            Some("9434765919")
        );
        assert_eq!(
            normalise_nhs_number("943-476-5919").as_deref(),
            Some("9434765919")
        );
        assert_eq!(normalise_nhs_number("943 476 5918"), None);
        assert_eq!(nhs_check_digit(b"94347659x"), None);
    }

    #[test]
    fn nhs_number_spaces_and_hyphens_are_removed_and_absence_falls_back_to_the_case_id() {
        let mut r = input();
        r.nhs_number = Some("943-476-5919".into());
        assert_eq!(
            validate(&r, today()).unwrap().person,
            PersonId::Nhs("9434765919".into())
        );
        for absent in [None, Some(String::new()), Some("  ".into())] {
            r.nhs_number = absent;
            assert_eq!(
                validate(&r, today()).unwrap().person,
                PersonId::LocalCase("LAC-000123".into())
            );
        }
    }

    #[test]
    fn bad_nhs_numbers_are_refused_without_echoing_them() {
        let mut r = input();
        for bad in [
            "9434765918",
            "943476591",
            "94347659190",
            "943476591O",
            "９434765919",
        ] {
            r.nhs_number = Some(bad.into());
            let v = violations(&r);
            assert_eq!(v.len(), 1, "{bad}");
            assert_eq!(v[0].field, "nhs_number");
            assert!(!v[0].to_string().contains("943476591"), "{}", v[0]);
        }
        r.nhs_number = Some("9434765918".into());
        assert_eq!(
            violations(&r)[0].to_string(),
            "nhs_number: fails the modulus-11 check"
        );
    }

    #[test]
    fn numbers_the_nhs_never_issues_are_refused() {
        let mut r = input();
        // Every all-same-digit number passes modulus 11, and none is a person's.
        for d in '0'..='9' {
            let n: String = std::iter::repeat_n(d, 10).collect();
            assert!(nhs_number_is_valid(&n), "{n}");
            r.nhs_number = Some(n.clone());
            let v = violations(&r);
            assert_eq!(v.len(), 1, "{n}");
            assert_eq!(v[0].field, "nhs_number");
            assert!(v[0].reason.contains("never issues"), "{}", v[0]);
            assert!(!v[0].reason.contains(&n), "{}", v[0]);
        }
        // Below the lowest CHI number, in no scheme at all.
        let low = with_check_digit("000000001").unwrap();
        r.nhs_number = Some(low.clone());
        assert!(
            violations(&r)[0].reason.contains("no issued range"),
            "{low}"
        );
        // The textbook example, issued ranges, CHI numbers and the test range stay valid.
        for ok in [
            "943 476 5919",
            "401023213",
            "612100000",
            "010101000",
            "999123456",
        ] {
            let n = if ok.len() == 9 {
                synthetic_nhs_number(ok.parse().unwrap())
            } else {
                ok.to_owned()
            };
            r.nhs_number = Some(n.clone());
            assert!(validate(&r, today()).is_ok(), "{n}");
        }
        // Synthetic numbers skip placeholders.
        assert_eq!(nhs_number_never_issued(&synthetic_nhs_number(0)), None);
        assert_eq!(
            nhs_number_never_issued(&synthetic_nhs_number(111_111_111)),
            None
        );
    }

    #[test]
    fn local_case_id_rules() {
        let mut r = input();
        r.local_case_id = "   ".into();
        assert_eq!(fields(&r), ["local_case_id"]);
        r.local_case_id = "x".repeat(65);
        assert_eq!(fields(&r), ["local_case_id"]);
        assert!(!violations(&r)[0].reason.contains("xxx"));
        r.local_case_id = "é".repeat(64);
        assert!(
            validate(&r, today()).is_ok(),
            "64 characters (not bytes) is fine"
        );
        r.local_case_id = "ab\u{0}cd".into();
        assert_eq!(fields(&r), ["local_case_id"]);
        r.local_case_id = "ab\ncd".into();
        let v = violations(&r);
        assert_eq!(v.len(), 1);
        assert!(!v[0].reason.contains("ab"));
    }

    #[test]
    fn date_rules() {
        let mut r = input();
        r.introduced_on = String::new();
        assert_eq!(fields(&r), ["introduced_on"]);
        r.introduced_on = "15/01/2025".into();
        assert_eq!(fields(&r), ["introduced_on"]);
        r.introduced_on = "2025-02-30".into();
        assert_eq!(violations(&r)[0].reason, "is not a real calendar date");
        r.introduced_on = "2025-07-01".into();
        r.closed_on = None;
        assert_eq!(
            violations(&r)[0].to_string(),
            "introduced_on: must not be in the future"
        );
        r.introduced_on = "2025-06-30".into();
        assert!(validate(&r, today()).is_ok(), "today itself is allowed");
        r.introduced_on = "0001-01-01".into();
        assert_eq!(
            violations(&r)[0].to_string(),
            "introduced_on: must not be before 2000-01-01, the start of the earliest reporting period"
        );
        r.introduced_on = "1999-12-31".into();
        assert_eq!(fields(&r), ["introduced_on"]);
        r.introduced_on = "2000-01-01".into();
        assert!(validate(&r, today()).is_ok(), "the first reporting day");

        let mut r = input();
        r.closed_on = Some("2025-01-14".into());
        assert_eq!(fields(&r), ["closed_on"]);
        r.closed_on = Some("2025-01-15".into());
        assert!(validate(&r, today()).is_ok(), "closed the same day");
        r.closed_on = Some("2025-07-01".into());
        assert_eq!(fields(&r), ["closed_on"]);
        r.closed_on = Some("2025-1-15".into());
        assert_eq!(fields(&r), ["closed_on"]);
        r.closed_on = Some(String::new());
        assert_eq!(validate(&r, today()).unwrap().facts.closed_on, None);
    }

    #[test]
    fn age_rules() {
        let mut r = input();
        r.age = None;
        assert_eq!(fields(&r), ["age"]);
        r.age = Some(AgeInput::Years(121));
        let v = violations(&r);
        assert_eq!(v[0].field, "age_years");
        assert!(!v[0].reason.contains("121"));
        r.age = Some(AgeInput::Years(120));
        assert_eq!(
            validate(&r, today()).unwrap().facts.age_band,
            AgeBand::From85
        );
        r.age = Some(AgeInput::Years(0));
        assert_eq!(
            validate(&r, today()).unwrap().facts.age_band,
            AgeBand::Under18
        );
        r.age = Some(AgeInput::YearOfBirth(1960));
        assert_eq!(
            validate(&r, today()).unwrap().facts.age_band,
            AgeBand::From65To74
        );
        r.age = Some(AgeInput::YearOfBirth(2025));
        assert_eq!(
            validate(&r, today()).unwrap().facts.age_band,
            AgeBand::Under18
        );
        r.age = Some(AgeInput::YearOfBirth(2026));
        assert_eq!(fields(&r), ["year_of_birth"]);
        r.age = Some(AgeInput::YearOfBirth(1904));
        let v = violations(&r);
        assert_eq!(v[0].field, "year_of_birth");
        assert!(!v[0].reason.contains("1904") && !v[0].reason.contains("121"));
        r.age = Some(AgeInput::YearOfBirth(1905));
        assert!(validate(&r, today()).is_ok());
        r.age = Some(AgeInput::YearOfBirth(i32::MIN));
        assert_eq!(fields(&r), ["year_of_birth"]);
    }

    #[test]
    fn enums_must_be_known_and_specified() {
        let mut r = input();
        r.support_level = 0;
        r.primary_need = 11;
        r.introduction_source = -1;
        assert_eq!(
            fields(&r),
            ["support_level", "primary_need", "introduction_source"]
        );
        assert!(violations(&r)[1].reason.contains("11"));
    }

    #[test]
    fn outcomes_must_be_known_and_not_repeated() {
        let mut r = input();
        r.outcomes = vec![1, 0, 1, 10, 9];
        assert_eq!(fields(&r), ["outcomes[1]", "outcomes[2]", "outcomes[3]"]);
        r.outcomes = vec![];
        assert!(validate(&r, today()).unwrap().facts.outcomes.is_empty());
    }

    #[test]
    fn a_million_repeated_outcomes_give_a_bounded_list_that_names_the_field() {
        let mut r = input();
        r.outcomes = vec![1; 1_000_000];
        let v = violations(&r);
        assert_eq!(v.len(), MAX_ITEM_VIOLATIONS + 1, "{v:?}");
        assert_eq!(v[0].field, "outcomes[1]");
        assert_eq!(v[0].reason, "repeats an earlier outcome");
        let last = &v[MAX_ITEM_VIOLATIONS];
        assert_eq!(last.field, "outcomes");
        // 999,999 repeats, three of them listed one by one.
        assert!(last.reason.starts_with("999996 more"), "{}", last.reason);
        // Unknown and repeated outcomes share the bound.
        r.outcomes = (0..10_000).map(|i| 1000 + i).collect();
        let v = violations(&r);
        assert_eq!(v.len(), MAX_ITEM_VIOLATIONS + 1);
        assert!(v[MAX_ITEM_VIOLATIONS].reason.starts_with("9997 more"));
        // Exactly at the bound: no summary.
        r.outcomes = vec![1, 1, 1, 1];
        assert_eq!(fields(&r), ["outcomes[1]", "outcomes[2]", "outcomes[3]"]);
    }

    #[test]
    fn the_per_record_cap_keeps_a_count_of_what_it_dropped() {
        let mut v: Vec<FieldViolation> = (0..40)
            .map(|i| FieldViolation::at(RecordField::Record, format!("f{i}"), "bad"))
            .collect();
        cap_violations(&mut v);
        assert_eq!(v.len(), MAX_VIOLATIONS_PER_RECORD);
        assert_eq!(v[0].field, "f0");
        let last = &v[MAX_VIOLATIONS_PER_RECORD - 1];
        assert_eq!(last.field, "record");
        assert_eq!(
            last.reason,
            format!(
                "{} more violations not listed",
                40 - (MAX_VIOLATIONS_PER_RECORD - 1)
            )
        );
        let mut few = vec![FieldViolation::at(RecordField::Record, "a", "b")];
        cap_violations(&mut few);
        assert_eq!(few.len(), 1);
    }

    #[test]
    fn ward_code_rules() {
        let mut r = input();
        for good in [
            "E05001234",
            "W05000999",
            "S13002345",
            "N08000111",
            " e05001234 ",
        ] {
            r.ward_code = Some(good.into());
            assert!(validate(&r, today()).is_ok(), "{good}");
        }
        for bad in ["E06000034", "E0500123", "E050012345", "E05OO1234", "ward 7"] {
            r.ward_code = Some(bad.into());
            let v = violations(&r);
            assert_eq!(v.len(), 1, "{bad}");
            assert_eq!(v[0].field, "ward_code");
            assert!(!v[0].reason.contains(bad.trim()), "{bad}");
        }
        r.ward_code = Some(String::new());
        assert_eq!(validate(&r, today()).unwrap().ward_code, None);
    }

    #[test]
    fn dated_outcomes_fall_within_the_introduction_and_name_their_field() {
        let mut r = input();
        r.dated_outcomes = vec![
            (3, "2025-02-01".into()),
            (4, "2025-01-15".into()),
            (6, "2025-03-01".into()),
        ];
        r.last_contact_on = Some("2025-02-20".into());
        let ok = validate(&r, today()).unwrap();
        assert_eq!(ok.facts.outcomes.len(), 5);
        assert_eq!(
            ok.facts.outcome_dates[Outcome::Volunteering.index()],
            Some(Date::parse("2025-02-01").unwrap())
        );
        // The undated ones stay undated (they count from the introduction).
        assert_eq!(
            ok.facts.outcome_dates[Outcome::CommunityConnection.index()],
            None
        );
        assert_eq!(
            ok.facts.last_contact_on,
            Some(Date::parse("2025-02-20").unwrap())
        );
        r.dated_outcomes = vec![
            (3, "2025-01-14".into()),
            (4, "2025-03-02".into()),
            (2, "2025-02-01".into()),
        ];
        r.last_contact_on = Some("2025-01-01".into());
        assert_eq!(
            fields(&r),
            [
                "dated_outcomes[0].achieved_on",
                "dated_outcomes[1].achieved_on",
                "dated_outcomes[2].outcome",
                "last_contact_on",
            ]
        );
        let v = validate(&r, today()).unwrap_err();
        assert!(v[0].reason.contains("before introduced_on"), "{}", v[0]);
        assert!(v[1].reason.contains("after closed_on"), "{}", v[1]);
        assert!(v[2].reason.contains("repeats"), "{}", v[2]);
        r.last_contact_on = None;
        r.dated_outcomes = vec![
            (0, "2025-02-01".into()),
            (6, String::new()),
            (7, "2025-13-01".into()),
        ];
        assert_eq!(
            fields(&r),
            [
                "dated_outcomes[0].outcome",
                "dated_outcomes[1].achieved_on",
                "dated_outcomes[2].achieved_on",
            ]
        );
        r.closed_on = None;
        r.dated_outcomes = vec![(8, "2026-01-01".into())];
        let v = validate(&r, today()).unwrap_err();
        assert!(v[0].reason.contains("future"), "{}", v[0]);
    }

    #[test]
    fn every_violation_is_collected() {
        let r = RecordInput {
            local_case_id: String::new(),
            nhs_number: Some("123".into()),
            introduced_on: "nope".into(),
            closed_on: Some("never".into()),
            support_level: 0,
            age: None,
            primary_need: 0,
            introduction_source: 0,
            outcomes: vec![0],
            ward_code: Some("X".into()),
            dated_outcomes: vec![],
            last_contact_on: None,
        };
        assert_eq!(
            fields(&r),
            [
                "local_case_id",
                "nhs_number",
                "introduced_on",
                "closed_on",
                "age",
                "support_level",
                "primary_need",
                "introduction_source",
                "outcomes[0]",
                "ward_code"
            ]
        );
    }

    #[test]
    fn debug_redacts_identifiers_ages_and_ward() {
        let mut i = input();
        i.age = Some(AgeInput::YearOfBirth(1953));
        let shown = format!("{i:?} {:?}", validate(&i, today()).unwrap());
        for secret in [
            "LAC-000123",
            "9434765919",
            "943 476 5919",
            "1953",
            "E05001234",
            "e05001234",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("local_case_id: <redacted>"));
        assert!(shown.contains("Nhs(<redacted>)"));
        assert_eq!(
            format!("{:?}", PersonId::LocalCase("abc".into())),
            "LocalCase(<redacted>)"
        );
        assert_eq!(format!("{:?}", AgeInput::Years(44)), "Years(<redacted>)");
    }
}
