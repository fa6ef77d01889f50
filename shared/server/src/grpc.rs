//! The one way a lacnet service serves gRPC: mTLS with the transport limits,
//! a per-request timeout, a per-connection concurrency cap, gRPC health and
//! reflection, and a shutdown that waits for its users.
//!
//! The hub and the agent each build their tonic services into [`Services`]
//! and call [`serve`] once they are ready (their `open` has loaded what they
//! need); what stays with them is which services, and what to flush once
//! `serve` has returned.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lacnet_tls::TransportLimits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;

/// How one server serves; the service's own options fill it.
#[derive(Debug, Clone)]
pub struct GrpcServer {
    /// The server's rustls config (client certificates required).
    pub tls: Arc<rustls::ServerConfig>,
    /// Connection limit, idle timeout and HTTP/2 keepalive and stream limits;
    /// `max_concurrent_streams` also caps the calls one connection has in flight.
    pub limits: TransportLimits,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long in-flight calls may run on once shutdown begins before they
    /// are cut off; the connection tasks then get as long again to end.
    pub drain_timeout: Duration,
    /// Encoded `FileDescriptorSet`s describing the services, for reflection.
    pub descriptors: &'static [&'static [u8]],
}

/// A service's own gRPC services, with their names for health and reflection.
#[derive(Debug, Clone, Default)]
pub struct Services {
    routes: Routes,
    names: Vec<&'static str>,
}

impl Services {
    /// No services yet.
    pub fn new() -> Services {
        Services::default()
    }

    /// Adds a generated tonic server; its name is reported by health and
    /// listed by reflection.
    pub fn add_service<S>(mut self, service: S) -> Services
    where
        S: tower_service::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }
}

/// Why [`serve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] crate::reflection::ReflectionError),
    /// tonic's server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `services` over mTLS on `listener` until `shutdown` or
/// `store_failed` completes.
///
/// The caller is ready to serve: gRPC health says `SERVING` for every
/// service (and the server as a whole, `""`) from the start, and
/// `NOT_SERVING` once shutdown begins. Then the server stops
/// accepting and drains in-flight calls, cutting off those still running
/// after the drain timeout. It returns only once every connection task and
/// every call has dropped the services (and so the state they hold), as
/// mini-redis's `run` does, so the caller can flush or reopen its store at
/// once. The caller decides what a store failure means for its result.
pub async fn serve(
    listener: TcpListener,
    server: GrpcServer,
    services: Services,
    store_failed: impl Future<Output = ()> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let names: Vec<&'static str> = std::iter::once("").chain(services.names.clone()).collect();
    for name in &names {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let (reflection, reflection_v1alpha) =
        crate::reflection::services(server.descriptors, &services.names)?;
    let routes = services
        .routes
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha);

    let drain_begun = CancellationToken::new();
    let draining = {
        let drain_begun = drain_begun.clone();
        let set = move |status| {
            let (reporter, names) = (reporter.clone(), names.clone());
            async move {
                for name in &names {
                    reporter.set_service_status(name, status).await;
                }
            }
        };
        async move {
            tokio::select! {
                () = shutdown => {
                    tracing::info!("shutting down: no new calls, draining in-flight ones");
                }
                // The caller logs why its store failed; here it only stops serving.
                () = store_failed => {}
            }
            set(ServingStatus::NotServing).await;
            drain_begun.cancel();
        }
    };

    let limits = server.limits;
    let cut = CancellationToken::new();
    let incoming =
        lacnet_tls::incoming_until_cut(listener, server.tls.clone(), limits, cut.clone());
    // Every connection task and every call holds a tracker until it has
    // dropped its clone of the services.
    let (tracker, drained) = crate::drain::tracker();
    let served = limits
        .apply(tonic::transport::Server::builder())
        .timeout(server.request_timeout)
        .concurrency_limit_per_connection(limits.max_concurrent_streams as usize)
        .layer(tracker.layer())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, draining);
    // A client that keeps a call open must not hold the shutdown for ever.
    let drain_timeout = server.drain_timeout;
    let served = tokio::select! {
        served = served => served,
        () = async {
            drain_begun.cancelled().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(
                drain_timeout_ms = drain_timeout.as_millis() as u64,
                "calls still in flight after the drain timeout; cutting them off"
            );
            cut.cancel();
            Ok(())
        }
    };
    drop(tracker);
    // Calls cut off by the drain timeout may still be ending: they get the
    // same time again, and then the runtime's end drops them.
    if !drained.wait_at_most(drain_timeout).await {
        tracing::warn!("connection tasks still hold the service state after the drain timeout");
    }
    Ok(served?)
}
