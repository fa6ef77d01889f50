//! Who may call the real agent: exactly one well-formed lacnet identity per
//! certificate, and each role only its own methods. The case system
//! (`council`) pushes records; the operator reads status, previews and
//! erases. Anything else is refused before the request is looked at.

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::agent::*;
use lacnet_tls::PemBundle;
use lacnet_tls::dev::bundle;
use tonic::Code;
use tonic::transport::Channel;

fn erase_request() -> site::ErasePersonRequest {
    site::ErasePersonRequest {
        identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
            "C-1".into(),
        )),
    }
}

/// The code of every one of the five methods called with `client`, in order:
/// UpsertRecords, StreamRecords, GetStatus, PreviewSubmission, ErasePerson.
async fn codes(client: &mut SiteAgentClient<Channel>) -> [Code; 5] {
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
    let upsert = client
        .upsert_records(site::UpsertRecordsRequest {
            records: vec![rec("C-1", "", "2025-01-10")],
        })
        .await
        .map(drop);
    let stream = client
        .stream_records(tokio_stream::iter(vec![rec("C-2", "", "2025-01-10")]))
        .await
        .map(drop);
    let status = client.get_status(site::GetStatusRequest {}).await.map(drop);
    let preview = client
        .preview_submission(site::PreviewSubmissionRequest {
            period: Some(period("2025-Q1")),
        })
        .await
        .map(drop);
    let erase = client.erase_person(erase_request()).await.map(drop);
    [
        code(upsert),
        code(stream),
        code(status),
        code(preview),
        code(erase),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_well_formed_identity_in_its_own_role_is_served() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)])),
    )
    .await;
    let with_uris =
        |uris: &[&str]| -> PemBundle { bundle(&pki.ca, &pki.ca.issue_with_uris(uris).unwrap()) };
    let unauthenticated = [Code::Unauthenticated; 5];

    // Two identities in one certificate: it names nobody, whichever comes first.
    let two = with_uris(&[
        "spiffe://lacnet/council/thurrock",
        "spiffe://lacnet/operator/sam",
    ]);
    assert_eq!(codes(&mut agent.client(&two).await).await, unauthenticated);
    let two_domains = with_uris(&[
        "spiffe://lacnet/council/thurrock",
        "spiffe://elsewhere/council/thurrock",
    ]);
    assert_eq!(
        codes(&mut agent.client(&two_domains).await).await,
        unauthenticated
    );
    // A malformed id, an unknown role, and no identity at all.
    for bad in [
        with_uris(&["spiffe://lacnet/council/Thurrock Council"]),
        with_uris(&["spiffe://lacnet/admin/root"]),
        bundle(&pki.ca, &pki.ca.issue_server(&["case-system"]).unwrap()),
    ] {
        assert_eq!(codes(&mut agent.client(&bad).await).await, unauthenticated);
    }

    // The case system pushes, and may not read status, preview or erase.
    let denied = Code::PermissionDenied;
    assert_eq!(
        codes(&mut agent.client(&pki.council).await).await,
        [Code::Ok, Code::Ok, denied, denied, denied]
    );
    // The operator runs the agent, and may not push records.
    assert_eq!(
        codes(&mut agent.client(&pki.operator).await).await,
        [denied, denied, Code::Ok, Code::Ok, Code::Ok]
    );
    // Site and analyst identities (the hub's callers) have no role here.
    for other in [&pki.site, &pki.analyst] {
        assert_eq!(codes(&mut agent.client(other).await).await, [denied; 5]);
    }

    // Only the case system's two records were stored, and the operator erased one.
    let mut op = agent.client(&pki.operator).await;
    assert_eq!(status(&mut op).await.record_count, 1);
    agent.stop().await;
}
