//! Storage: the only module that touches sled. Everything stored is
//! pseudonymised: raw identifiers, exact ages and ward codes never get here.
//!
//! Trees (schema version 2):
//!
//! | tree       | key                              | value |
//! |------------|----------------------------------|-------|
//! | `outbox`   | big-endian sequence number       | encoded `lacnet.common.v1.Submission` |
//! | `dead`     | big-endian sequence number       | reason length (u32 LE) ‖ reason ‖ encoded submission |
//! | `meta`     | see the `META_*` constants       | schema version, the series (granularity), key ids written, dirty periods, last submission per period, push status, erased people (pseudonyms), periods lost to the hub and releases overruled |
//!
//! The records themselves are in segment files beside the sled database
//! (`segments/`, see [`crate::segment`]).
//!
//! This file opens the store and runs its jobs; each kind of state has a file:
//! `segments.rs` (records, the index, compaction, group commit),
//! `releases.rs` (outbox, dead letters, last releases, loss and overrule
//! marks), `dirty.rs` (dirty marks), `series.rs` (months or quarters),
//! `key_use.rs` (keys written and retired) and `migrate.rs` (older layouts).
//!
//! Every write is a job on one writer thread ([`lacnet_store::Committer`]),
//! which also owns the write side of the in-memory [`Index`]; readers take
//! the index's read lock. A job that must be durable is answered only after
//! its group's segment files are synced and sled is flushed. New segments
//! are made durable before any older segment they obsolete is rewritten or
//! deleted, and a re-keyed record names the pseudonym it replaced, so a
//! crash between the two never loses a record or leaves it twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use lacnet_core::Period;
use lacnet_core::period::Granularity;
use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::record::PseudonymRecord;
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::period_from_proto;
use lacnet_store::backup::{BackupError, Spec as BackupSpec, Summary as BackupSummary};
use lacnet_store::{CommitError, Committer, Durability, Health, Observer};
use prost::Message;
use sled::{Batch, Tree};

use crate::AgentError;
use crate::index::{Index, RecordMeta};
use crate::segment::{self, Loc, SegmentBuilder};

mod dirty;
mod key_use;
mod migrate;
mod releases;
mod segments;
mod series;

use migrate::migrate_v1;
pub use releases::{DeadLetter, HubRelease, LostMark};
pub use segments::{Records, RecordsTxn, SegmentWrite};
use segments::{SegmentDir, decode_record, load_erased, rebuild};

/// What a backup holds: every tree above and the segment files.
pub const BACKUP_SPEC: BackupSpec<'static> = BackupSpec {
    service: "lacnet-site-agent",
    trees: &["outbox", "dead", "meta"],
    files_dir: Some("segments"),
};

/// Version of the layout described above. Version 1 kept one sled key per
/// record (`records`, `persons`); [`Store::open`] migrates it.
pub const SCHEMA_VERSION: u32 = 2;

const META_SCHEMA: &[u8] = b"schema_version";
/// The site's series, `month` or `quarter`: recorded when the data directory
/// is first used, changed only by `reset-series`.
const META_GRANULARITY: &[u8] = b"series/granularity";
const META_KEY_PREFIX: &str = "key_written/";
const META_RETIRED_PREFIX: &str = "key_retired/";
const META_DIRTY_PREFIX: &str = "dirty/";
const META_LAST_PREFIX: &str = "last/";
const META_QUEUED_PREFIX: &str = "queued/";
/// The true counts behind the last release of a period: what the next one is
/// compared against before it may be published (never leaves the site).
const META_TRUTH_PREFIX: &str = "truth/";
/// People erased at this site, so an old export cannot bring them back:
/// `erased/` ‖ a 32-byte record or person pseudonym (under each key of the
/// ring at the time), with an empty value. Pseudonyms only, like everything here.
const META_ERASED_PREFIX: &[u8] = b"erased/";
/// A period the hub holds a newer release of than this agent (see
/// [`LostMark`]): held back until the latest full export is re-imported.
const META_LOST_PREFIX: &str = "lost/";
/// The hub's release of a period that the operator let the agent's
/// re-imported records overrule ([`HubRelease`]).
const META_OVERRULED_PREFIX: &str = "overruled/";
/// The last release of a period the hub acknowledged ([`HubRelease`]): a
/// hub release at or below it is one the hub has fallen behind on, any
/// other one the agent does not know.
const META_ACKED_PREFIX: &str = "acked/";
const META_LAST_PUSH: &[u8] = b"push/last_unix";
/// Present only while the agent is stopped after a clean shutdown. Dirty
/// marks live in sled and records in segment files, written in that order
/// but flushed segments first, so a crash between the two can leave records
/// whose periods are not marked; after a crash every period is recomputed
/// once. Removed (durably) at open, before any write, so its presence means
/// every write's marks were flushed.
const META_CLEAN_SHUTDOWN: &[u8] = b"shutdown/clean";
const META_LAST_PUSH_ERROR: &[u8] = b"push/last_error";

