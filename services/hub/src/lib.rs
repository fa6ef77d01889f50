//! `lacnet-hub`: the LAC Network hub. Site agents push protected aggregates
//! here over mTLS; analysts (and, by policy, sites) read cross-site
//! comparisons built from the latest revision of every site's submissions.
//!
//! ```text
//! site agent ──Submissions.Submit (mTLS, site cert)──▶ submissions.rs ─▶ store.rs (sled)
//! analyst    ──Reports.* (mTLS, analyst cert)────────▶ reports.rs ◀── in-memory latest tables
//! ```
//!
//! # Running the hub (stable API, used by this crate's tests, the site agent's tests and the e2e tests)
//!
//! ```no_run
//! # async fn demo(pem: lacnet_tls::PemBundle) -> Result<(), lacnet_hub::HubError> {
//! use lacnet_hub::{Hub, HubOptions, Registry};
//! let registry = Registry::load("services/hub/registry.toml".as_ref())?;
//! // `pem` is the hub's own certificate and key plus the network CA (e.g. from
//! // `lacnet_tls::dev::bundle(&ca, &ca.issue_server(&["hub.lacnet"])?)` in a test).
//! let hub = Hub::open(HubOptions::new("/tmp/hub-data", registry, pem))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let addr = listener.local_addr().unwrap();
//! let stop = tokio_util::sync::CancellationToken::new();
//! let task = tokio::spawn(lacnet_hub::serve(listener, hub.clone(), stop.clone().cancelled_owned()));
//! // ... connect with lacnet_tls::connect(&format!("https://{addr}"), &client_pem, "localhost") ...
//! stop.cancel();
//! task.await.unwrap()?; // drains in-flight calls and flushes sled
//! drop(hub); // release the sled lock before re-opening the same directory
//! # Ok(()) }
//! ```
//!
//! The hub is ready once the gRPC health service (on the same mTLS port)
//! answers `SERVING` for `lacnet.hub.v1.Submissions`.

#![warn(missing_docs)]

pub mod authz;
pub mod backup;
pub mod bounded;
pub use lacnet_clock as clock;
pub mod config;
pub mod convert;
mod error;
pub mod metrics;
pub mod registry;
pub mod reports;
pub mod store;
pub mod submissions;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lacnet_core::period::Period;
use lacnet_proto::hub::v1::reports_server::ReportsServer;
use lacnet_proto::hub::v1::submissions_server::SubmissionsServer;
use lacnet_tls::PemBundle;
use tokio::net::TcpListener;

pub use error::{ErrorKind, HubError};
pub use metrics::HubMetrics;
pub use registry::{Registry, Site, UnitCost};
pub use store::AuditEvent;

/// Default largest gRPC message accepted (a submission is a few KB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight calls may run once shutdown begins, by default: calls
/// end within the request timeout, so connections do too, with 5 s to spare.
pub const DEFAULT_DRAIN_TIMEOUT: Duration =
    DEFAULT_REQUEST_TIMEOUT.saturating_add(Duration::from_secs(5));

/// Everything [`Hub::open`] needs.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Directory for the sled database (created if missing).
    pub data_dir: PathBuf,
    /// The site registry (sites, network policy, unit costs).
    pub registry: Registry,
    /// The hub's certificate, key and the network CA (plus CRLs).
    pub tls: PemBundle,
    /// Whether a site may see the network comparison (otherwise only its own rows).
    pub sites_see_network: bool,
    /// Largest gRPC message accepted.
    pub max_message_bytes: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long in-flight calls may run once shutdown begins.
    pub drain_timeout: Duration,
    /// sled page cache in bytes; it bounds resident memory (sled's own default is 1 GiB).
    pub cache_bytes: u64,
    /// Connection limit, idle timeout and HTTP/2 keepalive and stream limits.
    pub transport: lacnet_tls::TransportLimits,
    /// What "now" is (the system clock; tests set a [`clock::MockClock`]).
    pub clock: Arc<dyn clock::Clock>,
}

/// Default sled page cache: the hub's working set (latest revisions) is small and
/// kept in memory anyway, so a modest cache fits a 512 MiB container.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// Whether sites see the network comparison by default (otherwise only their own rows).
pub const DEFAULT_SITES_SEE_NETWORK: bool = true;

