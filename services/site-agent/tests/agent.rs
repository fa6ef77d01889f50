//! The site agent's gRPC behaviour against the real server on 127.0.0.1:0
//! over mTLS: per-record verdicts, idempotency, updates, erasure, limits,
//! streaming and key rotation.

use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::Verdict;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::RetireOutcome;
use lacnet_site_agent::metrics::RejectionReason;
use lacnet_testkit::agent::*;
use tonic::transport::Channel;

#[tokio::test]
async fn a_mixed_batch_gets_a_verdict_per_record_and_keeps_the_valid_ones() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;

    let mut bad_nhs = rec("C-2", "9434765918", "2025-01-10");
    bad_nhs.support_level = 0;
    let mut no_date = rec("C-3", "", "2025-01-10");
    no_date.introduced_on = String::new();
    let reply = upsert(
        &mut c,
        vec![
            rec("C-1", &nhs(943476591), "2025-01-10"),
            bad_nhs,
            no_date,
            rec("C-4", "", "2025-02-01"),
        ],
    )
    .await;
    assert_eq!((reply.accepted, reply.rejected), (2, 2));
    assert_eq!(
        verdicts(&reply),
        vec![
            Verdict::AcceptedNew,
            Verdict::Rejected,
            Verdict::Rejected,
            Verdict::AcceptedNew
        ]
    );
    let v1 = &reply.verdicts[1];
    assert_eq!(v1.index, 1);
    let fields: Vec<&str> = v1.violations.iter().map(|v| v.field.as_str()).collect();
    assert!(
        fields.contains(&"nhs_number") && fields.contains(&"support_level"),
        "{fields:?}"
    );
    assert!(v1.violations.iter().all(|v| !v.reason.is_empty()));
    assert_eq!(reply.verdicts[2].index, 2);
    assert_eq!(reply.verdicts[2].violations[0].field, "introduced_on");

    assert_eq!(status(&mut op).await.record_count, 2);
    let p = preview(&mut op, "2025-Q1").await;
    assert_eq!(cell(&p, "introductions_new"), 2);
    let m = agent.agent.metrics();
    assert_eq!(m.ingested.get(), 2);
    assert_eq!(
        m.rejected.get(RejectionReason::InvalidNhsNumber)
            + m.rejected.get(RejectionReason::InvalidSupportLevel),
        1
    );
    assert_eq!(m.rejected.get(RejectionReason::InvalidIntroducedOn), 1);
    agent.stop().await;
}

#[tokio::test]
async fn resending_is_idempotent_and_the_same_case_id_replaces_the_record() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let batch = vec![
        rec("C-1", &nhs(100000001), "2025-01-10"),
        rec("C-2", &nhs(100000002), "2025-02-10"),
    ];
    assert_eq!(
        verdicts(&upsert(&mut c, batch.clone()).await),
        vec![Verdict::AcceptedNew; 2]
    );
    let before = preview(&mut op, "2025-Q1").await;
    assert_eq!(
        verdicts(&upsert(&mut c, batch.clone()).await),
        vec![Verdict::AcceptedUnchanged; 2]
    );
    assert_eq!(status(&mut op).await.record_count, 2);
    assert_eq!(preview(&mut op, "2025-Q1").await.digest, before.digest);

    // Same local case id: add an outcome and a closure date.
    let mut updated = batch[0].clone();
    updated.outcomes = vec![lacnet_proto::common::v1::Outcome::CrisisAvoided as i32];
    updated.closed_on = "2025-03-01".into();
    assert_eq!(
        verdicts(&upsert(&mut c, vec![updated]).await),
        vec![Verdict::AcceptedUpdated]
    );
    assert_eq!(status(&mut op).await.record_count, 2);
    let after = preview(&mut op, "2025-Q1").await;
    assert_ne!(after.digest, before.digest);
    assert_eq!(cell(&before, "outcome.crisis_avoided"), 0);
    assert_eq!(cell(&after, "outcome.crisis_avoided"), 1);
    assert_eq!(cell(&after, "closures"), 1);
    assert_eq!(cell(&after, "introductions_new"), 2);
    agent.stop().await;
}

