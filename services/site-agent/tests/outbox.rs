//! Outbox retry: the agent pushes to a hub that is down, keeps everything,
//! and drains with no duplicates once the real hub (lacnet-hub) comes up on
//! that address.
//!
//! The hub's port is chosen by binding 127.0.0.1:0 and dropping the listener,
//! then re-binding it when the hub starts. This is the one place a test frees
//! a port before using it: holding the listener would make the agent's pushes
//! hang in the TLS handshake (the kernel accepts into the backlog) instead of
//! failing fast the way a down hub does. Another process grabbing the port in
//! between is possible but very unlikely, and would fail the bind loudly.

use std::time::Duration;

use lacnet_core::Period;
use lacnet_hub::{Hub, HubOptions, Registry};
use lacnet_proto::convert::period_from_proto;
use lacnet_site_agent::HubTarget;
use lacnet_testkit::agent::*;

async fn poll<F: FnMut() -> bool>(what: &str, mut done: F) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_down_hub_and_drains_without_duplicates() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let hub_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut o = options(&pki, &dir.path().join("agent"), ring(&[("k1", &k1)]));
    o.policy = lacnet_core::DisclosurePolicy::default(); // the hub refuses weaker policies
    o.hub = Some(HubTarget {
        url: format!("https://{hub_addr}"),
        server_name: "hub.lacnet".into(),
        tls: pki.site.clone(),
    });
    o.publish_debounce = Duration::from_millis(20);
    o.push_backoff_base = Duration::from_millis(20);
    o.push_backoff_cap = Duration::from_millis(200);
    let agent = TestAgent::start(&pki, o).await;
    let mut c = agent.client(&pki.council).await;
    let mut op = agent.client(&pki.operator).await;

    let records: Vec<_> = (0..40)
        .map(|i| {
            let mut r = rec(
                &format!("H-{i}"),
                "",
                if i % 2 == 0 {
                    "2025-01-10"
                } else {
                    "2025-05-20"
                },
            );
            if i % 3 == 0 {
                r.closed_on = "2025-06-30".into();
            }
            r
        })
        .collect();
    assert_eq!(upsert(&mut c, records).await.accepted, 40);

    // The hub is down: the first comparison with it fails and is retried
    // (nothing is pushed before one succeeds); nothing leaves the outbox.
    let m = agent.agent.metrics().clone();
    let failed = lacnet_site_agent::metrics::ReconcileOutcome::Failed;
    let queue = agent.agent.store().clone();
    poll("failed attempts and a queue", || {
        m.reconciles.get(failed) >= 3 && queue.outbox_len() >= 2
    })
    .await;
    assert_eq!(
        m.push_attempts.get(),
        0,
        "pushed before comparing with the hub"
    );
    let s = status(&mut op).await;
    assert!(!s.last_push_error.is_empty());
    assert_eq!(s.last_push_unix, 0);
    // One entry per period, each its last submission. A publishing round may
    // enqueue a span between two reads, so they are compared once settled.
    let store = agent.agent.store().clone();
    let queued = lacnet_testkit::poll("one outbox entry per period", || {
        let mut op = op.clone();
        let store = store.clone();
        async move {
            let depth = status(&mut op).await.outbox_depth;
            (depth as usize == store.last_submissions().unwrap().len()).then_some(depth)
        }
    })
    .await;
    assert!(queued >= 2, "outbox depth {queued}");

    // The hub comes up on that address.
    let registry = Registry::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../hub/registry.toml"
    )))
    .unwrap();
    let hub = Hub::open(HubOptions::new(
        dir.path().join("hub"),
        registry,
        pki.hub_bundle(),
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind(hub_addr).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let hub_task = tokio::spawn(lacnet_hub::serve(
        listener,
        hub.clone(),
        stop.clone().cancelled_owned(),
    ));

    let store = agent.agent.store().clone();
    poll("the outbox to drain", || store.outbox_len() == 0).await;
    let s = status(&mut op).await;
    assert_eq!(s.outbox_depth, 0);
    assert!(s.last_push_unix > 0);
    assert!(s.last_push_error.is_empty());

    // Exactly one revision per period at the hub, the one the agent last built.
    let last = agent.agent.store().last_submissions().unwrap();
    assert_eq!(last.len() as u64, queued);
    for sub in &last {
        let period: Period = period_from_proto(sub.period.as_ref(), "period").unwrap();
        assert_eq!(
            hub.revisions(THURROCK, period).unwrap(),
            vec![sub.revision],
            "{period}"
        );
        assert_eq!(hub.current_revision(THURROCK, period), Some(sub.revision));
        // And the preview still shows exactly what was sent.
        let p = preview(&mut op, &period.to_string()).await;
        assert_eq!(p, *sub);
    }

    // A change makes exactly one new revision for the affected periods.
    let mut more: Vec<_> = (0..10)
        .map(|i| rec(&format!("N-{i}"), "", "2025-02-02"))
        .collect();
    more[0].outcomes = vec![lacnet_proto::common::v1::Outcome::Volunteering as i32];
    upsert(&mut c, more).await;
    let q1 = Period::parse("2025-Q1").unwrap();
    let first_q1 = hub.current_revision(THURROCK, q1).unwrap();
    let hub2 = hub.clone();
    poll("revision 2 at the hub", || {
        hub2.current_revision(THURROCK, q1) != Some(first_q1)
    })
    .await;
    poll("the outbox to drain again", || store.outbox_len() == 0).await;
    // Revisions are clock-based (Unix ms), ascending; the hub keeps only the current one.
    let revs = hub.revisions(THURROCK, q1).unwrap();
    let last_q1 = agent.agent.store().last_submission(q1).unwrap().unwrap();
    assert!(first_q1 < last_q1.revision);
    assert_eq!(revs, vec![last_q1.revision]);
    assert_eq!(hub.current_revision(THURROCK, q1), Some(last_q1.revision));

    // This hub's listing says it reads packed cells: every submission came packed.
    let hm = hub.metrics();
    let received: u64 = lacnet_hub::metrics::SubmissionOutcome::ALL
        .iter()
        .map(|&o| hm.submissions.get(o))
        .sum();
    assert!(received > queued, "{received} submissions");
    assert_eq!(hm.packed_submissions.get(), received);

    agent.stop().await;
    stop.cancel();
    hub_task.await.unwrap().unwrap();
}
