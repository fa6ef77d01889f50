//! Revisions that survive losing the data directory, with the real hub and
//! agent over mTLS: a wiped directory, a directory played back from an older
//! copy, a hub that already holds a revision this agent never made, and a
//! refusal that becomes a visible dead letter. An agent that lost state
//! never publishes over the hub's newer release: it holds the period back
//! and says so until the council confirms a full re-import.
//!
//! Each agent runs the default disclosure policy (the hub refuses weaker
//! ones) except where a refusal is the point.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lacnet_core::Period;
use lacnet_proto::site::v1 as site;
use lacnet_site_agent::{AgentOptions, Store};
use lacnet_testkit::agent::*;

/// The metric the tests read back through the hub's reports.
const INTROS: &str = "introductions_new";

fn q1() -> Period {
    Period::parse("2025-Q1").unwrap()
}

/// Options for an agent that pushes to `hub` with fast retries.
fn pushing(
    pki: &Pki,
    data: &std::path::Path,
    keys: &std::path::Path,
    hub: &TestHub,
) -> AgentOptions {
    let mut o = options(pki, data, ring(&[("k1", keys)]));
    o.policy = lacnet_core::DisclosurePolicy::default();
    o.hub = Some(hub.target(pki));
    o.publish_debounce = Duration::from_millis(20);
    o.push_backoff_base = Duration::from_millis(20);
    o.push_backoff_cap = Duration::from_millis(200);
    o
}

/// `n` records introduced in 2025-Q1, case ids `{prefix}-{i}`.
fn batch(prefix: &str, n: usize) -> Vec<site::Record> {
    (0..n)
        .map(|i| rec(&format!("{prefix}-{i}"), "", "2025-01-10"))
        .collect()
}

/// True once the agent has published `period` and the hub reports exactly
/// the revision the agent last built for it, with the outbox empty.
fn settled(store: &Store, hub: &TestHub, period: Period) -> bool {
    let Ok(Some(last)) = store.last_submission(period) else {
        return false;
    };
    store.outbox_len() == 0 && hub.hub.current_revision(THURROCK, period) == Some(last.revision)
}

/// Every period the agent has published is the one the hub reports.
fn all_settled(store: &Store, hub: &TestHub) -> bool {
    let last = store.last_submissions().unwrap();
    !last.is_empty()
        && store.outbox_len() == 0
        && last.iter().all(|s| {
            let p = lacnet_proto::convert::period_from_proto(s.period.as_ref(), "period").unwrap();
            hub.hub.current_revision(THURROCK, p) == Some(s.revision)
        })
}

