//! End-to-end mTLS: a real tonic server on 127.0.0.1:0 fed by `lacnet_tls::incoming`, with
//! clients that should and should not get in. The health service stands in for a lacnet
//! service; an interceptor records `peer_of` for every call that reaches it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use lacnet_tls::dev::{DevCa, IssuedCert, bundle};
use lacnet_tls::{Peer, PemBundle, peer_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct TestServer {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    async fn start(pem: &PemBundle) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = lacnet_tls::server_config(pem).unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let svc = InterceptedService::new(health, move |req: tonic::Request<()>| {
            let peer = peer_of(&req)?;
            seen.lock().unwrap().push(peer.to_string());
            Ok(req)
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(lacnet_tls::incoming(listener, config), async {
                    let _ = stopped.await;
                }),
        );
        TestServer {
            addr,
            peers,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connects with `pem` and makes one health check; Ok only if the call succeeded.
    async fn check(&self, pem: &PemBundle) -> Result<(), String> {
        let channel = lacnet_tls::connect(&self.url(), pem, "localhost")
            .await
            .map_err(|e| e.to_string())?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn peers(&self) -> Vec<String> {
        self.peers.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

struct Pki {
    ca: DevCa,
    server: IssuedCert,
}

fn pki() -> Pki {
    let ca = DevCa::new("lacnet test CA").unwrap();
    let server = ca.issue_server(&["hub.lacnet"]).unwrap();
    Pki { ca, server }
}

#[tokio::test]
async fn site_and_analyst_are_identified() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;

    let site = pki.ca.issue(&Peer::Site("E06000034".into()), &[]).unwrap();
    server.check(&bundle(&pki.ca, &site)).await.unwrap();
    let analyst = pki.ca.issue(&Peer::Analyst("alice".into()), &[]).unwrap();
    server.check(&bundle(&pki.ca, &analyst)).await.unwrap();

    assert_eq!(server.peers(), vec!["site:E06000034", "analyst:alice"]);
    server.stop().await;
}

#[tokio::test]
async fn certificate_without_lacnet_identity_is_unauthenticated() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;
    // Chains to the CA, so TLS succeeds, but names no lacnet caller.
    let anonymous = pki.ca.issue_server(&["somebody"]).unwrap();
    let err = server
        .check(&bundle(&pki.ca, &anonymous))
        .await
        .unwrap_err();
    assert!(err.contains("no lacnet identity"), "{err}");
    assert!(server.peers().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;

    // tonic's own TLS config, with the right CA but no identity.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca.ca_pem()))
        .domain_name("localhost");
    let result = async {
        let channel = tonic::transport::Endpoint::from_shared(server.url())?
            .tls_config(tls)?
            .connect()
            .await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|e| e.into())
    }
    .await;
    let _: Box<dyn std::error::Error> = result.map(|_| ()).unwrap_err();
    assert!(server.peers().is_empty());

    // The server still serves a proper client afterwards.
    let site = pki.ca.issue(&Peer::Site("W06000001".into()), &[]).unwrap();
    server.check(&bundle(&pki.ca, &site)).await.unwrap();
    assert_eq!(server.peers(), vec!["site:W06000001"]);
    server.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_rejected() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;

    let rogue_ca = DevCa::new("rogue CA").unwrap();
    let rogue = rogue_ca
        .issue(&Peer::Site("E06000034".into()), &[])
        .unwrap();
    // Trusts the real CA (so the server is accepted) but presents the rogue certificate.
    let pem = PemBundle {
        ca: pki.ca.ca_pem().into_bytes(),
        ..bundle(&rogue_ca, &rogue)
    };
    assert!(server.check(&pem).await.is_err());
    assert!(server.peers().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn revoked_certificate_is_rejected() {
    let pki = pki();
    let revoked = pki.ca.issue(&Peer::Site("E06000001".into()), &[]).unwrap();
    let good = pki.ca.issue(&Peer::Site("E06000002".into()), &[]).unwrap();
    let mut server_pem = bundle(&pki.ca, &pki.server);
    server_pem.crls = vec![pki.ca.crl(&[&revoked]).unwrap().into_bytes()];
    let server = TestServer::start(&server_pem).await;

    assert!(server.check(&bundle(&pki.ca, &revoked)).await.is_err());
    server.check(&bundle(&pki.ca, &good)).await.unwrap();
    assert_eq!(server.peers(), vec!["site:E06000002"]);
    server.stop().await;
}

#[tokio::test]
async fn broken_and_stalled_handshakes_do_not_stop_the_server() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;

    // A client that connects and says nothing: its handshake is pending while others proceed.
    let _stalled = TcpStream::connect(server.addr).await.unwrap();

    // A client that sends garbage: the server must close it, not crash.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Returns once the server has given up on this connection (it may send an alert first).
    let _ = garbage.read_to_end(&mut buf).await;

    let site = pki.ca.issue(&Peer::Site("S12000033".into()), &[]).unwrap();
    server.check(&bundle(&pki.ca, &site)).await.unwrap();
    let council = pki
        .ca
        .issue(&Peer::Council("aberdeen".into()), &[])
        .unwrap();
    server.check(&bundle(&pki.ca, &council)).await.unwrap();
    assert_eq!(server.peers(), vec!["site:S12000033", "council:aberdeen"]);
    server.stop().await;
}

#[tokio::test]
async fn lazy_channel_connects_on_first_use() {
    let pki = pki();
    let server = TestServer::start(&bundle(&pki.ca, &pki.server)).await;
    let site = pki.ca.issue(&Peer::Site("N09000001".into()), &[]).unwrap();
    let channel =
        lacnet_tls::lazy_channel(&server.url(), &bundle(&pki.ca, &site), "localhost").unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(server.peers(), vec!["site:N09000001"]);
    server.stop().await;
}

#[tokio::test]
async fn http_url_is_refused() {
    let pki = pki();
    let site = pki.ca.issue(&Peer::Site("E06000034".into()), &[]).unwrap();
    let err = lacnet_tls::lazy_channel("http://127.0.0.1:1", &bundle(&pki.ca, &site), "localhost")
        .unwrap_err();
    assert!(matches!(err, lacnet_tls::TlsError::BadUrl { .. }), "{err}");
}

/// A call a client keeps open (a health Watch) would hold a graceful shutdown
/// for ever; cutting the connections off ends it.
#[tokio::test]
async fn cutting_the_connections_ends_a_call_the_client_keeps_open() {
    let pki = pki();
    let pem = bundle(&pki.ca, &pki.server);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = lacnet_tls::server_config(&pem).unwrap();
    let cut = tokio_util::sync::CancellationToken::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let incoming = lacnet_tls::incoming_until_cut(
        listener,
        config,
        lacnet_tls::TransportLimits::default(),
        cut.clone(),
    );
    let server = tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );

    let site = pki.ca.issue(&Peer::Site("E06000034".into()), &[]).unwrap();
    let channel = lacnet_tls::connect(
        &format!("https://{addr}"),
        &bundle(&pki.ca, &site),
        "localhost",
    )
    .await
    .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // The first status arrives at once; the stream then stays open.
    assert!(watch.message().await.unwrap().is_some());

    cut.cancel();
    // Bounded only so that a regression fails rather than hangs.
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), watch.message())
        .await
        .expect("the open call outlived the cut");
    assert!(!matches!(next, Ok(Some(_))), "{next:?}");
    server.abort();
}
