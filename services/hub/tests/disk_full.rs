//! A full disk at the hub. Its data directory sits on a small tmpfs that a
//! filler file then fills. The submission whose write fails gets UNAVAILABLE
//! (retryable: the agent's outbox tries again), the hub reports itself
//! unhealthy (`/readyz` answers 503, gRPC health goes NOT_SERVING), refuses
//! further writes at once, and `serve` returns an error, which the binary
//! turns into a non-zero exit for Kubernetes to restart it. sled 0.34 keeps
//! failing after an I/O error, so limping on is not an option.
//!
//! Needs root to mount the tmpfs (CI runs as root). Without root it says so
//! on stderr and passes without checking anything.

use std::time::Duration;

use lacnet_hub::HubError;
use lacnet_testkit::hub::*;
use lacnet_testkit::tmpfs::{Tmpfs, fill_up, is_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_readiness_and_ends_serve_with_an_error() {
    if !is_root() {
        eprintln!("disk_full: not checked: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("mnt"), "4m").expect("mount a tmpfs as root");
    let hub = TestHub::start(&pki, &fs.path().join("data"), |_| {}).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let probe = hub.hub.clone();
    let admin_stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(lacnet_server::admin::serve_with_health(
        admin,
        hub.hub.metrics().registry(),
        std::sync::Arc::new(move || probe.healthy()),
        admin_stop.clone(),
    ));
    let agg = aggregates(200, 100, 40, 20);
    hub.submit(&pki.thurrock, submission(THURROCK, "2024-Q1", 1, &agg))
        .await
        .expect("a submission fits before the disk is full");
    assert!(
        http_get(admin_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    fill_up(&fs.path().join("filler"));
    let mut failure = None;
    for revision in 2..5000 {
        match hub
            .submit(
                &pki.thurrock,
                submission(THURROCK, "2024-Q1", revision, &agg),
            )
            .await
        {
            Ok(_) => {}
            Err(status) => {
                failure = Some(status);
                break;
            }
        }
    }
    let failure = failure.expect("5000 submissions fitted on a full disk");
    assert_eq!(failure.code(), Code::Unavailable, "{failure:?}");
    assert!(failure.message().contains("disk"), "{}", failure.message());
    assert!(!hub.hub.healthy());
    let readyz = http_get(admin_addr, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(
        http_get(admin_addr, "/livez")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // serve stops on its own and says why; main turns that into exit code 1.
    let served = hub.finished(Duration::from_secs(30)).await;
    assert!(
        matches!(served, Err(HubError::Unavailable(_))),
        "{served:?}"
    );
    admin_stop.cancel();
}
