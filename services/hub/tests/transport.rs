//! Transport limits at the real hub: a client that completes the TLS
//! handshake and then sends nothing is closed after the idle timeout, and
//! clients beyond the connection limit wait until a connection closes.

use std::time::{Duration, Instant};

use lacnet_testkit::hub::*;
use lacnet_tls::{PemBundle, TransportLimits};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A TCP connection and a completed mTLS handshake, then nothing.
async fn silent_client(addr: std::net::SocketAddr, pem: &PemBundle) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let config = lacnet_tls::client_config(pem).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the connection (EOF or an error); panics after `limit`.
async fn until_closed(stream: &mut TlsStream<TcpStream>, limit: Duration) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // The server's HTTP/2 SETTINGS; the client answers nothing.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a silent connection open");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(1);
    let hub = TestHub::start(&pki, dir.path(), |o| {
        o.transport = TransportLimits {
            idle_timeout: idle,
            keepalive_interval: Duration::from_millis(300),
            keepalive_timeout: Duration::from_millis(300),
            ..TransportLimits::default()
        };
    })
    .await;
    let started = Instant::now();
    let mut silent = silent_client(hub.addr, &pki.analyst).await;
    until_closed(&mut silent, Duration::from_secs(15)).await;
    let held = started.elapsed();
    assert!(
        held >= idle - Duration::from_millis(100),
        "closed after {held:?}"
    );

    // A live client is unaffected: keepalive PINGs are answered, calls work.
    let mut reports = hub.reports(&pki.analyst).await;
    reports
        .list_sites(lacnet_proto::hub::v1::ListSitesRequest {})
        .await
        .unwrap();
    hub.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // TestHub::start's readiness check holds one connection while it polls,
    // and drops it once SERVING, so the limit is free again when it returns.
    let hub = TestHub::start(&pki, dir.path(), |o| {
        o.transport = TransportLimits {
            max_connections: 2,
            ..TransportLimits::default()
        };
    })
    .await;
    let addr = hub.addr;
    // Take both slots (each handshake waits, if need be, for the readiness connection to close).
    let first = silent_client(addr, &pki.analyst).await;
    let second = silent_client(addr, &pki.analyst).await;

    // A third client's TCP connection is queued, and its handshake waits...
    let analyst = pki.analyst.clone();
    let mut third = tokio::spawn(async move { silent_client(addr, &analyst).await });
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(
        waited.is_err(),
        "a third connection was served beyond the limit of 2"
    );

    // ...until one of the two closes; then it is served.
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the queued connection was never served after a slot freed")
        .unwrap();
    drop((second, third));
    hub.stop().await;
}