impl HubOptions {
    /// Options with defaults: sites see the network, 4 MiB messages, 30 s timeout.
    pub fn new(data_dir: impl Into<PathBuf>, registry: Registry, tls: PemBundle) -> HubOptions {
        HubOptions {
            data_dir: data_dir.into(),
            registry,
            tls,
            sites_see_network: DEFAULT_SITES_SEE_NETWORK,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            cache_bytes: DEFAULT_CACHE_BYTES,
            transport: lacnet_tls::TransportLimits::default(),
            clock: Arc::new(clock::SystemClock),
        }
    }
}

/// An open hub: storage, registry, TLS config and metrics. Cheap to clone.
///
/// The sled directory stays locked until every clone is dropped.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: store::Store,
    registry: Registry,
    sites_see_network: bool,
    max_message_bytes: usize,
    request_timeout: Duration,
    drain_timeout: Duration,
    tls: Arc<rustls::ServerConfig>,
    transport: lacnet_tls::TransportLimits,
    metrics: HubMetrics,
    /// The first store write failure, once there has been one.
    store_failure: std::sync::OnceLock<String>,
    /// Fired with `store_failure`, so `serve` stops serving.
    store_failed: tokio_util::sync::CancellationToken,
    clock: Arc<dyn clock::Clock>,
}

impl Hub {
    /// Opens (or creates) the hub's database and builds the TLS config, so bad
    /// certificates or an unusable data directory fail here, at startup.
    pub fn open(options: HubOptions) -> Result<Hub, HubError> {
        let tls = lacnet_tls::server_config(&options.tls)?;
        let metrics = HubMetrics::new();
        let store = store::Store::open_with(
            &options.data_dir,
            options.cache_bytes,
            Some(metrics.store_observer()),
            options.clock.clone(),
        )?;
        withdraw_other_series(&store, &options.registry)?;
        Ok(Hub {
            inner: Arc::new(Inner {
                store,
                registry: options.registry,
                sites_see_network: options.sites_see_network,
                max_message_bytes: options.max_message_bytes,
                request_timeout: options.request_timeout,
                drain_timeout: options.drain_timeout,
                tls,
                transport: options.transport,
                clock: options.clock,
                metrics,
                store_failure: std::sync::OnceLock::new(),
                store_failed: tokio_util::sync::CancellationToken::new(),
            }),
        })
    }

    /// The hub's clock.
    pub fn clock(&self) -> &dyn clock::Clock {
        self.inner.clock.as_ref()
    }

    /// How many handles to this hub exist (this one included). Once
    /// [`serve`] has returned it is 1 for the caller's own handle: no
    /// connection task still holds the hub, or through it the store.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The site registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The metrics, for the admin port (`hub.metrics().registry()`).
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The whole audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEvent>, HubError> {
        self.inner.store.audit_log()
    }

    /// Every stored revision for a site and period, ascending.
    pub fn revisions(&self, site: &str, period: Period) -> Result<Vec<u64>, HubError> {
        self.inner.store.revisions(site, period)
    }

    /// The revision reports use for a site and period, if any.
    pub fn current_revision(&self, site: &str, period: Period) -> Option<u64> {
        self.inner
            .store
            .with_latest(|l| l.get(&period).and_then(|m| m.get(site)).map(|x| x.revision))
    }

    /// Makes every write durable. After a store failure it refuses at once.
    pub async fn flush(&self) -> Result<(), HubError> {
        self.check_store()?;
        let flushed = self.inner.store.flush().await;
        flushed.map_err(|e| self.store_error(e))
    }

    /// Whether the store can still write: false for good after an I/O error.
    /// The admin port's `/readyz` and gRPC health follow it.
    pub fn healthy(&self) -> bool {
        self.inner.store_failure.get().is_none()
    }

    /// Completes once the store has failed.
    pub async fn store_failed(&self) {
        self.inner.store_failed.cancelled().await;
    }

