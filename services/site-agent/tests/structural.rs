//! Structural zeros end to end: a site that never serves under-18s refuses
//! their records, publishes their figures as 0 where they would otherwise be
//! withheld, and the hub accepts those zeros; a store that already holds such
//! records cannot take the policy on.

use lacnet_clock::MockClock;
use lacnet_core::disclosure::{Count, DisclosurePolicy};
use lacnet_core::structural::NeverServed;
use lacnet_proto::convert::count_from_proto;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{Agent, AgentOptions};
use lacnet_testkit::agent::*;
use lacnet_testkit::poll;

const UNDER_18: &str = "age_band.under_18";

/// `n` adults introduced in FY2024, half at each level: three in four aged
/// 30 to 64, the rest 70.
fn adults(n: u64) -> Vec<site::Record> {
    (0..n)
        .map(|i| {
            let mut r = rec(
                &format!("ADULT-{i}"),
                &nhs(700_000_000 + i * 3),
                &format!("2024-{:02}-{:02}", 5 + i % 8, 1 + i % 27),
            );
            let age = if i % 4 == 3 { 70 } else { 30 + (i % 35) as u32 };
            if i % 2 == 0 {
                r.support_level = lacnet_proto::common::v1::SupportLevel::SupportLevel1 as i32;
            }
            r.age = Some(site::record::Age::AgeYears(age));
            r
        })
        .collect()
}

fn child(case: &str) -> site::Record {
    let mut r = rec(case, &nhs(799_000_000), "2024-07-01");
    r.age = Some(site::record::Age::AgeYears(16));
    r
}

fn cell(sub: &lacnet_proto::common::v1::Submission, metric: &str) -> Count {
    count_from_proto(Some(&count_of(sub, metric)), "cell").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_never_serves_under_18s_refuses_them_and_publishes_0() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k1", 1);
    let hub = <TestHub as HubForAgents>::start(&pki, &dir.path().join("hub")).await;
    let opts = |data: &str, never: bool| -> AgentOptions {
        let mut o = options(&pki, &dir.path().join(data), ring(&[("k1", &key)]));
        o.policy = DisclosurePolicy::default();
        o.clock = std::sync::Arc::new(MockClock::at_date("2025-06-01").unwrap());
        // Only the second agent pushes: a hub holding another data
        // directory's releases of the site would have it hold them back.
        if never {
            o.never_served = NeverServed::parse(&[UNDER_18]).unwrap();
            o.hub = Some(hub.target(&pki));
        }
        o
    };
    let client = |agent: &TestAgent, pem: &lacnet_tls::PemBundle| {
        let url = agent.url();
        let pem = pem.clone();
        async move {
            SiteAgentClient::new(
                lacnet_tls::connect(&url, &pem, "agent.lacnet")
                    .await
                    .unwrap(),
            )
        }
    };

    // Without the policy, the true 0 is withheld like any small count, and
    // a 16-year-old is accepted.
    let plain = TestAgent::start(&pki, opts("plain", false)).await;
    let mut c = client(&plain, &pki.council).await;
    assert_eq!(upsert(&mut c, adults(120)).await.rejected, 0);
    let mut op = client(&plain, &pki.operator).await;
    let fy = preview(&mut op, "FY2024").await;
    assert_eq!(cell(&fy, UNDER_18), Count::Suppressed);
    assert!(fy.structural_zeros.is_empty());
    assert_eq!(upsert(&mut c, vec![child("CHILD-1")]).await.rejected, 0);
    drop(plain.stop().await);

    // With it: the child is refused, naming the field and the policy.
    let agent = TestAgent::start(&pki, opts("never", true)).await;
    let mut c = client(&agent, &pki.council).await;
    let mut records = adults(120);
    records.push(child("CHILD-2"));
    let reply = upsert(&mut c, records).await;
    assert_eq!(reply.rejected, 1);
    let refused = reply
        .verdicts
        .iter()
        .find(|v| !v.violations.is_empty())
        .unwrap();
    assert_eq!(refused.violations[0].field, "age");
    assert!(
        refused.violations[0]
            .reason
            .contains("never serves age_band.under_18"),
        "{:?}",
        refused.violations
    );
    // The under-18 figures are 0 by policy, and declared as such.
    let mut op = client(&agent, &pki.operator).await;
    let fy = preview(&mut op, "FY2024").await;
    assert_eq!(cell(&fy, UNDER_18), Count::Value(0));
    for level in ["level_1", "level_2"] {
        let id = format!("{level}.age_group.under_18");
        assert_eq!(cell(&fy, &id), Count::Value(0), "{id}");
        assert!(fy.structural_zeros.contains(&id));
    }
    assert!(fy.structural_zeros.contains(&UNDER_18.to_owned()));
    // The hub takes the release, zeros and all.
    poll("the hub to show FY2024's under-18s as 0", || async {
        let (_, shown) = hub.figure(&pki, UNDER_18, "FY2024").await?;
        (count_from_proto(Some(&shown), "cell").ok()? == Count::Value(0)).then_some(())
    })
    .await;
    drop(agent.stop().await);

    // A store holding an under-18 record cannot take the policy on: its
    // figure would not be 0.
    let Err(err) = Agent::open(opts("plain", true)) else {
        panic!("an agent holding an under-18 record took --never-serves age_band.under_18 on");
    };
    let text = err.to_string();
    assert!(
        text.contains("--never-serves") && text.contains("1 in age_band.under_18"),
        "{text}"
    );
}
