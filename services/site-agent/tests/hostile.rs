//! Hostile input at the real agent: bytes that are not a valid message are
//! the caller's fault (INVALID_ARGUMENT, not INTERNAL), and one record that
//! repeats an outcome a million times gets a short, bounded answer.

use lacnet_core::validate::{MAX_ITEM_VIOLATIONS, MAX_VIOLATIONS_PER_RECORD};
use lacnet_proto::codec::LacnetCodec;
use lacnet_proto::site::v1 as site;
use lacnet_testkit::agent::*;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

/// `lacnet.site.v1.Record` with `bytes` where the real one has `string`, so
/// the test can put any bytes on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRecord {
    #[prost(bytes = "vec", tag = "1")]
    local_case_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    introduced_on: Vec<u8>,
}

/// `lacnet.site.v1.UpsertRecordsRequest` of [`RawRecord`]s.
#[derive(Clone, PartialEq, prost::Message)]
struct RawUpsert {
    #[prost(message, repeated, tag = "1")]
    records: Vec<RawRecord>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_record_is_invalid_argument() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("a"), ring(&[("k1", &k1)])),
    )
    .await;
    let channel = lacnet_tls::connect(&agent.url(), &pki.council, "agent.lacnet")
        .await
        .unwrap();

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = RawUpsert {
        records: vec![RawRecord {
            local_case_id: vec![b'C', 0xc3, 0x28, b'7'],
            introduced_on: b"2025-01-10".to_vec(),
        }],
    };
    let refused = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static("/lacnet.site.v1.SiteAgent/UpsertRecords"),
            LacnetCodec::<RawUpsert, site::UpsertRecordsResponse>::default(),
        )
        .await
        .expect_err("invalid UTF-8 must be refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("UTF-8"), "{}", refused.message());
    assert_eq!(
        lacnet_proto::status::refused_fields(&refused),
        vec!["records.local_case_id"],
        "{}",
        refused.message()
    );
    // Nothing was stored, and the agent still serves.
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    assert_eq!(status(&mut op).await.record_count, 0);
    let ok = upsert(&mut c, vec![rec("C-1", "", "2025-01-10")]).await;
    assert_eq!(ok.accepted, 1);
    drop(c);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_repeated_outcomes_get_a_bounded_answer() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("a"), ring(&[("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;

    // About 1 MB on the wire (packed one-byte enum numbers): well within the
    // 16 MiB message limit, and a million violations before the cap.
    let mut hostile = rec("H-1", "", "2025-01-10");
    hostile.outcomes = vec![lacnet_proto::common::v1::Outcome::Volunteering as i32; 1_000_000];
    let fine = rec("H-2", "", "2025-01-10");
    let r = upsert(&mut c, vec![hostile, fine]).await;
    assert_eq!((r.accepted, r.rejected), (1, 1));
    assert_eq!(
        verdicts(&r),
        [site::Verdict::Rejected, site::Verdict::AcceptedNew]
    );
    let v = &r.verdicts[0].violations;
    assert!(v.len() <= MAX_ITEM_VIOLATIONS + 1, "{} violations", v.len());
    assert!(v.len() <= MAX_VIOLATIONS_PER_RECORD);
    assert!(v.iter().all(|v| v.field.starts_with("outcomes")), "{v:?}");
    assert_eq!(v[0].field, "outcomes[1]");
    let summary = v.last().unwrap();
    assert_eq!(summary.field, "outcomes");
    assert!(summary.reason.contains("999996 more"), "{}", summary.reason);
    drop(c);
    agent.stop().await;
}