    /// Refuses with [`HubError::Unavailable`] once the store has failed, so
    /// nothing more is written to a disk that cannot take it.
    pub(crate) fn check_store(&self) -> Result<(), HubError> {
        match self.inner.store_failure.get() {
            Some(reason) => Err(HubError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// Classifies a store error: a sled failure or a failed flush (I/O, above
    /// all a full disk) marks the store failed and becomes
    /// [`HubError::Unavailable`]; anything else passes through.
    pub(crate) fn store_error(&self, error: HubError) -> HubError {
        let reason = match &error {
            HubError::Storage(e) => e.to_string(),
            // lacnet-store's writer thread reports a failed or hung flush so.
            HubError::Unavailable(reason) => reason.clone(),
            _ => return error,
        };
        if self.inner.store_failure.set(reason.clone()).is_ok() {
            tracing::error!(
                error = %reason,
                "the store cannot write: NOT_SERVING, draining, then exiting for a restart; check the disk"
            );
            self.inner.store_failed.cancel();
        }
        HubError::Unavailable(reason)
    }

    /// Writes a consistent backup into `dest` (new or empty) while serving;
    /// see [`store::Store::backup`].
    pub async fn backup(
        &self,
        dest: PathBuf,
    ) -> Result<lacnet_store::backup::Summary, lacnet_store::backup::BackupError> {
        let hub = self.clone();
        tokio::task::spawn_blocking(move || hub.inner.store.backup(&dest))
            .await
            .map_err(|e| {
                lacnet_store::backup::BackupError::Store(format!("the backup task failed: {e}"))
            })?
    }

    pub(crate) fn store(&self) -> &store::Store {
        &self.inner.store
    }
}

/// Withdraws every release of a period kind its site's registry entry no
/// longer accepts (the site's series was changed): the hub then publishes
/// one series per site. Each withdrawal is in the audit log, with its digest.
fn withdraw_other_series(store: &store::Store, registry: &Registry) -> Result<(), HubError> {
    for site in registry.sites() {
        let reason = format!(
            "the registry now fixes the site's series as {}: releases of other period kinds are withdrawn",
            site.granularity.label()
        );
        let accepts = site.clone();
        let n = store.withdraw_series(&site.code, move |p| accepts.accepts(p), &reason)?;
        if n > 0 {
            tracing::warn!(
                site = %site.code,
                withdrawn = n,
                granularity = site.granularity.label(),
                "withdrew the releases of the site's old series"
            );
        }
    }
    Ok(())
}

/// Serves the hub's gRPC API over mTLS on `listener` until `shutdown` completes.
///
/// Offers `lacnet.hub.v1.Submissions`, `lacnet.hub.v1.Reports`, gRPC health
/// (`SERVING` while up, `NOT_SERVING` once shutdown begins) and reflection
/// v1 and v1alpha listing exactly these services, through
/// [`lacnet_server::grpc::serve`].
/// On shutdown it stops accepting, drains in-flight calls and flushes sled.
/// After a store write failure it goes `NOT_SERVING`, drains, and returns
/// [`HubError::Unavailable`], so the binary exits non-zero for a restart.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HubError> {
    let max = hub.inner.max_message_bytes;
    let services = lacnet_server::grpc::Services::new()
        .add_service(
            SubmissionsServer::new(submissions::SubmissionsService::new(hub.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            ReportsServer::new(reports::ReportsService::new(hub.clone()))
                .max_decoding_message_size(max),
        );
    let server = lacnet_server::grpc::GrpcServer {
        tls: hub.inner.tls.clone(),
        limits: hub.inner.transport,
        request_timeout: hub.inner.request_timeout,
        drain_timeout: hub.inner.drain_timeout,
        descriptors: &[lacnet_proto::FILE_DESCRIPTOR_SET],
    };
    tracing::info!(
        sites = hub.registry().sites().len(),
        "hub serving gRPC over mTLS"
    );
    let failed = hub.clone();
    // sled keeps failing once a write could not be made: rather than limp
    // on, stop serving and exit non-zero so the supervisor restarts the hub,
    // which then reads what is on disk.
    let store_failed = async move { failed.store_failed().await };
    // Hub::open has opened the store and checked the registry: ready.
    let served =
        lacnet_server::grpc::serve(listener, server, services, store_failed, shutdown).await;
    // Flush even if serving failed, so nothing acknowledged is lost.
    let flushed = hub.flush().await;
    served?;
    flushed?;
    hub.check_store()
}