/// A new write joins the newest segment while it holds fewer entries than this.
const SMALL_SEGMENT: u32 = 1024;

/// A segment is rewritten once at least this share of its entries is dead.
const COMPACT_DEAD_SHARE: f64 = 0.5;

/// The agent's store: sled trees, the in-memory index, and the writer thread.
/// Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct StoreInner {
    dir: PathBuf,
    /// Whether the last run ended with [`Store::shut_down_cleanly`].
    clean_start: bool,
    segments: SegmentDir,
    trees: Trees,
    index: Arc<RwLock<Index>>,
    committer: Committer<Writer>,
}

#[derive(Clone)]
struct Trees {
    outbox: Tree,
    dead: Tree,
    meta: Tree,
}

/// The write side, owned by the writer thread: jobs get `&mut Writer`.
pub struct Writer {
    db: sled::Db,
    trees: Trees,
    index: Arc<RwLock<Index>>,
    segments: SegmentDir,
    next_segment: u32,
    /// Segment files to write at the end of the group (`None` deletes).
    pending: BTreeMap<u32, Option<Vec<u8>>>,
    /// Of those, the ones holding records written in this group: they must
    /// be on disk before any rewrite of an older segment.
    fresh: BTreeSet<u32>,
    /// Files renamed into place but not yet synced (a deferred group's).
    unsynced: BTreeSet<u32>,
    /// The erased pseudonyms (`META_ERASED_PREFIX`), in memory, so ingest
    /// checks each record against them without a sled lookup.
    erased: HashSet<Pseudonym>,
}

fn be_u64(bytes: &[u8]) -> Result<u64, AgentError> {
    let a: [u8; 8] = bytes
        .try_into()
        .map_err(|_| AgentError::Corrupt("an 8-byte counter has the wrong length".into()))?;
    Ok(u64::from_be_bytes(a))
}

fn decode_submission(bytes: &[u8]) -> Result<pb::Submission, AgentError> {
    pb::Submission::decode(bytes)
        .map_err(|e| AgentError::Corrupt(format!("a stored submission: {e}")))
}

