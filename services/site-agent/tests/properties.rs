//! Property tests of record validation as the agent runs it: any wire
//! `Record` goes through `convert::record_input` and
//! `lacnet_core::validate::validate`, the path every UpsertRecords and
//! StreamRecords record takes. proptest stands in for a coverage-guided
//! fuzzer (no nightly toolchain here); `PROPTEST_CASES` sets the number of
//! cases (README's "Testing" section gives the long run).
//!
//! Properties: validation never panics; every violation names a record
//! field and a reason, and never echoes the raw case id or NHS number; an
//! accepted record, written back in its normalised form, validates to the
//! same record (accepted input round-trips).

use lacnet_core::Date;
use lacnet_core::validate::{PersonId, synthetic_nhs_number, validate};
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::record::Age;
use lacnet_site_agent::convert::record_input;
use proptest::prelude::*;

const TODAY: &str = "2026-11-30";

fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (1990i32..2027, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
        ".{0,12}",
        Just(String::new()),
    ]
}

fn record() -> impl Strategy<Value = site::Record> {
    (
        prop_oneof![
            "[A-Z]{2,4}-[0-9]{1,8}",
            ".{0,40}",
            (0usize..2000).prop_map(|n| "X".repeat(n))
        ],
        prop_oneof![
            Just(String::new()),
            (100_000_000u64..999_999_999).prop_map(synthetic_nhs_number),
            "[0-9 -]{0,14}",
            ".{0,16}",
        ],
        date_text(),
        date_text(),
        prop_oneof![0i32..4, any::<i32>()],
        proptest::option::of(prop_oneof![
            prop_oneof![0u32..120, any::<u32>()].prop_map(Age::AgeYears),
            prop_oneof![1890i32..2027, any::<i32>()].prop_map(Age::YearOfBirth),
        ]),
        prop_oneof![0i32..12, any::<i32>()],
        prop_oneof![0i32..12, any::<i32>()],
        proptest::collection::vec(prop_oneof![0i32..11, any::<i32>()], 0..12),
        prop_oneof![Just(String::new()), "[EWSN]0[5-9][0-9]{6}", ".{0,12}"],
    )
        .prop_map(
            |(case, nhs, introduced_on, closed_on, level, age, need, source, outcomes, ward)| {
                // Any field added to the wire record later keeps its default.
                #[allow(clippy::needless_update)]
                site::Record {
                    local_case_id: case,
                    nhs_number: nhs,
                    introduced_on,
                    closed_on,
                    support_level: level,
                    age,
                    primary_need: need,
                    introduction_source: source,
                    outcomes,
                    ward_code: ward,
                    ..site::Record::default()
                }
            },
        )
}

/// A field path: a snake_case name, optionally indexed or dotted (`outcomes[2]`, `age.age_years`).
fn is_field_path(f: &str) -> bool {
    let name = f.split(['[', '.']).next().unwrap_or_default();
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(1024),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn validation_names_fields_or_round_trips(r in record()) {
        let today = Date::parse(TODAY).unwrap();
        match validate(&record_input(r.clone()), today) {
            Err(violations) => {
                prop_assert!(!violations.is_empty());
                for v in &violations {
                    prop_assert!(is_field_path(&v.field), "field {:?}", v.field);
                    prop_assert!(!v.reason.trim().is_empty(), "no reason for {}", v.field);
                    // Identifiers are never echoed back (they would reach logs and files).
                    for raw in [r.local_case_id.trim(), r.nhs_number.trim()] {
                        if raw.len() >= 6 {
                            prop_assert!(!v.reason.contains(raw), "{} echoes {:?}", v.field, raw);
                        }
                    }
                }
            }
            Ok(valid) => {
                let mut again = r.clone();
                again.local_case_id = valid.local_case_id.clone();
                again.nhs_number = match &valid.person {
                    PersonId::Nhs(n) => n.clone(),
                    PersonId::LocalCase(_) => String::new(),
                };
                again.introduced_on = valid.facts.introduced_on.to_string();
                again.closed_on = valid.facts.closed_on.map(|d| d.to_string()).unwrap_or_default();
                again.ward_code = valid.ward_code.clone().unwrap_or_default();
                let back = validate(&record_input(again), today);
                prop_assert!(back.as_ref().is_ok_and(|b| *b == valid), "{:?}", back.err());
            }
        }
    }

    /// A plainly valid record is always accepted (so the round trip above is exercised).
    #[test]
    fn valid_records_are_accepted(
        case in "[A-Z]{3}-[0-9]{1,8}",
        nhs in proptest::option::of((100_000_000u64..999_999_999).prop_map(synthetic_nhs_number)),
        (y, m, d) in (2000i32..2026, 1u32..=12, 1u32..=28),
        age in 18u32..110,
        level in 1i32..=2,
        need in 1i32..=9,
        source in 1i32..=9,
        outcomes in proptest::collection::btree_set(1i32..=9, 0..5),
    ) {
        let today = Date::parse(TODAY).unwrap();
        let r = site::Record {
            local_case_id: case,
            nhs_number: nhs.unwrap_or_default(),
            introduced_on: format!("{y:04}-{m:02}-{d:02}"),
            support_level: level,
            age: Some(Age::AgeYears(age)),
            primary_need: need,
            introduction_source: source,
            outcomes: outcomes.into_iter().collect(),
            ..site::Record::default()
        };
        let v = validate(&record_input(r), today);
        prop_assert!(v.is_ok(), "{:?}", v.err());
    }
}
