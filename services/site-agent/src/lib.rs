//! `lacnet-site-agent`: the service each council runs inside its own network,
//! and the only place where personal data exists.
//!
//! ```text
//! council system ──SiteAgent (mTLS, council cert)──▶ grpc.rs
//!      ingest.rs: validate → pseudonymise (HMAC-SHA256, key ring) → match → store.rs (sled, durable ack)
//!      publish.rs: dirty periods → aggregate → disclosure control → digest → outbox (store.rs)
//!      outbox.rs: pusher ──Submissions.Submit (mTLS, site cert)──▶ hub
//!      reconcile.rs: ──Submissions.ListReleases──▶ hub: re-send what it lacks, report what it holds newer
//! ```
//!
//! Running the agent (as `main.rs` does, and the tests):
//!
//! ```no_run
//! # async fn demo(options: lacnet_site_agent::AgentOptions) -> Result<(), lacnet_site_agent::AgentError> {
//! let agent = lacnet_site_agent::Agent::open(options)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let stop = tokio_util::sync::CancellationToken::new();
//! let task = tokio::spawn(lacnet_site_agent::serve(listener, agent.clone(), stop.clone().cancelled_owned()));
//! // ... call it with a council certificate ...
//! stop.cancel();
//! task.await.unwrap()?; // drains in-flight calls and flushes sled
//! drop(agent); // releases the sled lock
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backup;
pub mod config;
pub mod convert;
mod error;
pub mod evaluation;
pub mod grpc;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod linked;
pub mod metrics;
pub mod outbox;
pub mod plan;
pub mod publish;
pub mod reconcile;
pub mod segment;
pub mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lacnet_clock::{Clock, SystemClock};
use lacnet_core::pseudonym::KeyRing;
use lacnet_core::{Date, DisclosurePolicy, Granularity, Period};
use lacnet_proto::site::v1::site_agent_server::SiteAgentServer;
use lacnet_tls::PemBundle;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::AgentError;
pub use metrics::AgentMetrics;
pub use store::Store;

/// Default largest gRPC message accepted.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default most records in one UpsertRecords call.
pub const DEFAULT_MAX_BATCH: usize = 10_000;
/// Default per-call timeout: a StreamRecords import must finish within it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Default time in-flight calls get to finish once shutdown begins (under
/// Kubernetes' default termination grace period of 30 s).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default reporting series.
pub const DEFAULT_GRANULARITY: Granularity = Granularity::Quarter;
/// Records per durable chunk in StreamRecords.
pub const STREAM_CHUNK: usize = 4096;
/// Most bytes of decoded records per StreamRecords chunk (with two chunks in
/// flight, what one stream can hold in memory).
pub const STREAM_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Most rejections reported in a stream summary.
pub const MAX_STREAM_REJECTIONS: usize = 100;

/// Where and how to push to the hub.
#[derive(Debug, Clone)]
pub struct HubTarget {
    /// `https://host:port`.
    pub url: String,
    /// Name the hub's certificate must carry.
    pub server_name: String,
    /// The network CA, and this site's client certificate and key.
    pub tls: PemBundle,
}

/// Everything [`Agent::open`] needs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Directory for the sled database.
    pub data_dir: PathBuf,
    /// ONS code of this site.
    pub site_code: String,
    /// The pseudonymisation keys, newest first.
    pub keys: KeyRing,
    /// The agent's server certificate and key, and the council CA its callers chain to.
    pub tls: PemBundle,
    /// The hub; `None` queues submissions without pushing.
    pub hub: Option<HubTarget>,
    /// The site's disclosure policy.
    pub policy: DisclosurePolicy,
    /// Reporting periods (month or quarter; spans are published as well).
    pub granularity: Granularity,
    /// The day the programme started: where the programme to date begins.
    /// `None` publishes no programme-to-date figures.
    pub programme_start: Option<Date>,
    /// Categories the site never serves: refused at ingest, published as 0.
    pub never_served: lacnet_core::structural::NeverServed,
    /// Months without contact after which an open case stops counting as active (0: never).
    pub inactivity_months: u32,
    /// Quiet time after ingest before re-aggregating.
    pub publish_debounce: Duration,
    /// Scheduled re-aggregation interval.
    pub publish_interval: Duration,
    /// First retry delay after a failed push.
    pub push_backoff_base: Duration,
    /// Longest retry delay.
    pub push_backoff_cap: Duration,
    /// How often the agent compares its releases with the hub's (it also
    /// does at start-up, and when a receipt names another hub store).
    pub reconcile_interval: Duration,
    /// Largest gRPC message accepted.
    pub max_message_bytes: usize,
    /// Most records in one UpsertRecords call.
    pub max_batch: usize,
    /// Per-call timeout.
    pub request_timeout: Duration,
    /// sled page cache, in bytes.
    pub cache_bytes: u64,
    /// How long in-flight calls may run on after shutdown begins.
    pub drain_timeout: Duration,
    /// Connection limit, idle timeout and HTTP/2 keepalive and stream limits.
    pub transport: lacnet_tls::TransportLimits,
    /// What "now" is: the system clock; tests set a
    /// [`lacnet_clock::MockClock`] to fix "today" (UTC).
    pub clock: Arc<dyn Clock>,
    /// Days after a period closes before it is first published, so that its
    /// first release already holds the late records of its last days.
    pub embargo_days: u32,
}

