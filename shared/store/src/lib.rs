//! `lacnet-store`: the one door through which the hub and the site agent make
//! sled writes durable.
//!
//! sled 0.34 deadlocks when `flush_async` races `apply_batch` or a
//! transaction (see [`sled_quirks`], where every sled workaround lives). The cure here is Janus's
//! `ReportWriteBatcher` shape: every write is a named job sent to **one
//! writer thread**, which runs the jobs of a group in arrival order, then
//! flushes once for the whole group (group commit), then answers each caller.
//! No write can race a flush because the only thread that writes is the one
//! that flushes.
//!
//! ```text
//! callers ──job(name, f)──▶ channel ──▶ writer thread: f₁ f₂ … fₙ, flush ──▶ replies
//! ```
//!
//! Reads do not come through here: sled reads are safe from any thread.
//!
//! An I/O error from a flush is sticky: sled 0.34 keeps failing once its log
//! could not be written, so the committer reports [`Health::Failed`] from then
//! on and refuses further writes with [`CommitError::Failed`]. The service
//! turns that into NOT_SERVING and exits, for its supervisor to restart it.

#![warn(missing_docs)]

pub mod backup;
pub mod control;
pub mod schedule;
pub mod sled_quirks;

pub use sled_quirks::{FLUSH_WATCHDOG, OPEN_LOCK_WAIT, open_sled, retry_while_locked};

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

/// Most jobs one flush covers: bounds how long the first caller of a group waits.
pub const DEFAULT_MAX_GROUP: usize = 256;
/// Jobs that may wait for the writer before callers are held back.
const QUEUE_DEPTH: usize = 1024;

/// Whether a write must be on disk before its caller hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answer after the group's flush (an acknowledgement to a client).
    Flush,
    /// Answer as soon as the job has run; a later flush makes it durable
    /// (the chunks of one stream, acknowledged together at its end).
    Deferred,
}

/// Why a write was not made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store hit an I/O error earlier and accepts no more writes until restarted.
    #[error("the store failed and accepts no writes until the service restarts: {0}")]
    Failed(String),
    /// Flushing this write's group to disk failed.
    #[error("writing to disk failed: {0}")]
    Io(String),
    /// The writer thread has stopped (the service is shutting down).
    #[error("the store is closed")]
    Closed,
}

/// The committer's view of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Writes succeed.
    Ok,
    /// A flush failed; no write will succeed until a restart.
    Failed,
}

/// Told about every job: its name, how long it took to become durable (or
/// to run, when deferred), and whether it succeeded. Services feed their
/// metrics from it; names are `&'static str`, so no caller data can become a label.
pub type Observer = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

type Completion = Box<dyn FnOnce(Result<(), CommitError>) + Send>;
type Job<S> = Box<dyn FnOnce(&mut S) -> (Durability, Completion) + Send>;

/// Runs once per group, after its jobs and before sled's flush, with
/// whether the group must be durable: where a state that keeps data outside
/// sled (files) writes, and when asked, syncs it.
pub type Persist<S> = Box<dyn FnMut(&mut S, bool) -> Result<(), String> + Send>;

/// Runs after a group's flush has made it durable, before its callers hear
/// back: where a state deletes what the group's durable writes made
/// obsolete (a file must outlive the entry naming it on disk, not in memory).
pub type Settled<S> = Box<dyn FnMut(&mut S) + Send>;

struct Shared {
    health: AtomicU8,
    failure: Mutex<Option<String>>,
    failed: Notify,
    /// When the flush in progress started, if one is.
    flushing_since: Mutex<Option<Instant>>,
}

/// A single writer thread that owns the write state `S` (typically the sled
/// trees and any in-memory index the writes keep current) and flushes `db`
/// once per group of jobs.
pub struct Committer<S> {
    tx: Mutex<Option<SyncSender<Job<S>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    observer: Option<Observer>,
}

