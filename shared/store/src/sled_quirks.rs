//! Every workaround for sled 0.34's behaviour, with its reason, in one place.
//! sled is the stack's store and is not released any more (its last release
//! was in 2021), so these stay until it is replaced; each names what it
//! works around, so the replacement knows what it may drop.
//!
//! - **One writer thread** (the [`crate::Committer`]): `flush_async` racing
//!   `apply_batch` or a transaction deadlocks (the flusher waits for the
//!   writer's reservation while the writer waits for log space the flusher
//!   holds), and `flush_async` from many tasks at once fills sled's own I/O
//!   pool with waiting flushes. So only the thread that writes flushes, with
//!   the blocking `flush`, once per group.
//! - **Sticky I/O errors**: once its log could not be written, sled keeps
//!   failing, so the committer fails for good and the service restarts.
//! - **A hung flush**: when its log cannot grow, sled's flush can block for
//!   ever; [`FLUSH_WATCHDOG`] turns that into a failure.
//! - **The directory lock**: see [`open_sled`].
//! - **The id generator**: see [`config_with_ids_past`].
//! - **Removed values linger**: sled is log-structured, so a removed value's
//!   bytes stay in its log until the segment happens to be cleaned. Data that
//!   must be gone from disk once deleted (the hub's release cells, the
//!   agent's records) is kept in files beside sled, not in it.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a store's open waits for the directory lock of its own previous `Db`.
pub const OPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// A flush that has not returned after this long is a failed disk: sled
/// 0.34 can block for ever when its log cannot grow.
pub const FLUSH_WATCHDOG: Duration = Duration::from_secs(30);

/// sled's default `idgen_persist_interval`, which the hub and the agent use.
pub(crate) const SLED_IDGEN_INTERVAL: u64 = 1_000_000;

/// Opens a sled database, waiting up to `wait` while its directory lock is
/// still held. sled releases the lock only when its last background I/O task
/// lets go of the file, a moment after the `Db` is dropped, and gives no
/// signal for it; a service (or test) that reopens its own store right after
/// closing it would otherwise fail now and then.
pub fn open_sled(config: &sled::Config, wait: Duration) -> sled::Result<sled::Db> {
    retry_while_locked(wait, || config.open())
}

/// Runs `open` until it stops failing on sled's directory lock, for at most
/// `wait`. sled reports the refusal only as text, hence the match on it.
pub fn retry_while_locked<T>(
    wait: Duration,
    open: impl Fn() -> sled::Result<T>,
) -> sled::Result<T> {
    let deadline = Instant::now() + wait;
    loop {
        match open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A config for `dir` whose id generator, once the database is reopened,
/// hands out only ids above `id_floor`.
///
/// sled's id generator is not part of any tree. A new database starts it
/// at 0; when sled reopens a database it resumes at the last persisted
/// value plus twice the persist interval. Opening with an interval of at
/// least half the high-water mark therefore moves the generator past every
/// id an old database handed out, without generating them one by one. The
/// value sled then persists (twice the interval) must be a multiple of the
/// interval the services open with (sled's default), or sled's own
/// consistency check fails on their next persist.
pub(crate) fn config_with_ids_past(dir: &Path, id_floor: u64) -> sled::Config {
    let interval = (id_floor / SLED_IDGEN_INTERVAL + 1) * (SLED_IDGEN_INTERVAL / 2);
    sled::Config::new()
        .path(dir)
        .idgen_persist_interval(interval)
}