impl AgentOptions {
    /// The counting rules these options give (programme start, inactivity limit).
    pub fn rules(&self) -> lacnet_core::aggregate::CountingRules {
        lacnet_core::aggregate::CountingRules {
            programme_start: self.programme_start,
            inactivity_months: self.inactivity_months,
        }
    }

    /// Options with defaults: quarterly, policy 7/5/secondary, no hub.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        site_code: &str,
        keys: KeyRing,
        tls: PemBundle,
    ) -> AgentOptions {
        AgentOptions {
            data_dir: data_dir.into(),
            site_code: site_code.to_owned(),
            keys,
            tls,
            hub: None,
            policy: DisclosurePolicy::default(),
            granularity: DEFAULT_GRANULARITY,
            programme_start: None,
            never_served: Default::default(),
            inactivity_months: lacnet_core::aggregate::CountingRules::DEFAULT_INACTIVITY_MONTHS,
            publish_debounce: DEFAULT_PUBLISH_DEBOUNCE,
            publish_interval: DEFAULT_PUBLISH_INTERVAL,
            push_backoff_base: DEFAULT_PUSH_BACKOFF_BASE,
            push_backoff_cap: DEFAULT_PUSH_BACKOFF_CAP,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            cache_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            transport: lacnet_tls::TransportLimits::default(),
            clock: Arc::new(SystemClock),
            embargo_days: DEFAULT_EMBARGO_DAYS,
        }
    }
}

/// Default time between comparisons with the hub.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(600);

/// Default days between a period's close and its first publication.
pub const DEFAULT_EMBARGO_DAYS: u32 = 14;

/// Default quiet time after ingest before aggregates are recomputed.
pub const DEFAULT_PUBLISH_DEBOUNCE: Duration = Duration::from_secs(2);

/// Default time between scheduled recomputations.
pub const DEFAULT_PUBLISH_INTERVAL: Duration = Duration::from_secs(300);

/// Default first and longest delays between push retries.
pub const DEFAULT_PUSH_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// See [`DEFAULT_PUSH_BACKOFF_BASE`].
pub const DEFAULT_PUSH_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Default sled page cache, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 64;

/// An open agent: store, keys, TLS config, metrics. Cheap to clone; the sled
/// directory stays locked until every clone is dropped.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) options: AgentOptions,
    pub(crate) server_tls: Arc<rustls::ServerConfig>,
    pub(crate) metrics: AgentMetrics,
    /// Fired after ingest or erasure changed something.
    pub(crate) changed: Notify,
    /// Fired after something was enqueued.
    pub(crate) enqueued: Notify,
    /// Held by a publishing round: each release is protected against the
    /// site's last submissions, which only a publishing round changes.
    pub(crate) publishing: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// When the last comparison with the hub completed (Unix seconds; 0: none yet).
    pub(crate) last_reconcile: std::sync::atomic::AtomicI64,
    /// Publishing rounds completed since start, and the releases they
    /// enqueued: what a restart over unchanged data costs is visible.
    pub(crate) publish_rounds: AtomicU64,
    pub(crate) releases_enqueued: AtomicU64,
    pub(crate) threads: usize,
    /// Blocking work (pseudonymising, scanning the store). It cannot be
    /// cancelled, so a call cut off at shutdown leaves it running with its
    /// clone of the agent; `serve` waits for it before returning.
    blocking: tokio_util::task::TaskTracker,
}