impl<S> std::fmt::Debug for Committer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("failed", &(self.shared.health.load(Ordering::Acquire) != 0))
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Committer<S> {
    /// Starts the writer thread, which owns `state` and flushes `db`.
    pub fn start(
        name: &str,
        db: sled::Db,
        state: S,
        max_group: usize,
        observer: Option<Observer>,
    ) -> std::io::Result<Committer<S>> {
        Committer::start_with_hooks(name, db, state, max_group, observer, None, None)
    }

    /// [`Committer::start`], with a [`Persist`] step run once per group and
    /// a [`Settled`] step run after every durable group.
    pub fn start_with_hooks(
        name: &str,
        db: sled::Db,
        state: S,
        max_group: usize,
        observer: Option<Observer>,
        persist: Option<Persist<S>>,
        settled: Option<Settled<S>>,
    ) -> std::io::Result<Committer<S>> {
        let (tx, rx) = sync_channel::<Job<S>>(QUEUE_DEPTH);
        let shared = Arc::new(Shared {
            health: AtomicU8::new(0),
            failure: Mutex::new(None),
            failed: Notify::new(),
            flushing_since: Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || {
                let hooks = Hooks { persist, settled };
                writer_loop(rx, db, state, max_group.max(1), hooks, &thread_shared)
            })?;
        let watched = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name(format!("{name}-watchdog"))
            .spawn(move || {
                // Ends when the committer (and with it `shared`) is gone.
                while let Some(shared) = watched.upgrade() {
                    let since = shared.flushing_since.lock().map(|g| *g).unwrap_or(None);
                    if since.is_some_and(|t| t.elapsed() > FLUSH_WATCHDOG) {
                        fail(
                            &shared,
                            &format!(
                                "a flush has not finished in {} s: the disk is full or not responding",
                                FLUSH_WATCHDOG.as_secs()
                            ),
                        );
                        return;
                    }
                    drop(shared);
                    std::thread::sleep(Duration::from_millis(500));
                }
            })?;
        Ok(Committer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
            observer,
        })
    }

    /// Runs `f` on the writer thread, after every job sent before it, and
    /// returns its result once it is durable (per `durability`). `name` labels
    /// the write in metrics and logs.
    ///
    /// `f` runs even if the caller stops waiting, so a job must leave the
    /// state consistent on its own; it must not block on other jobs.
    pub async fn run<R: Send + 'static>(
        &self,
        name: &'static str,
        durability: Durability,
        f: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, CommitError> {
        let started = Instant::now();
        let (reply_tx, reply_rx) = oneshot::channel::<Result<R, CommitError>>();
        let job = self.job_unless_failed(durability, f, move |r| {
            let _ = reply_tx.send(r);
        })?;
        self.send(job).await?;
        let result = reply_rx.await.unwrap_or(Err(CommitError::Closed));
        self.report(name, started, result)
    }

    /// A job for the writer thread that answers through `reply`; a store
    /// that has failed takes no more jobs.
    fn job_unless_failed<R: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut S) -> R + Send + 'static,
        reply: impl FnOnce(Result<R, CommitError>) + Send + 'static,
    ) -> Result<Job<S>, CommitError> {
        self.refuse_if_failed()?;
        Ok(job(durability, f, reply))
    }

    /// Reports a job's result to the observer and, if it failed, the log.
    fn report<R>(
        &self,
        name: &'static str,
        started: Instant,
        result: Result<R, CommitError>,
    ) -> Result<R, CommitError> {
        if let Some(observe) = &self.observer {
            observe(name, started.elapsed(), result.is_ok());
        }
        if let Err(e) = &result {
            tracing::error!(write = name, error = %e, "store write failed");
        }
        result
    }

    /// Queues `f` to run on the writer thread, like [`Committer::run`], but
    /// waits only for room in the queue, not for the job: for writes nobody
    /// answers for (an audit entry), which must not hold their caller for a
    /// flush. A failure is logged and reported to the observer.
    pub async fn enqueue(
        &self,
        name: &'static str,
        durability: Durability,
        f: impl FnOnce(&mut S) -> Result<(), String> + Send + 'static,
    ) -> Result<(), CommitError> {
        let started = Instant::now();
        let observer = self.observer.clone();
        let job = self.job_unless_failed(durability, f, move |r| {
            let ok = matches!(r, Ok(Ok(())));
            if let Some(observe) = &observer {
                observe(name, started.elapsed(), ok);
            }
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(write = name, error = %e, "store write failed"),
                Err(e) => tracing::error!(write = name, error = %e, "store write failed"),
            }
        })?;
        self.send(job).await
    }

    /// A store that has failed takes no more jobs.
    fn refuse_if_failed(&self) -> Result<(), CommitError> {
        match self.failure() {
            Some(reason) => Err(CommitError::Failed(reason)),
            None => Ok(()),
        }
    }

    /// The writer thread's queue, unless the store is closed.
    fn sender(&self) -> Result<SyncSender<Job<S>>, CommitError> {
        let tx = match self.tx.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        tx.ok_or(CommitError::Closed)
    }

    async fn send(&self, mut job: Job<S>) -> Result<(), CommitError> {
        // A full queue is back-pressure: wait for room without blocking a runtime thread.
        loop {
            let tx = self.sender()?;
            match tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(CommitError::Closed),
                Err(TrySendError::Full(j)) => {
                    job = j;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// The blocking form of [`Committer::run`], for callers outside an async
    /// runtime (maintenance commands). It blocks the calling thread.
    pub fn run_blocking<R: Send + 'static>(
        &self,
        name: &'static str,
        durability: Durability,
        f: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, CommitError> {
        // A std channel, not tokio's oneshot: its blocking receive panics
        // when the caller happens to be on a runtime thread.
        let (reply_tx, reply_rx) = std::sync::mpsc::channel::<Result<R, CommitError>>();
        let started = Instant::now();
        let job = self.job_unless_failed(durability, f, move |r| {
            let _ = reply_tx.send(r);
        })?;
        self.sender()?.send(job).map_err(|_| CommitError::Closed)?;
        let result = reply_rx.recv().unwrap_or(Err(CommitError::Closed));
        self.report(name, started, result)
    }

    /// Fails the store from outside: a job found memory and disk disagreeing
    /// (or could not finish its writes), so nothing more may be written until
    /// a restart rebuilds the state from disk.
    pub fn fail(&self, reason: &str) {
        fail(&self.shared, reason);
    }

    /// Whether the disk has failed.
    pub fn health(&self) -> Health {
        if self.shared.health.load(Ordering::Acquire) == 0 {
            Health::Ok
        } else {
            Health::Failed
        }
    }

    /// Why the store failed, once it has.
    pub fn failure(&self) -> Option<String> {
        match self.shared.failure.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Completes when the store fails (never, on a healthy disk).
    pub async fn failed(&self) {
        loop {
            let notified = self.shared.failed.notified();
            if self.health() == Health::Failed {
                return;
            }
            notified.await;
        }
    }
}

impl<S> Committer<S> {
    /// Stops taking jobs, lets the writer finish the queued ones with a last
    /// flush, and waits for its thread to end, so the state it owns (and the
    /// sled lock) is released when this returns.
    pub fn close(&self) {
        match self.tx.lock() {
            Ok(mut g) => drop(g.take()),
            Err(p) => drop(p.into_inner().take()),
        }
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        // A writer stuck on a failed disk may never return.
        if let Some(h) = handle
            && self.shared.health.load(Ordering::Acquire) == 0
            && h.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

impl<S> Drop for Committer<S> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Wraps `f` as a job whose outcome, once its group is flushed, goes to `reply`.
fn job<S, R: Send + 'static>(
    durability: Durability,
    f: impl FnOnce(&mut S) -> R + Send + 'static,
    reply: impl FnOnce(Result<R, CommitError>) + Send + 'static,
) -> Job<S> {
    Box::new(move |state: &mut S| {
        let out = f(state);
        let done: Completion = Box::new(move |flushed: Result<(), CommitError>| {
            reply(flushed.map(|()| out));
        });
        (durability, done)
    })
}

struct Hooks<S> {
    persist: Option<Persist<S>>,
    settled: Option<Settled<S>>,
}

fn writer_loop<S>(
    rx: Receiver<Job<S>>,
    db: sled::Db,
    mut state: S,
    max_group: usize,
    hooks: Hooks<S>,
    shared: &Shared,
) {
    let Hooks {
        mut persist,
        mut settled,
    } = hooks;
    let mut pending: Vec<(Durability, Completion)> = Vec::with_capacity(max_group);
    while let Ok(first) = rx.recv() {
        pending.push(first(&mut state));
        while pending.len() < max_group {
            match rx.try_recv() {
                Ok(job) => pending.push(job(&mut state)),
                Err(_) => break,
            }
        }
        let must_flush = pending.iter().any(|(d, _)| *d == Durability::Flush);
        let flushed = if shared.health.load(Ordering::Acquire) != 0 {
            Err(CommitError::Failed(
                shared
                    .failure
                    .lock()
                    .map(|g| g.clone().unwrap_or_default())
                    .unwrap_or_default(),
            ))
        } else {
            set_flushing(shared, Some(Instant::now()));
            let persisted = match persist.as_mut() {
                Some(p) => p(&mut state, must_flush),
                None => Ok(()),
            };
            let flushed = match persisted {
                Ok(()) if must_flush => db.flush().map(|_| ()).map_err(|e| e.to_string()),
                other => other,
            };
            set_flushing(shared, None);
            if flushed.is_ok()
                && must_flush
                && let Some(settle) = settled.as_mut()
            {
                settle(&mut state);
            }
            flushed.map_err(|reason| {
                fail(shared, &reason);
                CommitError::Io(reason)
            })
        };
        for (_, done) in pending.drain(..) {
            done(flushed.clone());
        }
    }
    // The senders are gone: make everything that ran durable before the state
    // (and with it the sled lock) is dropped.
    if shared.health.load(Ordering::Acquire) == 0 {
        let persisted = match persist.as_mut() {
            Some(p) => p(&mut state, true),
            None => Ok(()),
        };
        match persisted.and_then(|()| db.flush().map(|_| ()).map_err(|e| e.to_string())) {
            Ok(()) => {
                if let Some(settle) = settled.as_mut() {
                    settle(&mut state);
                }
            }
            Err(e) => fail(shared, &e),
        }
    }
}

fn set_flushing(shared: &Shared, since: Option<Instant>) {
    match shared.flushing_since.lock() {
        Ok(mut g) => *g = since,
        Err(p) => *p.into_inner() = since,
    }
}

fn fail(shared: &Shared, reason: &str) {
    match shared.failure.lock() {
        Ok(mut g) => {
            g.get_or_insert_with(|| reason.to_owned());
        }
        Err(p) => {
            p.into_inner().get_or_insert_with(|| reason.to_owned());
        }
    }
    shared.health.store(1, Ordering::Release);
    shared.failed.notify_waiters();
    tracing::error!(error = %reason, "store I/O failed: refusing writes until restarted");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let t = db.open_tree("t").unwrap();
        (db, t)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_callers_one_writer_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, tree) = open(dir.path());
            let c = Arc::new(Committer::start("t", db, tree, 64, None).unwrap());
            let mut tasks = Vec::new();
            for caller in 0..64u32 {
                let c = c.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..50u32 {
                        let key = [caller.to_be_bytes(), i.to_be_bytes()].concat();
                        c.run("put", Durability::Flush, move |t: &mut sled::Tree| {
                            // A transaction inside a job never races the flush: same thread.
                            t.transaction(|tx| {
                                tx.insert(key.as_slice(), &b"v"[..])?;
                                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                            })
                            .is_ok()
                        })
                        .await
                        .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            c.close();
            assert_eq!(c.health(), Health::Ok);
        }
        // close() let go of the store; sled's own background I/O lets go of
        // the directory lock a moment later (sled_quirks), which open_sled waits out.
        let db = sled_quirks::open_sled(
            &sled::Config::new().path(dir.path()),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let tree = db.open_tree("t").unwrap();
        assert_eq!(tree.len(), 64 * 50);
    }

    #[tokio::test]
    async fn jobs_run_in_order_and_closed_store_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _t) = open(dir.path());
        let c = Committer::start("t", db, Vec::<u32>::new(), 8, None).unwrap();
        for i in 0..10 {
            c.run("push", Durability::Deferred, move |v: &mut Vec<u32>| {
                v.push(i)
            })
            .await
            .unwrap();
        }
        let seen = c
            .run("read", Durability::Flush, |v: &mut Vec<u32>| v.clone())
            .await
            .unwrap();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        c.close();
        assert!(matches!(
            c.run("late", Durability::Flush, |_| ()).await,
            Err(CommitError::Closed)
        ));
    }
}
