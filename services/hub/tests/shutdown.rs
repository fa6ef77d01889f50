//! Shutdown waits for its users (as mini-redis's `shutdown_complete`): once
//! `serve` has returned, no connection task holds the hub or its store, even
//! with clients that keep their connections open and calls that were in
//! flight, so the data directory reopens at once with no retry.

use lacnet_hub::{Hub, HubOptions};
use lacnet_proto::hub::v1 as hub;
use lacnet_testkit::hub::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_after_every_connection_has_dropped_the_hub() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..15u64 {
        let test_hub = TestHub::start(&pki, dir.path(), |_| {}).await;
        // Several clients, each keeping its connection open, and calls in flight.
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(test_hub.reports(&pki.analyst).await);
        }
        let mut calls = Vec::new();
        for c in &clients {
            let mut c = c.clone();
            calls.push(tokio::spawn(async move {
                c.list_sites(hub::ListSitesRequest {}).await.map(|_| ())
            }));
        }
        let receipt = test_hub
            .submit(
                &pki.thurrock,
                submission(
                    THURROCK,
                    "2024-Q1",
                    round + 1,
                    &aggregates(200, 100, 40, 20),
                ),
            )
            .await
            .unwrap();
        assert_eq!(receipt.revision, round + 1);
        let hub = test_hub.stop().await;
        assert_eq!(
            hub.handles(),
            1,
            "round {round}: a connection task still holds the hub after serve returned"
        );
        drop(hub);
        // The directory is free: sled's own open, no lacnet retry around it.
        let db = sled::Config::new().path(dir.path()).open();
        let free = match &db {
            Ok(_) => true,
            Err(e) => !format!("{e}").contains("lock"),
        };
        assert!(free, "round {round}: sled is still locked: {db:?}");
        drop(db);
        for call in calls {
            let _ = call.await.unwrap();
        }
        drop(clients);
    }
    let reopened = Hub::open(HubOptions::new(
        dir.path(),
        shipped_registry(),
        pki.server_bundle(),
    ));
    assert!(reopened.is_ok(), "{:?}", reopened.err());
}
