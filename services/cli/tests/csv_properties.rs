//! Property tests of the CLI's CSV reading (`csv_format::Layout`), the path
//! `lacnet import` takes for every row. proptest stands in for a
//! coverage-guided fuzzer (no nightly toolchain here); `PROPTEST_CASES`
//! sets the number of cases (README's "Testing" section gives the long run).
//!
//! Properties: any header and any rows never panic; every problem names a
//! lacnet column (or `row`) and a reason, at a column inside the row; and a
//! record written as lacnet CSV reads back as the same wire record.

use csv::StringRecord;
use lacnet_cli::columns::header;
use lacnet_cli::csv_format::Layout;
use lacnet_cli::mapping::Mapping;
use lacnet_core::vocab::{IntroductionSource, Outcome, PrimaryNeed, SupportLevel};
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::record::Age;
use proptest::prelude::*;

/// Reads `bytes` as the importer does: header, then rows, each parsed.
fn read_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mapping = Mapping::default();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let Ok(head) = reader.headers().cloned() else {
        return Ok(());
    };
    let Ok(layout) = Layout::from_header(&head, &mapping) else {
        return Ok(());
    };
    let names = header();
    for row in reader.records() {
        let Ok(row) = row else { continue };
        if let Err(problems) = layout.parse(&row, &mapping) {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(
                    p.field == "row" || names.contains(&p.field.as_str()),
                    "problem names {:?}",
                    p.field
                );
                prop_assert!(!p.reason.trim().is_empty(), "no reason for {}", p.field);
                prop_assert!(
                    p.column <= row.len(),
                    "column {} of {}",
                    p.column,
                    row.len()
                );
            }
        }
    }
    Ok(())
}

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        ".{0,12}",
        "[0-9]{1,4}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        Just("mental_health".to_owned()),
        Just("self".to_owned()),
        Just("volunteering;crisis_avoided".to_owned()),
    ]
}

/// Writes a header and rows with the csv crate (so quoting is right).
fn csv_bytes(head: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    w.write_record(head).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

/// A wire record the CSV format can carry exactly (values trimmed, as read).
fn record() -> impl Strategy<Value = site::Record> {
    (
        "[A-Za-z0-9/_-]{1,20}",
        proptest::option::of("[0-9]{10}"),
        (1990i32..2027, 1u32..=12, 1u32..=28),
        proptest::option::of((1990i32..2027, 1u32..=12, 1u32..=28)),
        0usize..SupportLevel::ALL.len(),
        prop_oneof![
            (0u32..130).prop_map(Age::AgeYears),
            (1890i32..2027).prop_map(Age::YearOfBirth)
        ],
        0usize..PrimaryNeed::ALL.len(),
        0usize..IntroductionSource::ALL.len(),
        proptest::collection::vec(0usize..Outcome::ALL.len(), 0..5),
        proptest::option::of("E05[0-9]{6}"),
    )
        .prop_map(
            |(case, nhs, (y, m, d), closed, level, age, need, source, outcomes, ward)| {
                #[allow(clippy::needless_update)]
                site::Record {
                    local_case_id: case,
                    nhs_number: nhs.unwrap_or_default(),
                    introduced_on: format!("{y:04}-{m:02}-{d:02}"),
                    closed_on: closed
                        .map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
                        .unwrap_or_default(),
                    support_level: SupportLevel::ALL[level].code(),
                    age: Some(age),
                    primary_need: PrimaryNeed::ALL[need].code(),
                    introduction_source: IntroductionSource::ALL[source].code(),
                    outcomes: outcomes.iter().map(|o| Outcome::ALL[*o].code()).collect(),
                    ward_code: ward.unwrap_or_default(),
                    // Any field added to the wire record later keeps its default.
                    ..site::Record::default()
                }
            },
        )
}

/// The lacnet CSV row for `r`, in [`header`] order.
fn row_of(r: &site::Record) -> Vec<String> {
    let code = |ok: Option<&str>| ok.unwrap_or_default().to_owned();
    header()
        .iter()
        .map(|column| match *column {
            "local_case_id" => r.local_case_id.clone(),
            "nhs_number" => r.nhs_number.clone(),
            "introduced_on" => r.introduced_on.clone(),
            "closed_on" => r.closed_on.clone(),
            "support_level" => SupportLevel::from_code(r.support_level)
                .map(|l| l.code().to_string())
                .unwrap_or_default(),
            "age_years" => match r.age {
                Some(Age::AgeYears(a)) => a.to_string(),
                _ => String::new(),
            },
            "year_of_birth" => match r.age {
                Some(Age::YearOfBirth(y)) => y.to_string(),
                _ => String::new(),
            },
            "primary_need" => code(PrimaryNeed::from_code(r.primary_need).map(|n| n.id())),
            "introduction_source" => {
                code(IntroductionSource::from_code(r.introduction_source).map(|s| s.id()))
            }
            "outcomes" => r
                .outcomes
                .iter()
                .filter_map(|o| Outcome::from_code(*o).map(|o| o.id()))
                .collect::<Vec<_>>()
                .join(";"),
            "ward_code" => r.ward_code.clone(),
            "last_contact_on" => r.last_contact_on.clone(),
            other => panic!("a column this test does not know: {other}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes as a CSV file.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        read_all(&bytes)?;
        // The same bytes behind a valid header, so the rows reach parsing.
        let mut file = csv_bytes(&header().iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), &[]);
        file.extend_from_slice(&bytes);
        read_all(&file)?;
    }

    /// A valid header (columns shuffled, some optional ones dropped) and hostile rows.
    #[test]
    fn hostile_rows_name_their_column(
        order in Just(header()).prop_shuffle(),
        drop_optional in any::<bool>(),
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..14), 0..8),
    ) {
        let head: Vec<String> = order
            .iter()
            .filter(|c| !(drop_optional && matches!(**c, "ward_code" | "closed_on")))
            .map(|c| (*c).to_owned())
            .collect();
        read_all(&csv_bytes(&head, &rows))?;
    }

    /// A record written as lacnet CSV reads back unchanged.
    #[test]
    fn written_records_read_back(records in proptest::collection::vec(record(), 1..6)) {
        let head: Vec<String> = header().iter().map(|s| (*s).to_owned()).collect();
        let rows: Vec<Vec<String>> = records.iter().map(row_of).collect();
        let bytes = csv_bytes(&head, &rows);
        let mapping = Mapping::default();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let layout = Layout::from_header(&reader.headers().unwrap().clone(), &mapping).unwrap();
        let back: Vec<site::Record> = reader
            .records()
            .map(|row: Result<StringRecord, _>| layout.parse(&row.unwrap(), &mapping).unwrap())
            .collect();
        prop_assert_eq!(back, records);
    }
}
