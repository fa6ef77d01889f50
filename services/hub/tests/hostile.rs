//! Hostile bytes at the real hub: a Submit whose string fields are not UTF-8
//! is the caller's fault (INVALID_ARGUMENT), not the hub's (INTERNAL).

use lacnet_proto::codec::LacnetCodec;
use lacnet_proto::hub::v1 as hub;
use lacnet_testkit::hub::*;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

/// `lacnet.common.v1.Submission` with `bytes` where the real one has `string`,
/// so the test can put any bytes on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSubmission {
    #[prost(bytes = "vec", tag = "1")]
    site_code: Vec<u8>,
    #[prost(uint64, tag = "3")]
    revision: u64,
}

/// `lacnet.hub.v1.SubmitRequest` around a [`RawSubmission`].
#[derive(Clone, PartialEq, prost::Message)]
struct RawSubmitRequest {
    #[prost(message, optional, tag = "1")]
    submission: Option<RawSubmission>,
}

#[tokio::test]
async fn invalid_utf8_in_a_submission_is_invalid_argument() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, dir.path(), |_| {}).await;

    let mut grpc = tonic::client::Grpc::new(hub.channel(&pki.thurrock).await);
    grpc.ready().await.unwrap();
    let request = RawSubmitRequest {
        submission: Some(RawSubmission {
            site_code: vec![b'E', 0xff, 0xfe, b'4'],
            revision: 1,
        }),
    };
    let status = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static("/lacnet.hub.v1.Submissions/Submit"),
            LacnetCodec::<RawSubmitRequest, hub::SubmitReceipt>::default(),
        )
        .await
        .expect_err("invalid UTF-8 must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("UTF-8"), "{}", status.message());
    assert_eq!(
        lacnet_proto::status::refused_fields(&status),
        vec!["submission.site_code"],
        "{}",
        status.message()
    );

    // Well-formed bytes through the same codec reach validation as usual.
    let mut grpc = tonic::client::Grpc::new(hub.channel(&pki.thurrock).await);
    grpc.ready().await.unwrap();
    let fine = RawSubmitRequest {
        submission: Some(RawSubmission {
            site_code: b"E06000034".to_vec(),
            revision: 1,
        }),
    };
    let status = grpc
        .unary(
            tonic::Request::new(fine),
            PathAndQuery::from_static("/lacnet.hub.v1.Submissions/Submit"),
            LacnetCodec::<RawSubmitRequest, hub::SubmitReceipt>::default(),
        )
        .await
        .expect_err("an incomplete submission is refused");
    // It decodes, so it reaches validation, which names the missing period.
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        lacnet_proto::status::refused_fields(&status),
        vec!["submission.period"],
        "{}",
        status.message()
    );
    hub.stop().await;
}