/// Waits until the agent reports `period` lost (held back), and returns its status.
async fn wait_lost(
    op: &mut lacnet_proto::site::v1::site_agent_client::SiteAgentClient<tonic::transport::Channel>,
    period: &str,
) -> site::AgentStatus {
    let started = std::time::Instant::now();
    loop {
        let s = status(op).await;
        if s.lost_periods.iter().any(|l| l.period == period) {
            assert!(s.lost_advice.contains("--full-export"), "{}", s.lost_advice);
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{period} never reported lost: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The council says its full export is re-imported; returns the periods released.
async fn confirm(
    c: &mut lacnet_proto::site::v1::site_agent_client::SiteAgentClient<tonic::transport::Channel>,
) -> Vec<String> {
    c.confirm_full_import(site::ConfirmFullImportRequest {})
        .await
        .unwrap()
        .into_inner()
        .released_periods
}

/// Checks the analysts' view of Q1 against what the agent last built.
async fn hub_shows_the_agents_figures(pki: &Pki, hub: &TestHub, store: &Store) {
    let last = store.last_submission(q1()).unwrap().unwrap();
    let (revision, value) = hub.figure(pki, INTROS, "2025-Q1").await.unwrap();
    assert_eq!(revision, last.revision);
    assert_eq!(value, count_of(&last, INTROS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_data_directory_publishes_above_the_hubs_revisions() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, &dir.path().join("hub")).await;
    let k1 = key_file(dir.path(), "k1", 1);
    let data = dir.path().join("agent");
    let o = pushing(&pki, &data, &k1, &hub);

    let agent = TestAgent::start(&pki, o.clone()).await;
    let mut c = agent.client(&pki.council).await;
    assert_eq!(upsert(&mut c, batch("W", 40)).await.accepted, 40);
    let store = agent.agent.store().clone();
    wait_until("the first push", || settled(&store, &hub, q1())).await;
    let before = hub.hub.current_revision(THURROCK, q1()).unwrap();
    drop((c, store));
    drop(agent.stop().await);

    // The data directory is lost. New records arrive before the re-import:
    // the agent must not publish them over the hub's fuller release.
    std::fs::remove_dir_all(&data).unwrap();
    let agent = TestAgent::start(&pki, o).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    assert_eq!(upsert(&mut c, batch("X", 20)).await.accepted, 20);
    let s = wait_lost(&mut op, "2025-Q1").await;
    let q1_lost = s
        .lost_periods
        .iter()
        .find(|l| l.period == "2025-Q1")
        .unwrap();
    assert_eq!((q1_lost.hub_revision, q1_lost.agent_revision), (before, 0));
    assert!(agent.agent.metrics().lost_periods.get() >= 1);
    agent.agent.publish_now().await.unwrap();
    agent.agent.flush().await.unwrap();
    assert_eq!(hub.hub.current_revision(THURROCK, q1()), Some(before));
    // The council re-imports its full export and says so.
    assert_eq!(upsert(&mut c, batch("W", 40)).await.accepted, 40);
    assert!(confirm(&mut c).await.contains(&"2025-Q1".to_owned()));
    let store = agent.agent.store().clone();
    wait_until("the re-imported figures at the hub", || {
        all_settled(&store, &hub)
    })
    .await;
    let after = hub.hub.current_revision(THURROCK, q1()).unwrap();
    assert!(after > before, "{after} <= {before}");
    hub_shows_the_agents_figures(&pki, &hub, &store).await;
    // The release behind the hub's figures counts every re-imported record
    // (the figure itself may be withheld for its financial year's sake).
    let intros = lacnet_core::metrics::catalogue().index_of(INTROS).unwrap();
    assert_eq!(store.published_truth(q1()).unwrap().unwrap()[intros], 60);
    let s = status(&mut op).await;
    assert_eq!((s.outbox_depth, s.dead_letters), (0, 0));
    assert!(s.last_push_error.is_empty(), "{}", s.last_push_error);
    assert!(s.lost_periods.is_empty(), "{:?}", s.lost_periods);

    drop((c, store));
    drop(agent.stop().await);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_restored_from_an_older_copy_does_not_wedge() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, &dir.path().join("hub")).await;
    let k1 = key_file(dir.path(), "k1", 1);
    let data = dir.path().join("agent");
    let backup = dir.path().join("backup");
    let o = pushing(&pki, &data, &k1, &hub);

    // Night 1: 40 people, pushed; then the backup is taken with the agent stopped.
    let agent = TestAgent::start(&pki, o.clone()).await;
    let mut c = agent.client(&pki.council).await;
    upsert(&mut c, batch("B", 40)).await;
    let store = agent.agent.store().clone();
    wait_until("night 1 at the hub", || settled(&store, &hub, q1())).await;
    drop((c, store));
    drop(agent.stop().await);
    copy_dir(&data, &backup);

    // Day 2: 10 more, pushed as a newer revision.
    let agent = TestAgent::start(&pki, o.clone()).await;
    let mut c = agent.client(&pki.council).await;
    upsert(&mut c, batch("D", 10)).await;
    let store = agent.agent.store().clone();
    let night1 = store.last_submission(q1()).unwrap().unwrap().revision;
    wait_until("day 2 at the hub", || {
        settled(&store, &hub, q1())
            && store.last_submission(q1()).unwrap().unwrap().revision > night1
    })
    .await;
    let day2 = hub.hub.current_revision(THURROCK, q1()).unwrap();
    // Day 2's figure as the hub shows it (protection may withhold it for
    // its financial year's sake; what matters is that it does not regress).
    let day2_intros = hub.figure(&pki, INTROS, "2025-Q1").await.unwrap().1;
    drop((c, store));
    drop(agent.stop().await);

    // The disk fails; the night-1 copy is played back, and day 3 brings 25 more.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let agent = TestAgent::start(&pki, o).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    let store = agent.agent.store().clone();
    assert_eq!(
        store.last_submission(q1()).unwrap().unwrap().revision,
        night1
    );
    upsert(&mut c, batch("E", 25)).await;
    // Night 1 plus day 3 lacks day 2's people: the hub keeps day 2's figure.
    let s = wait_lost(&mut op, "2025-Q1").await;
    let q1_lost = s
        .lost_periods
        .iter()
        .find(|l| l.period == "2025-Q1")
        .unwrap();
    assert_eq!(
        (q1_lost.hub_revision, q1_lost.agent_revision),
        (day2, night1)
    );
    agent.agent.publish_now().await.unwrap();
    agent.agent.flush().await.unwrap();
    assert_eq!(hub.hub.current_revision(THURROCK, q1()), Some(day2));
    assert_eq!(
        hub.figure(&pki, INTROS, "2025-Q1").await.unwrap().1,
        day2_intros
    );
    // The preview says so too.
    let preview = op
        .preview_submission(site::PreviewSubmissionRequest {
            period: Some(lacnet_proto::convert::period_to_proto(q1())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.decision, "held", "{}", preview.reason);
    assert!(
        preview.reason.contains("--full-export"),
        "{}",
        preview.reason
    );
    // The full export (days 1 to 3) is re-imported and confirmed.
    upsert(&mut c, batch("B", 40)).await;
    upsert(&mut c, batch("D", 10)).await;
    assert!(confirm(&mut c).await.contains(&"2025-Q1".to_owned()));
    wait_until("day 3 at the hub", || {
        all_settled(&store, &hub) && store.last_submission(q1()).unwrap().unwrap().revision > day2
    })
    .await;
    hub_shows_the_agents_figures(&pki, &hub, &store).await;
    // Behind the hub's figures, every record of the full export.
    let intros = lacnet_core::metrics::catalogue().index_of(INTROS).unwrap();
    assert_eq!(store.published_truth(q1()).unwrap().unwrap()[intros], 75);
    let s = status(&mut op).await;
    assert_eq!((s.outbox_depth, s.dead_letters), (0, 0));
    assert!(s.lost_periods.is_empty(), "{:?}", s.lost_periods);

    drop((c, store));
    drop(agent.stop().await);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_content_is_reissued_above_a_hub_revision_it_never_made() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, &dir.path().join("hub")).await;
    let k1 = key_file(dir.path(), "k1", 1);

    // Other figures for Q1 reach the hub under a revision an hour ahead of
    // now, as from an agent whose clock ran fast (within the hub's skew bound).
    let mut o = options(&pki, &dir.path().join("old"), ring(&[("k1", &k1)]));
    o.policy = lacnet_core::DisclosurePolicy::default();
    let old = TestAgent::start(&pki, o).await;
    let mut c = old.client(&pki.council).await;
    upsert(&mut c, batch("S", 30)).await;
    old.agent.publish_now().await.unwrap();
    let mut ahead = old.agent.store().last_submission(q1()).unwrap().unwrap();
    drop(c);
    drop(old.stop().await);
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    ahead.revision = now_ms + 3_600_000;
    let r = hub.submit(&pki.site, ahead.clone()).await.unwrap();
    assert_eq!(r.status(), lacnet_proto::hub::v1::ReceiptStatus::New);

    // This agent's figures differ; its own clock gives a lower revision.
    // It has never seen the hub's release, so it holds Q1 back until the
    // council confirms its records are complete; then they overrule it.
    let agent = TestAgent::start(&pki, pushing(&pki, &dir.path().join("agent"), &k1, &hub)).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    upsert(&mut c, batch("S", 45)).await;
    wait_lost(&mut op, "2025-Q1").await;
    assert!(confirm(&mut c).await.contains(&"2025-Q1".to_owned()));
    let store = agent.agent.store().clone();
    wait_until("the agent's figures to become current", || {
        settled(&store, &hub, q1())
    })
    .await;
    let last = store.last_submission(q1()).unwrap().unwrap();
    assert!(
        last.revision > ahead.revision,
        "{} <= {}",
        last.revision,
        ahead.revision
    );
    assert_ne!(last.digest, ahead.digest);
    hub_shows_the_agents_figures(&pki, &hub, &store).await;
    assert!(agent.agent.metrics().reissued.get() >= 1);
    assert!(
        agent
            .agent
            .metrics()
            .registry()
            .render()
            .contains("lacnet_agent_push_reissued_total")
    );
    // The hub keeps only the agent's (current) revision: the ahead one is deleted.
    let revs = hub.hub.revisions(THURROCK, q1()).unwrap();
    assert_eq!(revs, vec![last.revision]);

    drop((c, op, store));
    drop(agent.stop().await);
    hub.stop().await;
}

/// A `MakeWriter` that keeps every log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_submission_is_a_visible_dead_letter() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&pki, &dir.path().join("hub")).await;
    let k1 = key_file(dir.path(), "k1", 1);
    // Exact counts: looser than the network policy, so the hub refuses it for good.
    let mut o = pushing(&pki, &dir.path().join("agent"), &k1, &hub);
    o.policy = exact_policy();
    let agent = TestAgent::start(&pki, o.clone()).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;
    upsert(&mut c, batch("CASE-SECRET", 12)).await;
    let store = agent.agent.store().clone();
    wait_until("a dead letter", || {
        store.dead_len() >= 1 && store.outbox_len() == 0
    })
    .await;

    let s = status(&mut op).await;
    assert!(s.dead_letters >= 1, "{s:?}");
    assert_eq!(s.dead_letters, store.dead_len() as u64);
    assert!(
        s.last_dead_letter_reason.contains("FailedPrecondition")
            && s.last_dead_letter_reason.contains("policy"),
        "{}",
        s.last_dead_letter_reason
    );
    assert!(
        Period::parse(&s.last_dead_letter_period).is_ok(),
        "{:?}",
        s.last_dead_letter_period
    );
    assert_eq!(s.outbox_depth, 0);
    let rendered = agent.agent.metrics().registry().render();
    let gauge = format!("lacnet_agent_outbox_dead_letters {}", s.dead_letters);
    assert!(rendered.contains(&gauge), "{rendered}");

    // The log says what happened and what to do, and nothing about a person.
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("dead-lettered"))
        .unwrap_or_else(|| panic!("no dead-letter log line in:\n{text}"));
    assert!(line.contains("fix the cause"), "{line}");
    assert!(line.contains("GetStatus"), "{line}");
    assert!(!text.contains("CASE-SECRET"), "a case id reached the logs");
    assert!(!text.contains("E05002035"), "a ward code reached the logs");

    // After a restart the dead letters are still visible, in status and metric.
    drop((c, store));
    drop(agent.stop().await);
    let agent = TestAgent::start(&pki, o).await;
    let mut op = agent.client(&pki.operator).await;
    let again = status(&mut op).await;
    assert_eq!(again.dead_letters, s.dead_letters);
    assert_eq!(again.last_dead_letter_reason, s.last_dead_letter_reason);
    assert!(agent.agent.metrics().registry().render().contains(&gauge));
    assert!(logs.text().contains("waiting in the dead-letter tree"));

    drop(op);
    drop(agent.stop().await);
    hub.stop().await;
}

/// Every byte of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(bytes_under(&path));
        } else {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

/// A submission's cells as the hub's store encodes them.
fn encoded_cells(sub: &lacnet_proto::common::v1::Submission) -> Vec<u8> {
    let counts: Vec<lacnet_core::disclosure::Count> = sub
        .cells
        .iter()
        .map(|c| lacnet_proto::convert::count_from_proto(c.count.as_ref(), "cell").unwrap())
        .collect();
    serde_json::to_vec(&counts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_erased_at_the_site_are_gone_from_the_hub_once_the_next_release_lands() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let hub = TestHub::start(&pki, &hub_dir).await;
    let k1 = key_file(dir.path(), "k1", 1);
    let agent = TestAgent::start(&pki, pushing(&pki, &dir.path().join("agent"), &k1, &hub)).await;
    let mut c = agent.client(&pki.council).await;
    // 40 people with identical attributes; 10 of them will be erased, a
    // change large enough to pass any release gate.
    upsert(&mut c, batch("S", 40)).await;
    let store = agent.agent.store().clone();
    wait_until("the first release at the hub", || {
        settled(&store, &hub, q1())
    })
    .await;
    let first = store.last_submission(q1()).unwrap().unwrap();
    assert_eq!(cell(&first, "people_active"), 40);

    let mut op = agent.client(&pki.operator).await;
    for i in 0..10 {
        let erased = op
            .erase_person(site::ErasePersonRequest {
                identifier: Some(site::erase_person_request::Identifier::LocalCaseId(
                    format!("S-{i}"),
                )),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(erased.records_erased, 1);
    }
    wait_until("the next release at the hub", || {
        settled(&store, &hub, q1())
            && store.last_submission(q1()).unwrap().unwrap().digest != first.digest
    })
    .await;
    let second = store.last_submission(q1()).unwrap().unwrap();
    assert_eq!(cell(&second, "people_active"), 30);
    // The analyst's report has only the new figure.
    let (_, shown) = hub.figure(&pki, "people_active", "2025-Q1").await.unwrap();
    assert_eq!(shown, count_of(&second, "people_active"));
    assert_eq!(
        hub.hub.revisions(THURROCK, q1()).unwrap(),
        vec![second.revision]
    );

    drop((c, op, store));
    drop(agent.stop().await);
    drop(hub.stop().await);
    let (old, new) = (encoded_cells(&first), encoded_cells(&second));
    assert_ne!(old, new);
    let on_disk = bytes_under(&hub_dir);
    assert!(
        on_disk.windows(new.len()).any(|w| w == new.as_slice()),
        "the current release is in the hub's files"
    );
    assert!(
        !on_disk.windows(old.len()).any(|w| w == old.as_slice()),
        "the release with the erased people is still in the hub's files"
    );
}
