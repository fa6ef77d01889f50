//! The gRPC codec behind every generated lacnet client and server: prost's,
//! except for what a message that does not decode becomes.
//!
//! tonic's prost codec answers every decode failure with `INTERNAL`, as if the
//! server had broken. When the bytes came from the caller (a request with
//! invalid UTF-8 in a string field, a truncated varint) the caller is at
//! fault, and gRPC's status-code guide says `INVALID_ARGUMENT`: a council's
//! system must learn to fix its export, not page the agent's operator. A
//! *response* that does not decode is still `INTERNAL` on the client side, so
//! the agent's outbox keeps retrying a garbled hub receipt instead of
//! dead-lettering a submission that was fine.
//!
//! Which way a message travels is a type-level fact ([`Direction`]), written
//! once below for every message an RPC carries: a new RPC whose messages are
//! not listed does not compile, so nobody can forget to choose.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Which way a message travels in its RPC, and so who is to blame when it
/// does not decode.
pub trait Direction {
    /// True for a request (the caller sent it), false for a response.
    const IS_REQUEST: bool;
}

/// The codec named in `build.rs` (`codec_path`): prost encoding, and
/// decode failures mapped by [`Direction`].
#[derive(Debug, Clone)]
pub struct LacnetCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for LacnetCodec<T, U> {
    fn default() -> Self {
        LacnetCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for LacnetCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Direction + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LacnetDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        // Encoding cannot fail on our own messages, so prost's encoder is kept as is.
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        LacnetDecoder { _pd: PhantomData }
    }
}

/// Decodes `U` with prost; see [`decode_status`] for failures.
#[derive(Debug, Clone, Default)]
pub struct LacnetDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default + Direction> Decoder for LacnetDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| decode_status(U::IS_REQUEST, &e))
    }
}

/// The status for a message that did not decode. prost's error names the
/// message and field path and the rule broken (e.g. "invalid string value:
/// data is not UTF-8 encoded"), never the bytes, so it is safe to return.
pub fn decode_status(is_request: bool, e: &prost::DecodeError) -> Status {
    if is_request {
        let reason = format!("is not a valid message: {e}");
        let field = decode_field_path(e).unwrap_or_else(|| "request".to_owned());
        crate::status::invalid_argument(&field, &reason, format!("the request {reason}"))
    } else {
        Status::internal(format!("the response is not a valid message: {e}"))
    }
}

/// The path of the field that failed to decode, outermost first (e.g.
/// `records.local_case_id`), from prost's error, which lists each
/// `Message.field` innermost first; `None` when it names none.
fn decode_field_path(e: &prost::DecodeError) -> Option<String> {
    let text = e.to_string();
    let rest = text.strip_prefix("failed to decode Protobuf message: ")?;
    let mut path: Vec<&str> = rest
        .split(": ")
        .map_while(|step| {
            let (message, field) = step.split_once('.')?;
            let ident =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
            (ident(message) && ident(field)).then_some(field)
        })
        .collect();
    if path.is_empty() {
        return None;
    }
    path.reverse();
    Some(path.join("."))
}

macro_rules! direction {
    ($is_request:expr => $($ty:ty),+ $(,)?) => {
        $(impl Direction for $ty {
            const IS_REQUEST: bool = $is_request;
        })+
    };
}

direction!(true =>
    crate::site::v1::UpsertRecordsRequest,
    crate::site::v1::Record,
    crate::site::v1::ErasePersonRequest,
    crate::site::v1::PreviewSubmissionRequest,
    crate::site::v1::GetStatusRequest,
    crate::site::v1::LocalEvaluationRequest,
    crate::site::v1::ConfirmFullImportRequest,
    crate::hub::v1::SubmitRequest,
    crate::hub::v1::ListReleasesRequest,
    crate::hub::v1::ListSitesRequest,
    crate::hub::v1::ListMetricsRequest,
    crate::hub::v1::CompareMetricRequest,
    crate::hub::v1::NetworkSummaryRequest,
);

direction!(false =>
    crate::site::v1::UpsertRecordsResponse,
    crate::site::v1::IngestSummary,
    crate::site::v1::ErasePersonResponse,
    crate::common::v1::Submission,
    crate::site::v1::PreviewSubmissionResponse,
    crate::site::v1::AgentStatus,
    crate::site::v1::LocalEvaluation,
    crate::site::v1::ConfirmFullImportResponse,
    crate::hub::v1::SubmitReceipt,
    crate::hub::v1::ListReleasesResponse,
    crate::hub::v1::ListSitesResponse,
    crate::hub::v1::ListMetricsResponse,
    crate::hub::v1::MetricComparison,
    crate::hub::v1::NetworkSummaryResponse,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_in_a_request_is_the_callers_fault() {
        // UpsertRecordsRequest { records: [Record { local_case_id: 0xFF 0xFE }] }
        let bytes: &[u8] = &[0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        let e = crate::site::v1::UpsertRecordsRequest::decode(bytes).unwrap_err();
        let s = decode_status(true, &e);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("UTF-8"), "{}", s.message());
        assert_eq!(
            crate::status::refused_fields(&s),
            vec!["records.local_case_id"]
        );
        let s = decode_status(false, &e);
        assert_eq!(s.code(), tonic::Code::Internal);
    }
}
