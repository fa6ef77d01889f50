//! Refusals that name a field, in the form any gRPC client can read without
//! parsing text: INVALID_ARGUMENT whose `grpc-status-details-bin` holds a
//! standard `google.rpc.Status` with one `google.rpc.BadRequest`, naming the
//! field and why. The message says the same for people.
//!
//! Both services build their INVALID_ARGUMENT statuses here, and tests and
//! the CLI read them back with [`field_violations`].

use prost::Message;
use tonic::{Code, Status};

use crate::google::rpc;

/// The `Any` type URL of a `google.rpc.BadRequest`.
pub const BAD_REQUEST_TYPE_URL: &str = "type.googleapis.com/google.rpc.BadRequest";

/// One refused field, as a status's details carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `submission.period`.
    pub field: String,
    /// Why it was refused (never the refused value).
    pub reason: String,
}

/// INVALID_ARGUMENT with `message`, naming `field` and `reason` in its details.
pub fn invalid_argument(field: &str, reason: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let bad_request = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: field.to_owned(),
            description: reason.to_owned(),
        }],
    };
    let details = rpc::Status {
        code: Code::InvalidArgument as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: BAD_REQUEST_TYPE_URL.to_owned(),
            value: bad_request.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::InvalidArgument,
        message,
        details.encode_to_vec().into(),
    )
}

/// The field violations `status` carries in its details; empty when it
/// carries none (another code, or a service that sent no details).
pub fn field_violations(status: &Status) -> Vec<FieldViolation> {
    let Ok(details) = rpc::Status::decode(status.details()) else {
        return Vec::new();
    };
    details
        .details
        .iter()
        .filter(|any| any.type_url == BAD_REQUEST_TYPE_URL)
        .filter_map(|any| rpc::BadRequest::decode(any.value.as_slice()).ok())
        .flat_map(|b| b.field_violations)
        .map(|v| FieldViolation {
            field: v.field,
            reason: v.description,
        })
        .collect()
}

/// The fields `status` names as refused, in order.
pub fn refused_fields(status: &Status) -> Vec<String> {
    field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_field_in_standard_details() {
        let s = invalid_argument(
            "submission.period",
            "has not started yet",
            "invalid submission.period: has not started yet",
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            field_violations(&s),
            vec![FieldViolation {
                field: "submission.period".into(),
                reason: "has not started yet".into(),
            }]
        );
        // Any client's google.rpc.Status decoder reads the same bytes.
        let raw = rpc::Status::decode(s.details()).unwrap();
        assert_eq!(raw.code, Code::InvalidArgument as i32);
        assert_eq!(raw.message, s.message());
        assert_eq!(raw.details[0].type_url, BAD_REQUEST_TYPE_URL);
    }

    #[test]
    fn statuses_without_details_name_no_field() {
        assert!(field_violations(&Status::invalid_argument("bare")).is_empty());
        let garbage = Status::with_details(Code::InvalidArgument, "x", vec![0xff, 0xff].into());
        assert!(field_violations(&garbage).is_empty());
    }
}
