//! Conversions between the site API's wire types and lacnet-core's input
//! types. Periods, policies and counts, which the hub needs too, are in
//! `lacnet_proto::convert`.

use lacnet_core::validate::{AgeInput, FieldViolation, RecordInput};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;

/// A wire record as validation input. Moves the strings: no copies.
pub fn record_input(r: site::Record) -> RecordInput {
    fn opt(s: String) -> Option<String> {
        if s.is_empty() { None } else { Some(s) }
    }
    RecordInput {
        local_case_id: r.local_case_id,
        nhs_number: opt(r.nhs_number),
        introduced_on: r.introduced_on,
        closed_on: opt(r.closed_on),
        support_level: r.support_level,
        age: r.age.map(|a| match a {
            site::record::Age::AgeYears(y) => AgeInput::Years(y),
            site::record::Age::YearOfBirth(y) => AgeInput::YearOfBirth(y),
        }),
        primary_need: r.primary_need,
        introduction_source: r.introduction_source,
        outcomes: r.outcomes,
        ward_code: opt(r.ward_code),
        dated_outcomes: r
            .dated_outcomes
            .into_iter()
            .map(|d| (d.outcome, d.achieved_on))
            .collect(),
        last_contact_on: opt(r.last_contact_on),
    }
}

/// A core field violation on the wire.
pub fn violation(v: FieldViolation) -> pb::FieldViolation {
    pb::FieldViolation {
        field: v.field,
        reason: v.reason,
    }
}
