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
    /// Why it was refused: a short excerpt of the value at most, never an identifier.
    pub reason: String,
}

/// The most bytes of a status's message, and of each text in its details.
/// The message (percent-encoded when not ASCII, so up to three times as
/// long) and the details (base64) travel in HTTP/2 trailers, which tonic
/// clients refuse above 16 KiB, as an `INTERNAL` h2 error that an agent
/// would retry for ever instead of setting the submission aside. Cut to
/// this, a status stays under about 9 KiB whatever its characters.
pub const MAX_TEXT_BYTES: usize = 1024;

/// `text` cut to at most [`MAX_TEXT_BYTES`] (on a character boundary),
/// saying so when it was cut.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut cut = MAX_TEXT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… (cut from {} bytes)", &text[..cut], text.len())
}

/// INVALID_ARGUMENT with `message`, naming `field` and `reason` in its
/// details; each text cut to [`MAX_TEXT_BYTES`].
pub fn invalid_argument(field: &str, reason: &str, message: impl Into<String>) -> Status {
    let message = bounded(&message.into());
    let bad_request = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: bounded(field),
            description: bounded(reason),
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

    /// However long the words, and whatever their characters, the status
    /// fits the trailers every tonic client accepts (16 KiB), the message
    /// percent-encoded and the details base64-encoded.
    #[test]
    fn long_refusals_are_cut_to_fit_the_trailers() {
        let reason = "cell 12 is more than its total; ".repeat(2_000);
        let message = format!("invalid submission.cells: {reason}");
        let s = invalid_argument("submission.cells", &reason, message.clone());
        assert!(
            s.message().len() <= MAX_TEXT_BYTES + 40,
            "{}",
            s.message().len()
        );
        assert!(s.message().starts_with("invalid submission.cells: cell 12"));
        assert!(
            s.message()
                .ends_with(&format!("(cut from {} bytes)", message.len()))
        );
        let v = field_violations(&s);
        assert_eq!(v[0].field, "submission.cells");
        assert!(v[0].reason.starts_with("cell 12 is more than its total"));
        for wide in ["é", "€", "🦀"] {
            let text = wide.repeat(20_000);
            let s = invalid_argument(&text, &text, text.clone());
            // A cut never splits a character.
            assert!(s.message().starts_with(wide), "{wide}");
            let trailers = s.message().len() * 3 + s.details().len().div_ceil(3) * 4;
            assert!(trailers < 12 * 1024, "{wide}: {trailers} bytes");
        }
    }

    #[test]
    fn statuses_without_details_name_no_field() {
        assert!(field_violations(&Status::invalid_argument("bare")).is_empty());
        let garbage = Status::with_details(Code::InvalidArgument, "x", vec![0xff, 0xff].into());
        assert!(field_violations(&garbage).is_empty());
    }
}