#[tokio::test]
async fn erasure_forgets_every_record_of_the_person_and_changes_the_preview() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let alice = nhs(943476591);
    upsert(
        &mut c,
        vec![
            rec("A-1", &alice, "2025-01-10"),
            rec("A-2", &alice, "2025-02-10"),
            rec("B-1", &nhs(200000001), "2025-01-20"),
            rec("L-1", "", "2025-03-01"),
        ],
    )
    .await;
    let before = preview(&mut op, "2025-Q1").await;
    assert_eq!(cell(&before, "people_active"), 3);
    assert_eq!(cell(&before, "introductions_new"), 4);

    // By NHS number, written with spaces.
    let spaced = format!("{} {} {}", &alice[..3], &alice[3..6], &alice[6..]);
    let erased = op
        .erase_person(site::ErasePersonRequest {
            identifier: Some(site::erase_person_request::Identifier::NhsNumber(spaced)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.records_erased, 2);
    let after = preview(&mut op, "2025-Q1").await;
    assert_eq!(cell(&after, "people_active"), 2);
    assert_eq!(cell(&after, "introductions_new"), 2);
    assert_ne!(after.digest, before.digest);

    // By local case id, for a person without an NHS number.
    let erased = op
        .erase_person(site::ErasePersonRequest {
            identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
                "L-1".into(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.records_erased, 1);
    assert_eq!(status(&mut op).await.record_count, 1);

    // A bad identifier is a clear error.
    let err = op
        .erase_person(site::ErasePersonRequest {
            identifier: Some(site::erase_person_request::Identifier::NhsNumber(
                "123".into(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        lacnet_proto::status::refused_fields(&err),
        vec!["nhs_number"],
        "{}",
        err.message()
    );
    assert!(!err.message().contains("123"));
    agent.stop().await;
}

async fn erase(
    op: &mut SiteAgentClient<Channel>,
    id: site::erase_person_request::Identifier,
) -> u32 {
    op.erase_person(site::ErasePersonRequest {
        identifier: Some(id),
    })
    .await
    .unwrap()
    .into_inner()
    .records_erased
}

fn refused_fields(r: &site::UpsertRecordsResponse) -> Vec<Vec<String>> {
    r.verdicts
        .iter()
        .map(|v| v.violations.iter().map(|f| f.field.clone()).collect())
        .collect()
}

#[tokio::test]
async fn an_erased_person_is_refused_until_readmitted_even_after_a_key_rotation() {
    use site::erase_person_request::Identifier;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k1 = key_file(dir.path(), "k1", 1);
    let k2 = key_file(dir.path(), "k2", 2);
    let alice = nhs(943476591);
    let agent = TestAgent::start(&pki, options(&pki, &data, ring(&[("k1", &k1)]))).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let old_export = vec![
        rec("A-1", &alice, "2025-01-10"),
        rec("L-1", "", "2025-01-15"),
        rec("B-1", &nhs(200000001), "2025-01-20"),
    ];
    assert_eq!(upsert(&mut c, old_export.clone()).await.accepted, 3);
    // Nobody with that id: nothing erased, and nothing remembered.
    assert_eq!(
        erase(&mut op, Identifier::LocalCaseId("NOPE".into())).await,
        0
    );
    assert_eq!(agent.agent.store().erased_len(), 0);
    assert_eq!(
        erase(&mut op, Identifier::NhsNumber(alice.clone())).await,
        1
    );
    assert_eq!(
        erase(&mut op, Identifier::LocalCaseId("L-1".into())).await,
        1
    );
    assert!(agent.agent.store().erased_len() > 0);

    // The old export again: the erased are refused, naming the field; the rest is unchanged.
    let mut back = old_export.clone();
    back.push(rec("A-2", &alice, "2025-02-10")); // the same person under a new case id
    let reply = upsert(&mut c, back.clone()).await;
    assert_eq!(
        verdicts(&reply),
        vec![
            Verdict::Rejected,
            Verdict::Rejected,
            Verdict::AcceptedUnchanged,
            Verdict::Rejected
        ]
    );
    assert_eq!(
        refused_fields(&reply),
        vec![
            vec!["local_case_id", "nhs_number"],
            vec!["local_case_id"],
            vec![],
            vec!["nhs_number"]
        ]
    );
    assert!(reply.verdicts[0].violations[0].reason.contains("erased"));
    assert_eq!(status(&mut op).await.record_count, 1);
    drop(agent.stop().await);

    // Still refused after the key is rotated (matched under the older key).
    let agent = TestAgent::start(
        &pki,
        options(&pki, &data, ring(&[("k2", &k2), ("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let reply = upsert(&mut c, vec![back[1].clone(), back[3].clone()]).await;
    assert_eq!(reply.rejected, 2, "{:?}", refused_fields(&reply));

    // Re-admitted on purpose, the person comes back and stays without the flag.
    let mut readmit = back[1].clone();
    readmit.readmit_erased = true;
    assert_eq!(
        verdicts(&upsert(&mut c, vec![readmit]).await),
        vec![Verdict::AcceptedNew]
    );
    assert_eq!(
        verdicts(&upsert(&mut c, vec![back[1].clone()]).await),
        vec![Verdict::AcceptedUnchanged]
    );
    // Alice is still erased: re-admitting L-1 forgot only L-1.
    assert_eq!(upsert(&mut c, vec![back[3].clone()]).await.rejected, 1);
    agent.stop().await;
}

#[tokio::test]
async fn limits_and_bad_callers_are_refused_and_change_nothing() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let mut o = options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)]));
    o.max_batch = 3;
    let agent = TestAgent::start(&pki, o).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;

    let too_many: Vec<_> = (0..4)
        .map(|i| rec(&format!("C-{i}"), "", "2025-01-10"))
        .collect();
    let err = c
        .upsert_records(site::UpsertRecordsRequest { records: too_many })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("at most 3"), "{}", err.message());
    assert_eq!(status(&mut op).await.record_count, 0);

    let err = op
        .preview_submission(site::PreviewSubmissionRequest { period: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // An analyst or site certificate is not a council system.
    let mut analyst = agent.client(&pki.analyst).await;
    let err = analyst
        .get_status(site::GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // A certificate from another CA fails the handshake.
    let other = lacnet_tls::dev::DevCa::new("other").unwrap();
    let rogue = lacnet_tls::PemBundle {
        ca: pki.ca.ca_pem().into_bytes(),
        ..lacnet_tls::dev::bundle(
            &other,
            &other
                .issue(&lacnet_tls::Peer::Council("x".into()), &[])
                .unwrap(),
        )
    };
    let refused = match lacnet_tls::connect(&agent.url(), &rogue, "agent.lacnet").await {
        Err(_) => true,
        Ok(ch) => lacnet_proto::site::v1::site_agent_client::SiteAgentClient::new(ch)
            .get_status(site::GetStatusRequest {})
            .await
            .is_err(),
    };
    assert!(refused);
    assert_eq!(status(&mut op).await.record_count, 0);
    agent.stop().await;
}

#[tokio::test]
async fn streaming_ingest_summarises_and_reports_rejections_by_stream_index() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(
        &pki,
        options(&pki, &dir.path().join("data"), ring(&[("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let n = 10_000usize;
    let records: Vec<site::Record> = (0..n)
        .map(|i| {
            let mut r = rec(&format!("S-{i}"), "", "2025-01-10");
            if i % 1000 == 7 {
                r.primary_need = 99;
            }
            r
        })
        .collect();
    let summary = c
        .stream_records(tokio_stream::iter(records))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.received, n as u64);
    assert_eq!(summary.rejected, 10);
    assert_eq!(summary.accepted, n as u64 - 10);
    let idx: Vec<u32> = summary.rejections.iter().map(|r| r.index).collect();
    assert_eq!(idx, (0..10).map(|k| k * 1000 + 7).collect::<Vec<u32>>());
    assert_eq!(summary.rejections[0].violations[0].field, "primary_need");
    assert_eq!(status(&mut op).await.record_count, n as u64 - 10);
    agent.stop().await;
}

#[tokio::test]
async fn a_rotated_key_still_matches_rekeys_on_write_and_retires_only_when_unused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k1 = key_file(dir.path(), "k1", 1);
    let k2 = key_file(dir.path(), "k2", 2);
    let alice = nhs(943476591);
    let bob = nhs(300000003);

    let agent = TestAgent::start(&pki, options(&pki, &data, ring(&[("k1", &k1)]))).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let first = vec![
        rec("A-1", &alice, "2025-01-10"),
        rec("B-1", &bob, "2025-01-12"),
        rec("L-1", "", "2025-01-15"),
    ];
    upsert(&mut c, first.clone()).await;
    let fp1 = status(&mut op).await.active_key_fingerprint;
    drop(agent.stop().await);

    // Starting without k1 would orphan its records: refused with a clear message.
    let err =
        lacnet_site_agent::Agent::open(options(&pki, &data, ring(&[("k2", &k2)]))).unwrap_err();
    assert!(
        matches!(&err, lacnet_site_agent::AgentError::KeysMissing { ids } if ids == &["k1"]),
        "{err}"
    );

    let agent = TestAgent::start(
        &pki,
        options(&pki, &data, ring(&[("k2", &k2), ("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let s = status(&mut op).await;
    assert_eq!(s.active_key_id, "k2");
    assert_eq!(s.key_ids, vec!["k2", "k1"]);
    assert_ne!(s.active_key_fingerprint, fp1);

    // The same record again: matched under k1, re-keyed to k2.
    assert_eq!(
        verdicts(&upsert(&mut c, vec![first[0].clone()]).await),
        vec![Verdict::AcceptedUpdated]
    );
    // A new introduction of a person known under k1 counts as the same person.
    assert_eq!(
        verdicts(&upsert(&mut c, vec![rec("B-2", &bob, "2025-02-01")]).await),
        vec![Verdict::AcceptedNew]
    );
    let p = preview(&mut op, "2025-Q1").await;
    assert_eq!(cell(&p, "people_active"), 3);
    assert_eq!(cell(&p, "introductions_new"), 4);
    assert_eq!(status(&mut op).await.record_count, 4);
    let key_of = |a: &lacnet_site_agent::Agent| -> Vec<String> {
        let mut v: Vec<String> = a
            .store()
            .records()
            .map(|r| r.unwrap().key_id.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(key_of(&agent.agent), vec!["k1", "k1", "k2", "k2"]);

    // Erasure finds a person whose records are under both keys.
    let erased = op
        .erase_person(site::ErasePersonRequest {
            identifier: Some(site::erase_person_request::Identifier::NhsNumber(
                bob.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.records_erased, 2);
    let stopped = agent.stop().await;
    assert_eq!(key_of(&stopped), vec!["k1", "k2"]);
    drop(stopped);

    // L-1 is still under k1: retiring it is refused.
    assert_eq!(
        lacnet_site_agent::retire_key(&data, "k1", 1 << 20).unwrap(),
        RetireOutcome::StillInUse(1)
    );
    let agent = TestAgent::start(
        &pki,
        options(&pki, &data, ring(&[("k2", &k2), ("k1", &k1)])),
    )
    .await;
    let mut c = agent.client(&pki.council).await;
    assert_eq!(
        verdicts(&upsert(&mut c, vec![first[2].clone()]).await),
        vec![Verdict::AcceptedUpdated]
    );
    drop(agent.stop().await);
    assert_eq!(
        lacnet_site_agent::retire_key(&data, "k1", 1 << 20).unwrap(),
        RetireOutcome::Retired
    );
    // Now the agent starts without k1 and still knows everyone.
    let agent = TestAgent::start(&pki, options(&pki, &data, ring(&[("k2", &k2)]))).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    assert_eq!(
        verdicts(&upsert(&mut c, vec![first[0].clone(), first[2].clone()]).await),
        vec![Verdict::AcceptedUnchanged; 2]
    );
    assert_eq!(status(&mut op).await.record_count, 2);
    agent.stop().await;
}
