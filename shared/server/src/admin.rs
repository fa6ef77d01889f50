//! The admin port: Prometheus scrapes `/metrics`; Kubernetes and load
//! balancers that cannot speak gRPC health ask `/livez` (the process is up)
//! and `/readyz` (it is fit to serve; `/healthz` is kept as its alias).
//!
//! Served with hyper 1 (already compiled in through tonic), so query strings
//! (`/metrics?x=1`), `HEAD`, header limits and timeouts behave as HTTP
//! clients expect, rather than as a hand-written parser guessed. Connections
//! are capped at [`MAX_CONNECTIONS`] and each is closed after one response
//! or [`CONNECTION_TIMEOUT`]. It is plain HTTP: it binds to 127.0.0.1 by
//! default, and in Kubernetes the NetworkPolicy lets only the monitoring
//! namespace and the kubelet reach it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Registry;

/// Connections served at once; further scrapers wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest one connection may take, request and response together.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the service is fit to serve; `/readyz` answers 503 when not.
pub type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves the admin endpoints until `shutdown` fires; readiness always answers ok.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_health(listener, registry, Arc::new(|| true), shutdown).await
}

/// Serves the admin endpoints until `shutdown` fires; `/readyz` and
/// `/healthz` follow `healthy`, `/livez` answers ok while the process runs.
pub async fn serve_with_health(
    listener: TcpListener,
    registry: Arc<Registry>,
    healthy: HealthCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_limited(listener, registry, healthy, shutdown, MAX_CONNECTIONS).await
}

async fn serve_limited(
    listener: TcpListener,
    registry: Arc<Registry>,
    healthy: HealthCheck,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        // Take a slot before accepting, so excess clients queue in the kernel.
        let slot = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
        };
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let healthy = healthy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = route(&req, &registry, &healthy);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_TIMEOUT)
                // One request per connection: scrapes are seconds apart.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "admin request failed"),
                Err(_) => tracing::debug!("admin connection timed out"),
            }
            drop(slot);
        });
    }
}

/// The response to one request; the query string is ignored.
fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    healthy: &HealthCheck,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // hyper leaves the body out of a HEAD response, keeping its content-length.
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, registry.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" | "/healthz" if healthy() => text(StatusCode::OK, "ok\n"),
        "/readyz" | "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_liveness_and_readiness_then_stops_on_shutdown() {
        let registry = Arc::new(Registry::new());
        registry.counter("lacnet_test_total", "Test.").inc();
        let ready = Arc::new(AtomicBool::new(false));
        let probe = ready.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve_with_health(
            listener,
            registry,
            Arc::new(move || probe.load(Ordering::SeqCst)),
            token.clone(),
        ));

        let metrics = request(addr, "GET", "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(metrics.contains("lacnet_test_total 1"), "{metrics}");
        #[cfg(target_os = "linux")]
        assert!(
            metrics.contains("process_resident_memory_bytes "),
            "{metrics}"
        );
        // A query string does not change the path.
        let scraped = request(addr, "GET", "/metrics?x=1").await;
        assert!(scraped.contains("lacnet_test_total 1"), "{scraped}");
        // HEAD: the headers with the length, and no body.
        let head = request(addr, "HEAD", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("content-length: "), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");

        // Up but not ready: liveness passes, readiness (and its alias) fail.
        assert!(
            request(addr, "GET", "/livez")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            request(addr, "GET", "/readyz")
                .await
                .starts_with("HTTP/1.1 503")
        );
        assert!(
            request(addr, "GET", "/healthz")
                .await
                .starts_with("HTTP/1.1 503")
        );
        ready.store(true, Ordering::SeqCst);
        assert!(
            request(addr, "GET", "/readyz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            request(addr, "GET", "/healthz?verbose")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            request(addr, "GET", "/nope")
                .await
                .starts_with("HTTP/1.1 404")
        );
        let post = request(addr, "POST", "/metrics").await;
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"),
            "{post}"
        );

        token.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait() {
        let registry = Arc::new(Registry::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve_limited(
            listener,
            registry,
            Arc::new(|| true),
            token.clone(),
            1,
        ));
        // A client that connects and says nothing holds the only slot...
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut waiting = tokio::spawn(request(addr, "GET", "/livez"));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
        assert!(
            early.is_err(),
            "a second connection was served beyond the cap of 1"
        );
        // ...until it goes away.
        drop(silent);
        let answered = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting request was never served")
            .unwrap();
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        token.cancel();
        server.await.unwrap().unwrap();
    }
}