fn commit_error(e: CommitError) -> AgentError {
    match e {
        CommitError::Closed => AgentError::Unavailable("the store is closed".into()),
        other => AgentError::StoreFailed(other.to_string()),
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` with a page cache of
    /// `cache_bytes` and starts the writer thread, whose first job migrates
    /// an older layout and rebuilds the index. Errors name the directory and
    /// the cause.
    pub fn open(
        dir: &Path,
        cache_bytes: u64,
        observer: Option<Observer>,
    ) -> Result<Store, AgentError> {
        let at = |what: &str, e: sled::Error| AgentError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("{what}: {e}"),
        };
        let db = lacnet_store::open_sled(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput),
            lacnet_store::OPEN_LOCK_WAIT,
        )
        .map_err(|e| at("cannot open the database", e))?;
        let trees = Trees {
            outbox: db.open_tree("outbox").map_err(|e| at("outbox", e))?,
            dead: db.open_tree("dead").map_err(|e| at("dead", e))?,
            meta: db.open_tree("meta").map_err(|e| at("meta", e))?,
        };
        let segments = SegmentDir(dir.join("segments"));
        std::fs::create_dir_all(&segments.0).map_err(|e| AgentError::DataDir {
            path: segments.0.clone(),
            reason: format!("cannot create the segment directory: {e}"),
        })?;
        let index = Arc::new(RwLock::new(Index::new()));
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            index: index.clone(),
            segments: segments.clone(),
            next_segment: 0,
            pending: BTreeMap::new(),
            fresh: BTreeSet::new(),
            unsynced: BTreeSet::new(),
            erased: HashSet::new(),
        };
        let committer = Committer::start_with_hooks(
            "agent-store",
            db,
            writer,
            lacnet_store::DEFAULT_MAX_GROUP,
            observer,
            Some(Box::new(|w: &mut Writer, sync| {
                w.persist(sync).map_err(|e| e.to_string())
            })),
            None,
        )
        .map_err(|e| AgentError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("cannot start the writer thread: {e}"),
        })?;
        // The open's own writes (schema, shutdown mark, migration) are a job
        // like any other, flushed before the first caller's.
        let path = dir.to_path_buf();
        let clean_start = committer
            .run_blocking("open", Durability::Flush, move |w| w.open(&path))
            .map_err(|e| AgentError::DataDir {
                path: dir.to_path_buf(),
                reason: format!("cannot write: {e}"),
            })??;
        Ok(Store {
            inner: Arc::new(StoreInner {
                dir: dir.to_path_buf(),
                clean_start,
                segments,
                trees,
                index,
                committer,
            }),
        })
    }

    /// Runs a write job on the writer thread; see [`Committer::run`]. A job
    /// that fails after it may have changed the index leaves memory and disk
    /// disagreeing, so any error other than bad input fails the store (the
    /// agent then restarts and rebuilds the index from disk).
    pub async fn write<R: Send + 'static>(
        &self,
        name: &'static str,
        durability: Durability,
        f: impl FnOnce(&mut Writer) -> Result<R, AgentError> + Send + 'static,
    ) -> Result<R, AgentError> {
        let out = self
            .inner
            .committer
            .run(name, durability, f)
            .await
            .map_err(commit_error)?;
        match out {
            Err(e) if !matches!(e, AgentError::InvalidArgument { .. }) => {
                let reason = format!("{name}: {e}");
                self.inner.committer.fail(&reason);
                Err(AgentError::StoreFailed(reason))
            }
            other => other,
        }
    }

    /// The same, for callers outside the async runtime (maintenance commands).
    pub fn write_blocking<R: Send + 'static>(
        &self,
        name: &'static str,
        f: impl FnOnce(&mut Writer) -> Result<R, AgentError> + Send + 'static,
    ) -> Result<R, AgentError> {
        self.inner
            .committer
            .run_blocking(name, Durability::Flush, f)
            .map_err(commit_error)?
    }

    /// Writes a consistent backup into `dest` (new or empty) while the agent
    /// serves: it runs as a job on the writer thread, so no other write
    /// interleaves, and it first writes the segment files still pending in
    /// the current group. Ingest waits while the backup copies.
    pub async fn backup(&self, dest: PathBuf) -> Result<BackupSummary, BackupError> {
        let dir = self.inner.dir.clone();
        self.write("backup", Durability::Flush, move |w| w.backup(&dir, &dest))
            .await
            .map_err(|e| BackupError::Store(e.to_string()))?
    }

    /// The same, for callers outside the async runtime (the `backup` command
    /// when no agent is running).
    pub fn backup_blocking(&self, dest: PathBuf) -> Result<BackupSummary, BackupError> {
        let dir = self.inner.dir.clone();
        self.write_blocking("backup", move |w| w.backup(&dir, &dest))
            .map_err(|e| BackupError::Store(e.to_string()))?
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), AgentError> {
        self.write("flush", Durability::Flush, |_| Ok(())).await
    }

    /// Whether the disk has failed (health follows it).
    pub fn health(&self) -> Health {
        self.inner.committer.health()
    }

    /// Why the store failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.inner.committer.failure()
    }

    /// Completes when the store fails.
    pub async fn failed(&self) {
        self.inner.committer.failed().await;
    }

    /// Whether the previous run shut down cleanly, so every record's periods
    /// were marked dirty durably (see `META_CLEAN_SHUTDOWN`).
    pub fn clean_start(&self) -> bool {
        self.inner.clean_start
    }

    /// The last write of a clean shutdown, once nothing else writes: flushes
    /// everything and records that it did, so the next start need not
    /// recompute every period.
    pub async fn shut_down_cleanly(&self) -> Result<(), AgentError> {
        self.write("clean_shutdown", Durability::Flush, |w| {
            w.trees.meta.insert(META_CLEAN_SHUTDOWN, &[1u8][..])?;
            Ok(())
        })
        .await
    }

    /// Finishes queued writes, flushes, and stops the writer thread, releasing
    /// the sled directory once every clone of this store is dropped.
    pub fn close(&self) {
        self.inner.committer.close();
    }

    /// The index, for reading.
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How many records are stored.
    pub fn record_count(&self) -> Result<u64, AgentError> {
        Ok(self.index().len() as u64)
    }
}

impl Writer {
    /// The first job of every open: checks the schema version, takes down
    /// the clean-shutdown mark (durably, before this run writes anything
    /// else), writes the schema version of a new store or migrates a
    /// schema-1 one, and rebuilds the index and the erased set from disk.
    /// Returns whether the last run shut down cleanly. `dir` names the
    /// store in errors.
    fn open(&mut self, dir: &Path) -> Result<bool, AgentError> {
        let meta = &self.trees.meta;
        let schema = meta.get(META_SCHEMA)?;
        let migrate = match schema.as_deref() {
            None => false,
            Some(v) if v == SCHEMA_VERSION.to_be_bytes() => false,
            Some(v) if v == 1u32.to_be_bytes() => true,
            Some(_) => {
                return Err(AgentError::DataDir {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "it holds a schema other than version {SCHEMA_VERSION} (a newer agent wrote it?)"
                    ),
                });
            }
        };
        let clean_start = meta.remove(META_CLEAN_SHUTDOWN)?.is_some();
        if clean_start {
            // Its presence vouches for every write's marks: gone before any new write.
            self.db.flush()?;
        }
        if schema.is_none() {
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
        }
        if migrate {
            migrate_v1(&self.db, &self.trees, &self.segments)?;
        }
        let (index, next_segment) = rebuild(&self.segments)?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.next_segment = next_segment;
        self.erased = load_erased(meta)?;
        Ok(clean_start)
    }
}

impl Writer {
    /// Copies the store at `dir` to `dest` once the current group's segment
    /// files are on disk (a job: nothing else writes meanwhile).
    fn backup(
        &mut self,
        dir: &Path,
        dest: &Path,
    ) -> Result<Result<BackupSummary, BackupError>, AgentError> {
        self.persist(true)?;
        Ok(lacnet_store::backup::write(
            &self.db,
            &BACKUP_SPEC,
            dir,
            dest,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rev: u64) -> pb::Submission {
        pb::Submission {
            packed: None,
            structural_zeros: Vec::new(),
            site_code: "E06000034".into(),
            revision: rev,
            digest: format!("d{rev}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn outbox_keeps_one_entry_per_period_and_dirty_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20, None).unwrap();
        let q = Period::parse("2025-Q1").unwrap();
        store.mark_dirty(q, 1).await.unwrap();
        store
            .write("t", Durability::Flush, move |w| {
                w.enqueue(q, &sub(1), None, 1)
            })
            .await
            .unwrap();
        assert!(store.dirty_periods().unwrap().is_empty());
        store.mark_dirty(q, 2).await.unwrap();
        let seq = store
            .write("t", Durability::Flush, move |w| {
                w.enqueue(q, &sub(2), None, 1)
            })
            .await
            .unwrap();
        // A newer generation stays dirty.
        assert_eq!(store.dirty_periods().unwrap(), vec![(q, 2)]);
        assert_eq!(store.outbox_len(), 1);
        assert_eq!(store.outbox_first().unwrap().unwrap().1.revision, 2);
        assert_eq!(store.last_submission(q).unwrap().unwrap().revision, 2);
        store
            .dead_letter(seq, Some(q), &sub(2), "refused")
            .await
            .unwrap();
        assert_eq!(store.outbox_len(), 0);
        let dead = store.dead_letters().unwrap();
        assert_eq!(dead[0].reason, "refused");
        assert_eq!(dead[0].submission.revision, 2);
        assert_eq!(store.push_status().unwrap().1, "refused");
        store
            .write("t", Durability::Flush, move |w| w.clear_dirty(q, 2))
            .await
            .unwrap();
        assert!(store.dirty_periods().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_data_dir_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file, 1 << 20, None).unwrap_err();
        assert!(
            matches!(&err, AgentError::DataDir { path, .. } if path.ends_with("not-a-dir")),
            "{err}"
        );
    }
}
