//! Publishing within bounded memory, and restarts that cost nothing.
//!
//! The publisher counts many periods in scans split by person, so that a
//! large council's peak stays within the pod's limit
//! (`tests/benches/publish_scale.rs` measures it). Split or not, the counts
//! must be the same; and a restart over unchanged data must enqueue nothing.

use lacnet_core::{Date, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::publish::aggregate_periods_in;
use lacnet_testkit::agent::*;
use lacnet_testkit::poll;

/// 400 records of some 250 people over three years: some people come back, some
/// cases close, some change level, some achieve outcomes.
fn records() -> Vec<lacnet_proto::site::v1::Record> {
    (0..400u64)
        .map(|i| {
            let person = i % 260;
            let month = 1 + (i * 7) % 34;
            let (year, m) = (2022 + (month + 3) / 12, 1 + (month + 3) % 12);
            let mut r = rec(
                &format!("SCALE-{i}"),
                &nhs(900_000_000 + person),
                &format!("{year}-{m:02}-{:02}", 1 + i % 27),
            );
            if i % 3 == 0 {
                r.closed_on = format!("{}-{m:02}-28", year + 1);
            }
            if i % 2 == 0 {
                r.support_level = pb::SupportLevel::SupportLevel1 as i32;
            }
            if i % 5 == 0 {
                r.outcomes = vec![pb::Outcome::CommunityConnection as i32];
            }
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_in_passes_split_by_person_gives_the_same_counts() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k1", 1);
    let mut o = options(&pki, &dir.path().join("data"), ring(&[("k1", &key)]));
    o.programme_start = Date::new(2022, 4, 1).ok();
    // Nothing published: only the counts are under test.
    o.publish_debounce = std::time::Duration::from_secs(3600);
    let rules = o.rules();
    let agent = TestAgent::start(&pki, o).await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url(), &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    let reply = upsert(&mut c, records()).await;
    assert_eq!(reply.rejected, 0, "{:?}", reply.verdicts);
    let agent = agent.stop().await;

    let mut periods: Vec<Period> = Period::range(
        Period::parse("2022-Q2").unwrap(),
        Period::parse("2025-Q1").unwrap(),
    );
    periods.extend(["FY2022", "FY2023", "FY2024", "PTD2025-03"].map(|p| Period::parse(p).unwrap()));
    let whole = aggregate_periods_in(agent.store(), &periods, rules, 1).unwrap();
    for passes in [2, 3, 7, 64] {
        let split = aggregate_periods_in(agent.store(), &periods, rules, passes).unwrap();
        for ((p, a), b) in periods.iter().zip(&whole).zip(&split) {
            assert_eq!(a, b, "{p} counted in {passes} passes differs from one scan");
        }
    }
    // Not vacuous: the programme to date holds every person once.
    let people: std::collections::HashSet<String> =
        records().into_iter().map(|r| r.nhs_number).collect();
    let ptd = &whole[periods.len() - 1];
    assert_eq!(ptd.get("people_active"), Some(people.len() as u64));
    assert!(people.len() > 200);
    assert!(
        whole
            .iter()
            .filter(|a| a.get("outcome.community_connection") > Some(0))
            .count()
            > 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_over_unchanged_data_enqueues_nothing() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k1", 1);
    let data = dir.path().join("data");
    let opts = || {
        let mut o = options(&pki, &data, ring(&[("k1", &key)]));
        o.programme_start = Date::new(2022, 4, 1).ok();
        o
    };
    let agent = TestAgent::start(&pki, opts()).await;
    let mut c = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url(), &pki.council, "agent.lacnet")
            .await
            .unwrap(),
    );
    let mut operator = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url(), &pki.operator, "agent.lacnet")
            .await
            .unwrap(),
    );
    assert_eq!(upsert(&mut c, records()).await.rejected, 0);
    let first = poll("the first release", || {
        let mut operator = operator.clone();
        async move {
            let s = status(&mut operator).await;
            (s.releases_enqueued > 0 && s.periods_pending <= 2).then_some(s)
        }
    })
    .await;
    assert!(first.releases_enqueued >= 12, "{first:?}");
    let _ = status(&mut operator).await;
    agent.stop().await;

    // Every period is published: the restart's catch-up round finds only
    // what is still under embargo, and enqueues nothing.
    let agent = TestAgent::start(&pki, opts()).await;
    let mut operator = SiteAgentClient::new(
        lacnet_tls::connect(&agent.url(), &pki.operator, "agent.lacnet")
            .await
            .unwrap(),
    );
    let again = poll("the catch-up round after the restart", || {
        let mut operator = operator.clone();
        async move {
            let s = status(&mut operator).await;
            (s.publish_rounds >= 1).then_some(s)
        }
    })
    .await;
    assert_eq!(again.releases_enqueued, 0, "{again:?}");
    assert_eq!(again.outbox_depth, first.outbox_depth, "{again:?}");
    let _ = status(&mut operator).await;
    agent.stop().await;
}

/// What the agent says at start about the last run's end.
const CLEAN: &str = "shut down cleanly: no period to recompute";
const UNCLEAN: &str = "did not shut down cleanly: every period is recomputed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_crash_makes_the_next_start_recompute_every_period() {
    use lacnet_testkit::agent::process::AgentProcess;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    key_file(dir.path(), "k1", 1);
    let data = dir.path().join("data");
    let settings = [("LACNET_AGENT_PROGRAMME_START", "2022-04-01")];
    let ready = |agent: &AgentProcess| {
        let url = agent.url.clone();
        let pem = pki.council.clone();
        async move {
            wait_serving(&url, &pem, "lacnet.site.v1.SiteAgent").await;
            SiteAgentClient::new(
                lacnet_tls::connect(&url, &pem, "agent.lacnet")
                    .await
                    .unwrap(),
            )
        }
    };
    let mut agent = AgentProcess::spawn(dir.path(), &data, &settings);
    let mut c = ready(&agent).await;
    assert_eq!(upsert(&mut c, records()).await.rejected, 0);
    // SIGKILL: the marks of the last write may not have reached the disk.
    agent.kill();
    let agent = AgentProcess::spawn(dir.path(), &data, &settings);
    ready(&agent).await;
    assert!(
        agent.logged(UNCLEAN),
        "a start after SIGKILL trusted the marks"
    );
    // SIGTERM: a clean shutdown, and a start that recomputes nothing.
    agent.terminate();
    let mut agent = agent;
    let exit = agent.wait_for_exit(std::time::Duration::from_secs(60));
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
    let mut agent = AgentProcess::spawn(dir.path(), &data, &settings);
    ready(&agent).await;
    assert!(agent.logged(CLEAN), "a start after a clean stop recomputed");
    assert!(!agent.logged(UNCLEAN));
    // And a crash after a clean start is unclean again: the mark went at open.
    agent.kill();
    let agent = AgentProcess::spawn(dir.path(), &data, &settings);
    ready(&agent).await;
    assert!(
        agent.logged(UNCLEAN),
        "a crash after a clean start was taken as clean"
    );
}
