//! The admin port: Prometheus scrapes `/metrics`, and `/healthz` answers for
//! tools that cannot speak gRPC health.
//!
//! Kept to a hand-written HTTP/1.1 responder over Tokio: the port serves two
//! fixed GET paths and nothing else, which does not justify an HTTP framework.
//! It is plain HTTP and must stay on a cluster-internal port (the
//! NetworkPolicy only lets the monitoring namespace reach it).

use crate::metrics::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Longest request head accepted; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// Whether the service is fit to serve; `/healthz` answers 503 when not.
pub type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves the admin endpoints until `shutdown` fires; `/healthz` always answers ok.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_health(listener, registry, Arc::new(|| true), shutdown).await
}

/// Serves the admin endpoints until `shutdown` fires; `/healthz` follows `healthy`.
pub async fn serve_with_health(
    listener: TcpListener,
    registry: Arc<Registry>,
    healthy: HealthCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
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
            let answered = tokio::time::timeout(
                Duration::from_secs(10),
                respond(stream, &registry, &healthy),
            )
            .await;
            if let Ok(Err(e)) = answered {
                tracing::debug!(error = %e, "admin request failed");
            }
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    registry: &Registry,
    healthy: &HealthCheck,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/metrics") => {
            let body = registry.render();
            write(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        ("GET", "/healthz") if healthy() => {
            write(&mut stream, "200 OK", "text/plain", "ok\n").await
        }
        ("GET", "/healthz") => {
            write(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                "unhealthy\n",
            )
            .await
        }
        ("GET", _) => write(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
        _ => write(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_then_stops_on_shutdown() {
        let registry = Arc::new(Registry::new());
        registry.counter("lacnet_test_total", "Test.").inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, registry, token.clone()));

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK"));
        assert!(metrics.contains("lacnet_test_total 1"));
        assert!(get(addr, "/healthz").await.ends_with("ok\n"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        token.cancel();
        server.await.unwrap().unwrap();
    }
}