/// Refuses a key ring that lacks a key stored records were written with:
/// they could not be matched or erased.
fn check_keys(store: &Store, keys: &KeyRing) -> Result<(), AgentError> {
    let in_ring: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<String> = store
        .keys_written()?
        .into_iter()
        .filter(|id| !in_ring.contains(&id.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(AgentError::KeysMissing { ids: missing })
}

/// After a crash, marks every period dirty once: a crash can lose a dirty
/// mark written after the records it was for, and a recomputation whose
/// counts have not changed publishes nothing. After a clean shutdown every
/// mark is on disk, and a restart recomputes nothing.
fn recompute_after_crash(
    store: &Store,
    options: &AgentOptions,
    generation: u64,
) -> Result<(), AgentError> {
    let first = store.index().earliest_introduction();
    if store.clean_start() {
        tracing::info!("the last run shut down cleanly: no period to recompute at start");
        return Ok(());
    }
    let Some(first) = first else {
        return Ok(());
    };
    tracing::info!("the last run did not shut down cleanly: every period is recomputed once");
    let g = options.granularity;
    let last = Period::containing(g, options.clock.today());
    let periods: Vec<Period> = std::iter::successors(Some(Period::containing(g, first)), |p| {
        (*p < last).then(|| p.next())
    })
    .collect();
    store.write_blocking("mark_dirty", move |w| {
        for p in periods {
            w.mark_dirty(p, generation)?;
        }
        Ok(())
    })
}

/// Sets the outbox gauges from the store, and says at startup which periods
/// are held back because the hub holds newer releases of them.
fn report_outbox(store: &Store, metrics: &AgentMetrics) -> Result<(), AgentError> {
    metrics.outbox_depth.set(store.outbox_len() as i64);
    metrics.dead_letters.set(store.dead_len() as i64);
    let lost = store.lost_periods()?;
    metrics.lost_periods.set(lost.len() as i64);
    if !lost.is_empty() {
        let periods: Vec<Period> = lost.into_keys().collect();
        tracing::error!(
            periods = %reconcile::names(&periods),
            advice = reconcile::LOSS_ADVICE,
            "the hub holds newer releases of these periods than this agent; they are held back"
        );
    }
    Ok(())
}

impl Agent {
    /// Opens (or creates) the store and builds the TLS config, so an unusable
    /// data directory, bad certificates or a key ring that cannot read the
    /// stored records fail here, at startup, with a clear message.
    pub fn open(options: AgentOptions) -> Result<Agent, AgentError> {
        options
            .policy
            .validate()
            .map_err(|e| AgentError::Config(format!("disclosure policy: {e}")))?;
        if options.site_code.is_empty() {
            return Err(AgentError::Config("the site code is required".into()));
        }
        let server_tls = lacnet_tls::server_config(&options.tls)?;
        if let Some(hub) = &options.hub {
            // Checks the URL and the site certificate now rather than at the first push.
            lacnet_tls::endpoint(&hub.url, &hub.tls, &hub.server_name)?;
        }
        let metrics = AgentMetrics::new();
        let store = Store::open(
            &options.data_dir,
            options.cache_bytes,
            Some(metrics.store_observer()),
        )?;
        check_series(&store, &options.data_dir, options.granularity)?;
        check_keys(&store, &options.keys)?;
        metrics.store_healthy.set(1);
        check_never_served(&store, &options.never_served)?;
        let seed = options.clock.now_nanos() as u64;
        recompute_after_crash(&store, &options, seed)?;
        report_outbox(&store, &metrics)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        tracing::info!(
            site = %options.site_code,
            active_key = %options.keys.active().0,
            keys = options.keys.len(),
            records = store.record_count()?,
            outbox = store.outbox_len(),
            "site agent store open and keys loaded"
        );
        Ok(Agent {
            inner: Arc::new(Inner {
                store,
                server_tls,
                metrics,
                changed: Notify::new(),
                enqueued: Notify::new(),
                publishing: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(seed + 1),
                last_reconcile: std::sync::atomic::AtomicI64::new(0),
                publish_rounds: AtomicU64::new(0),
                releases_enqueued: AtomicU64::new(0),
                threads,
                options,
                blocking: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    /// The metrics, for the admin port.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.inner.metrics
    }

    /// Whether the agent can take writes (its store has not failed); the
    /// admin port's `/healthz` follows it.
    pub fn healthy(&self) -> bool {
        self.inner.store.health() == lacnet_store::Health::Ok
    }

    /// The store (read access for tests and tools).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The options the agent was opened with.
    pub fn options(&self) -> &AgentOptions {
        &self.inner.options
    }

    /// Today (UTC), by the agent's clock.
    pub fn today(&self) -> Date {
        self.inner.options.clock.today()
    }

    /// The agent's clock: the one source of "now".
    pub fn clock(&self) -> &dyn Clock {
        self.inner.options.clock.as_ref()
    }

    /// Makes every write durable.
    pub async fn flush(&self) -> Result<(), AgentError> {
        self.inner.store.flush().await
    }

    /// Runs `f` on the blocking pool, tracked so that `serve` returns only
    /// once it has finished (and dropped whatever agent clone it holds).
    pub(crate) fn spawn_blocking<F, R>(&self, f: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.inner.blocking.spawn_blocking(f)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Recomputes every dirty period now and enqueues changed submissions
    /// (what the debounced publisher does). Returns how many were enqueued.
    pub async fn publish_now(&self) -> Result<usize, AgentError> {
        publish::publish_once(self).await
    }
}

impl Inner {
    /// A fresh generation for dirty marks.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed)
    }
}

/// Serves the agent's gRPC API over mTLS on `listener` until `shutdown`
/// completes, and runs the publisher and the outbox pusher alongside.
///
/// Offers `lacnet.site.v1.SiteAgent`, gRPC health (`NOT_SERVING` until the
/// background tasks have started; `NOT_SERVING` again once shutdown begins)
/// and reflection v1 and v1alpha listing exactly these services, through
/// [`lacnet_server::grpc::serve`]. On shutdown it stops accepting, drains
/// in-flight calls, stops the background tasks and flushes sled. When it
/// returns, no task holds the agent but the caller's own handles.
pub async fn serve(
    listener: TcpListener,
    agent: Agent,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let opts = &agent.inner.options;
    let services = lacnet_server::grpc::Services::new().add_service(
        SiteAgentServer::new(grpc::SiteAgentService::new(agent.clone()))
            .max_decoding_message_size(opts.max_message_bytes),
    );
    let server = lacnet_server::grpc::GrpcServer {
        tls: agent.inner.server_tls.clone(),
        limits: opts.transport,
        request_timeout: opts.request_timeout,
        drain_timeout: opts.drain_timeout,
        descriptors: &[lacnet_proto::FILE_DESCRIPTOR_SET],
    };
    let background = CancellationToken::new();
    let publisher = tokio::spawn(publish::run(agent.clone(), background.clone()));
    let pusher = tokio::spawn(outbox::run(agent.clone(), background.clone()));
    let store = agent.store().clone();
    let metrics = agent.metrics().clone();
    let store_failed = async move {
        // An I/O error from the store is not something this process can
        // recover from (sled keeps failing once its log could not be
        // written): stop serving, drain, and exit non-zero so the supervisor
        // restarts the agent, which rebuilds its state from what is on disk.
        store.failed().await;
        metrics.store_healthy.set(0);
        tracing::error!(
            error = %store.failure().unwrap_or_default(),
            "the store cannot write: NOT_SERVING, draining, then exiting for a restart; check the disk"
        );
    };
    tracing::info!(site = %opts.site_code, "site agent serving gRPC over mTLS");
    // Agent::open has loaded the keys and opened the store, and the
    // background tasks are spawned: ready.
    let served =
        lacnet_server::grpc::serve(listener, server, services, store_failed, shutdown).await;
    background.cancel();
    let _ = publisher.await;
    let _ = pusher.await;
    // Blocking work of calls that were cut off still holds the agent.
    agent.inner.blocking.close();
    agent.inner.blocking.wait().await;
    agent.inner.blocking.reopen();
    if let Some(reason) = agent.store().failure() {
        return Err(AgentError::StoreFailed(reason));
    }
    // Flush even if serving failed, so nothing acknowledged is lost. Nothing
    // writes after this (calls, background tasks and their blocking work have
    // ended), so the shutdown is recorded as clean.
    let flushed = agent.store().shut_down_cleanly().await;
    tracing::info!("site agent stopped; store flushed");
    served?;
    flushed
}

/// Refuses to start when stored records are in a category the site now
/// says it never serves: their figures could not honestly be published as 0.
fn check_never_served(
    store: &Store,
    never: &lacnet_core::structural::NeverServed,
) -> Result<(), AgentError> {
    if never.is_empty() {
        return Ok(());
    }
    let mut found: std::collections::BTreeMap<String, u64> = Default::default();
    for r in store.records() {
        if let Some(c) = never.category_of(&r?) {
            *found.entry(c.id()).or_default() += 1;
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|(c, n)| format!("{n} in {c}")).collect();
    Err(AgentError::Config(format!(
        "--never-serves: the store holds records in categories the site says it never serves ({}); their figures cannot be published as 0. Start without those categories, correct or erase the records, then set --never-serves again",
        list.join(", ")
    )))
}

/// Checks the configured granularity against the series recorded in the
/// data directory, recording it on first use. A site publishes one series:
/// months beside the quarters already published would let the network
/// difference a quarter against its months, so another granularity is
/// refused until the operator changes the series explicitly
/// ([`reset_series`]). A directory from before the series was recorded
/// takes the granularity of the submissions it already made.
fn check_series(store: &Store, data_dir: &Path, configured: Granularity) -> Result<(), AgentError> {
    let recorded = match store.recorded_granularity()? {
        Some(g) => g,
        None => {
            let published = store
                .last_submissions()?
                .iter()
                .filter_map(|s| {
                    lacnet_proto::convert::period_from_proto(s.period.as_ref(), "period").ok()
                })
                .map(|p| p.granularity())
                .find(|g| *g != configured);
            match published {
                Some(g) => g,
                None => {
                    store.set_series(configured)?;
                    return Ok(());
                }
            }
        }
    };
    if recorded == configured {
        return Ok(());
    }
    Err(AgentError::SeriesMismatch {
        path: data_dir.to_owned(),
        recorded,
        configured,
    })
}

/// What [`reset_series`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesOutcome {
    /// The data directory already held this series.
    Unchanged,
    /// The series was changed; this many published periods of the old one were forgotten.
    Changed {
        /// The old series.
        from: Option<Granularity>,
        /// Periods of the old series whose published state was forgotten.
        forgotten: usize,
    },
}

/// Changes the series recorded in the data directory at `data_dir` to `to`
/// (the agent must be stopped: sled locks the directory), forgetting the
/// published state (last submissions, queued and dirty marks, outbox
/// entries) of every period of another kind. The records stay; the next
/// start publishes them as `to` periods. At the hub, the old series is
/// withdrawn when the registry's granularity for the site changes.
pub fn reset_series(
    data_dir: &Path,
    to: Granularity,
    cache_bytes: u64,
) -> Result<SeriesOutcome, AgentError> {
    let store = Store::open(data_dir, cache_bytes, None)?;
    let from = store.recorded_granularity()?;
    let outcome = if from == Some(to) {
        SeriesOutcome::Unchanged
    } else {
        let forgotten = store.set_series(to)?;
        SeriesOutcome::Changed { from, forgotten }
    };
    store.close();
    Ok(outcome)
}

/// What [`retire_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireOutcome {
    /// No record uses the key any more; the agent may now start without its file.
    Retired,
    /// Records still carry pseudonyms made with the key: it must stay in the ring.
    StillInUse(u64),
}

/// Retires `key_id` in the store at `data_dir` (the agent must be stopped:
/// sled locks the directory). Refused while any record still uses the key,
/// because a person known only under that key could no longer be matched or
/// erased. Records move to the newest key when they are next written, or go
/// when erased.
pub fn retire_key(
    data_dir: &Path,
    key_id: &str,
    cache_bytes: u64,
) -> Result<RetireOutcome, AgentError> {
    let store = Store::open(data_dir, cache_bytes, None)?;
    let n = store.records_using_key(key_id)?;
    if n > 0 {
        return Ok(RetireOutcome::StillInUse(n));
    }
    store.retire_key(key_id, SystemClock.now_unix())?;
    store.close();
    Ok(RetireOutcome::Retired)
}
