//! Shutdown waits for its users (as mini-redis's `shutdown_complete`): once
//! `serve` has returned, nothing holds the agent or its store, even with a
//! client that keeps its connection open and a call still in flight, so the
//! data directory reopens at once with no retry.

use std::time::Duration;

use lacnet_proto::site::v1 as site;
use lacnet_testkit::agent::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_after_every_call_and_connection_has_dropped_the_agent() {
    let pki = Pki::new();
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let k1 = key_file(keys.path(), "k1", 1);
    let mut options = options(&pki, data.path(), ring(&[("k1", &k1)]));
    // The stream below never ends by itself: shutdown must cut it off.
    options.drain_timeout = Duration::from_secs(2);
    // No publishing to wait for at shutdown: what remains to end is the call.
    options.publish_debounce = Duration::from_secs(3600);
    let reopen = options.clone();
    let agent = TestAgent::start(&pki, options).await;

    // A connection that stays open across the shutdown, idle.
    let mut idle = agent.client(&pki.council).await;
    let reply = upsert(&mut idle, vec![rec("c1", &nhs(100_000_001), "2024-05-01")]).await;
    assert_eq!(verdicts(&reply), vec![site::Verdict::AcceptedNew]);

    // A call in flight: a stream that keeps sending, so that when it is cut
    // off chunks are still being pseudonymised and written.
    let mut streaming = agent.client(&pki.council).await;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let producer = tokio::spawn(async move {
        for i in 0..2_000_000u64 {
            let r = rec(&format!("s{i}"), &nhs(200_000_000 + 10 * i), "2024-05-01");
            if tx.send(r).await.is_err() {
                break;
            }
        }
    });
    let call = tokio::spawn(async move {
        streaming
            .stream_records(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let store = agent.agent.store().clone();
    let chunk = lacnet_site_agent::STREAM_CHUNK as u64;
    wait_until("a streamed chunk to be stored", || {
        store.record_count().unwrap() > chunk
    })
    .await;
    drop(store);

    let stopped = agent.stop().await;
    let stored = stopped.store().record_count().unwrap();
    drop(stopped);
    // sled's own open, without lacnet-store's wait for the lock: it fails
    // while anything still holds the store.
    let db = sled::Config::new().path(data.path()).open();
    assert!(db.is_ok(), "the store is still held: {:?}", db.err());
    drop(db);
    let reopened = lacnet_site_agent::Agent::open(reopen).unwrap();
    assert_eq!(reopened.store().record_count().unwrap(), stored);

    // The in-flight call was cut off, not completed.
    assert!(call.await.unwrap().is_err());
    producer.await.unwrap();
    drop(idle);
}
