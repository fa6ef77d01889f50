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

/// The `segments/` directory.
#[derive(Debug, Clone)]
struct SegmentDir(PathBuf);

impl SegmentDir {
    fn path(&self, seg: u32) -> PathBuf {
        self.0.join(segment::file_name(seg))
    }

    /// A segment's bytes; `None` if it has no file (deleted by compaction).
    fn read(&self, seg: u32) -> Result<Option<Vec<u8>>, AgentError> {
        match std::fs::read(self.path(seg)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("cannot read a segment", &e)),
        }
    }

    /// Every segment id, ascending. With `clean` (at start-up, before the
    /// writer runs), also removes the temporary files a crash left.
    fn list(&self, clean: bool) -> Result<Vec<u32>, AgentError> {
        let mut ids = Vec::new();
        let entries =
            std::fs::read_dir(&self.0).map_err(|e| self.error("cannot list segments", &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.error("cannot list segments", &e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = segment::parse_file_name(&name) {
                ids.push(id);
            } else if clean && name.ends_with(".tmp") {
                // A write cut short by a crash: never renamed, never acknowledged.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes a segment whole under a temporary name and renames it into place.
    fn write(&self, seg: u32, bytes: &[u8], sync: bool) -> Result<(), AgentError> {
        use std::io::Write;
        let tmp = self.0.join(format!("{}.tmp", segment::file_name(seg)));
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| self.error("cannot write a segment", &e))?;
        f.write_all(bytes)
            .map_err(|e| self.error("cannot write a segment", &e))?;
        if sync {
            f.sync_all()
                .map_err(|e| self.error("cannot sync a segment", &e))?;
        }
        std::fs::rename(&tmp, self.path(seg))
            .map_err(|e| self.error("cannot rename a segment into place", &e))
    }

    fn remove(&self, seg: u32) -> Result<(), AgentError> {
        match std::fs::remove_file(self.path(seg)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("cannot delete a segment", &e)),
        }
    }

    fn sync_file(&self, seg: u32) -> Result<(), AgentError> {
        match std::fs::File::open(self.path(seg)) {
            Ok(f) => f
                .sync_all()
                .map_err(|e| self.error("cannot sync a segment", &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("cannot sync a segment", &e)),
        }
    }

    /// Makes renames and deletions in the directory durable.
    fn sync_dir(&self) -> Result<(), AgentError> {
        std::fs::File::open(&self.0)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error("cannot sync the segment directory", &e))
    }

    fn error(&self, what: &str, e: &std::io::Error) -> AgentError {
        AgentError::DataDir {
            path: self.0.clone(),
            reason: format!("{what}: {e}"),
        }
    }
}

fn pseudonym_at(bytes: &[u8], at: usize) -> Result<Pseudonym, AgentError> {
    bytes
        .get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .map(Pseudonym)
        .ok_or_else(|| AgentError::Corrupt("a record shorter than its pseudonyms".into()))
}

/// The record pseudonym of stored record bytes (format version 1 puts it at byte 1).
fn record_key(bytes: &[u8]) -> Result<Pseudonym, AgentError> {
    pseudonym_at(bytes, 1)
}

fn decode_record(bytes: &[u8]) -> Result<PseudonymRecord, AgentError> {
    PseudonymRecord::decode(bytes).map_err(|e| AgentError::Corrupt(format!("a record: {e}")))
}

fn erased_key(p: &Pseudonym) -> Vec<u8> {
    [META_ERASED_PREFIX, &p.0[..]].concat()
}

fn load_erased(meta: &Tree) -> Result<HashSet<Pseudonym>, AgentError> {
    let mut out = HashSet::new();
    for key in meta.scan_prefix(META_ERASED_PREFIX).keys() {
        let key = key?;
        out.insert(pseudonym_at(&key, META_ERASED_PREFIX.len())?);
    }
    Ok(out)
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

/// A release at the hub, as the agent knows it: its revision and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRelease {
    /// The hub's current revision.
    pub revision: u64,
    /// Its digest (empty when the hub did not say).
    pub digest: String,
}

impl HubRelease {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.revision.to_be_bytes().to_vec();
        v.extend_from_slice(self.digest.as_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Result<HubRelease, AgentError> {
        let revision = be_u64(
            bytes
                .get(..8)
                .ok_or_else(|| AgentError::Corrupt("a stored hub release".into()))?,
        )?;
        Ok(HubRelease {
            revision,
            digest: String::from_utf8_lossy(&bytes[8..]).into_owned(),
        })
    }
}

/// A period whose newest release at the hub this agent does not hold: the
/// agent was restored from an older backup, or lost its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMark {
    /// What the hub holds.
    pub hub: HubRelease,
    /// The agent's last revision of the period, if it has one.
    pub agent_revision: Option<u64>,
}

impl LostMark {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.agent_revision.unwrap_or(0).to_be_bytes().to_vec();
        v.extend(self.hub.encode());
        v
    }

    fn decode(bytes: &[u8]) -> Result<LostMark, AgentError> {
        let bad = || AgentError::Corrupt("a stored lost-period mark".into());
        let agent = be_u64(bytes.get(..8).ok_or_else(bad)?)?;
        Ok(LostMark {
            agent_revision: (agent != 0).then_some(agent),
            hub: HubRelease::decode(bytes.get(8..).ok_or_else(bad)?)?,
        })
    }
}

/// Every `prefix<period>` key of `meta` with its value, decoded by `f`.
fn scan_periods<T>(
    meta: &Tree,
    prefix: &str,
    f: impl Fn(&[u8]) -> Result<T, AgentError>,
) -> Result<BTreeMap<Period, T>, AgentError> {
    meta.scan_prefix(prefix)
        .map(|kv| {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let period = Period::parse(&name)
                .map_err(|e| AgentError::Corrupt(format!("a period under {prefix}: {e}")))?;
            Ok((period, f(&v)?))
        })
        .collect()
}

/// A dead-lettered submission: the hub refused it for good.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Outbox sequence number it had.
    pub seq: u64,
    /// Why the hub refused it.
    pub reason: String,
    /// The submission.
    pub submission: pb::Submission,
}

impl Store {
    /// Opens (or creates) the database in `dir` with a page cache of
    /// `cache_bytes`, migrates an older layout, rebuilds the index, and starts
    /// the writer thread. Errors name the directory and the cause.
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
        match trees.meta.get(META_SCHEMA)? {
            None => {
                trees
                    .meta
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
                db.flush().map_err(|e| at("cannot write", e))?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            Some(v) if v.as_ref() == 1u32.to_be_bytes() => {}
            Some(_) => {
                return Err(AgentError::DataDir {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "it holds a schema other than version {SCHEMA_VERSION} (a newer agent wrote it?)"
                    ),
                });
            }
        }
        let clean_start = trees.meta.remove(META_CLEAN_SHUTDOWN)?.is_some();
        if clean_start {
            db.flush().map_err(|e| at("cannot write", e))?;
        }
        let segments = SegmentDir(dir.join("segments"));
        std::fs::create_dir_all(&segments.0).map_err(|e| AgentError::DataDir {
            path: segments.0.clone(),
            reason: format!("cannot create the segment directory: {e}"),
        })?;
        if trees.meta.get(META_SCHEMA)?.as_deref() == Some(&1u32.to_be_bytes()[..]) {
            migrate_v1(&db, &trees, &segments)?;
        }
        let (index, next_segment) = rebuild(&segments)?;
        let index = Arc::new(RwLock::new(index));
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            index: index.clone(),
            segments: segments.clone(),
            next_segment,
            pending: BTreeMap::new(),
            fresh: BTreeSet::new(),
            unsynced: BTreeSet::new(),
            erased: load_erased(&trees.meta)?,
        };
        let committer = Committer::start_with_persist(
            "agent-store",
            db,
            writer,
            lacnet_store::DEFAULT_MAX_GROUP,
            observer,
            Some(Box::new(|w: &mut Writer, sync| {
                w.persist(sync).map_err(|e| e.to_string())
            })),
        )
        .map_err(|e| AgentError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("cannot start the writer thread: {e}"),
        })?;
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
        self.write("backup", Durability::Flush, move |w| {
            w.persist(true)?;
            Ok(lacnet_store::backup::write(
                &w.db,
                &BACKUP_SPEC,
                &dir,
                &dest,
            ))
        })
        .await
        .map_err(|e| BackupError::Store(e.to_string()))?
    }

    /// The same, for callers outside the async runtime (the `backup` command
    /// when no agent is running).
    pub fn backup_blocking(&self, dest: PathBuf) -> Result<BackupSummary, BackupError> {
        let dir = self.inner.dir.clone();
        self.write_blocking("backup", move |w| {
            w.persist(true)?;
            Ok(lacnet_store::backup::write(
                &w.db,
                &BACKUP_SPEC,
                &dir,
                &dest,
            ))
        })
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

    /// Every stored record, decoded, segment by segment. Not a snapshot: a
    /// concurrent change marks its periods dirty again, so a publisher
    /// scanning here catches up on its next run.
    pub fn records(&self) -> Records<'_> {
        let (ids, error) = match self.inner.segments.list(false) {
            Ok(ids) => (ids, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Records {
            store: self,
            segments: ids.into_iter(),
            ready: error.map(Err).into_iter().collect(),
        }
    }

    /// How many records are stored.
    pub fn record_count(&self) -> Result<u64, AgentError> {
        Ok(self.index().len() as u64)
    }

    /// (segments, entries stored in them): dead entries awaiting compaction
    /// are the difference from [`Store::record_count`].
    pub fn segment_totals(&self) -> (usize, u64) {
        self.index().segment_totals()
    }

    /// The series (granularity) recorded in the data directory, if any yet.
    pub fn recorded_granularity(&self) -> Result<Option<Granularity>, AgentError> {
        match self.inner.trees.meta.get(META_GRANULARITY)? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    AgentError::Corrupt("the recorded series is not month or quarter".into())
                }),
        }
    }

    /// Records `granularity` as the data directory's series and forgets the
    /// published state of every period of another kind: its last
    /// submission (so the preview and the outbox no longer know it), its
    /// dirty and queue marks, and its outbox entries. Durable on return.
    /// Returns how many periods of the old series were forgotten.
    pub fn set_series(&self, granularity: Granularity) -> Result<usize, AgentError> {
        self.write_blocking("set_series", move |w| {
            let other = |p: Period| p.granularity() != granularity;
            let mut meta = Batch::default();
            let mut forgotten = 0;
            for prefix in [
                META_LAST_PREFIX,
                META_QUEUED_PREFIX,
                META_DIRTY_PREFIX,
                META_LOST_PREFIX,
                META_OVERRULED_PREFIX,
                META_ACKED_PREFIX,
            ] {
                for k in w.trees.meta.scan_prefix(prefix).keys() {
                    let k = k?;
                    let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    if Period::parse(&name).is_ok_and(other) {
                        forgotten += usize::from(prefix == META_LAST_PREFIX);
                        meta.remove(k);
                    }
                }
            }
            let mut outbox = Batch::default();
            for entry in w.trees.outbox.iter() {
                let (k, v) = entry?;
                let period = pb::Submission::decode(v.as_ref())
                    .ok()
                    .and_then(|s| period_from_proto(s.period.as_ref(), "period").ok());
                if period.is_some_and(other) {
                    outbox.remove(k);
                }
            }
            meta.insert(META_GRANULARITY, granularity.id().as_bytes());
            w.trees.outbox.apply_batch(outbox)?;
            w.trees.meta.apply_batch(meta)?;
            Ok(forgotten)
        })
    }

    /// Key ids that records have been written with, and not retired since.
    pub fn keys_written(&self) -> Result<Vec<String>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_KEY_PREFIX)
            .keys()
            .map(|k| {
                let k = k?;
                Ok(String::from_utf8_lossy(&k[META_KEY_PREFIX.len()..]).into_owned())
            })
            .collect()
    }

    /// How many stored records carry pseudonyms made with `key_id` (a full scan).
    pub fn records_using_key(&self, key_id: &str) -> Result<u64, AgentError> {
        let mut n = 0;
        for r in self.records() {
            if r?.key_id.as_str() == key_id {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Marks `key_id` retired (it no longer needs to be in the ring).
    pub fn retire_key(&self, key_id: &str, now_unix: i64) -> Result<(), AgentError> {
        let key_id = key_id.to_owned();
        self.write_blocking("retire_key", move |w| {
            let mut b = Batch::default();
            b.remove(format!("{META_KEY_PREFIX}{key_id}").as_bytes());
            b.insert(
                format!("{META_RETIRED_PREFIX}{key_id}").as_bytes(),
                &now_unix.to_be_bytes()[..],
            );
            w.trees.meta.apply_batch(b)?;
            Ok(())
        })
    }

    /// Marks one period dirty outside an ingest (the scheduled recomputation).
    pub async fn mark_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        self.write("mark_dirty", Durability::Deferred, move |w| {
            w.trees.meta.insert(
                format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
                &generation.to_be_bytes()[..],
            )?;
            Ok(())
        })
        .await
    }

    /// Periods waiting for re-aggregation, with their generation.
    pub fn dirty_periods(&self) -> Result<Vec<(Period, u64)>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_DIRTY_PREFIX)
            .map(|kv| {
                let (k, v) = kv?;
                let name = String::from_utf8_lossy(&k[META_DIRTY_PREFIX.len()..]).into_owned();
                let period = Period::parse(&name)
                    .map_err(|e| AgentError::Corrupt(format!("a dirty period: {e}")))?;
                Ok((period, be_u64(&v)?))
            })
            .collect()
    }

    /// The last submission enqueued for a period.
    pub fn last_submission(&self, period: Period) -> Result<Option<pb::Submission>, AgentError> {
        last_submission(&self.inner.trees.meta, period)
    }

    /// The true counts behind the last release enqueued for a period.
    pub fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
        published_truth(&self.inner.trees.meta, period)
    }

    /// Every period with a last submission, and that submission.
    pub fn last_submissions(&self) -> Result<Vec<pb::Submission>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_LAST_PREFIX)
            .values()
            .map(|v| decode_submission(&v?))
            .collect()
    }

    /// How many erased pseudonyms the agent remembers (record and person
    /// pseudonyms, under each key that was in the ring at the erasure).
    pub fn erased_len(&self) -> usize {
        self.inner
            .trees
            .meta
            .scan_prefix(META_ERASED_PREFIX)
            .count()
    }

    /// The oldest outbox entry.
    pub fn outbox_first(&self) -> Result<Option<(u64, pb::Submission)>, AgentError> {
        match self.inner.trees.outbox.first()? {
            Some((k, v)) => Ok(Some((be_u64(&k)?, decode_submission(&v)?))),
            None => Ok(None),
        }
    }

    /// Entries waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.inner.trees.outbox.len()
    }

    /// Every outbox entry, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, pb::Submission)>, AgentError> {
        self.inner
            .trees
            .outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((be_u64(&k)?, decode_submission(&v)?))
            })
            .collect()
    }

    /// Removes an entry the hub has acknowledged (as `release` of
    /// `period`), and notes the push.
    pub async fn outbox_remove(
        &self,
        seq: u64,
        period: Option<Period>,
        release: HubRelease,
        now_unix: i64,
    ) -> Result<(), AgentError> {
        self.write("outbox_ack", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, period, None)?;
            if let Some(p) = period {
                w.set_acked(p, &release)?;
            }
            w.set_push_result(Some(now_unix), "")
        })
        .await
    }

    /// Drops an outbox entry unsent (its period is held back).
    pub async fn outbox_drop(&self, seq: u64, period: Period) -> Result<(), AgentError> {
        self.write("outbox_ack", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, Some(period), None)
        })
        .await
    }

    /// The lost mark of `period`, if any.
    pub fn lost(&self, period: Period) -> Result<Option<LostMark>, AgentError> {
        self.inner
            .trees
            .meta
            .get(format!("{META_LOST_PREFIX}{period}"))?
            .map(|v| LostMark::decode(&v))
            .transpose()
    }

    /// The last release of each period the hub acknowledged.
    pub fn acked(&self) -> Result<BTreeMap<Period, HubRelease>, AgentError> {
        scan_periods(
            &self.inner.trees.meta,
            META_ACKED_PREFIX,
            HubRelease::decode,
        )
    }

    /// Moves an entry the hub refused for good to the dead-letter tree, and notes why.
    pub async fn dead_letter(
        &self,
        seq: u64,
        period: Option<Period>,
        submission: &pb::Submission,
        reason: &str,
    ) -> Result<(), AgentError> {
        let mut entry = Vec::with_capacity(4 + reason.len() + 512);
        entry.extend_from_slice(&(reason.len() as u32).to_le_bytes());
        entry.extend_from_slice(reason.as_bytes());
        submission
            .encode(&mut entry)
            .map_err(|e| AgentError::Corrupt(e.to_string()))?;
        let reason = reason.to_owned();
        self.write("outbox_dead_letter", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, period, Some(entry))?;
            w.set_push_result(None, &reason)
        })
        .await
    }

    /// Every dead-lettered submission.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, AgentError> {
        self.inner
            .trees
            .dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let bad = || AgentError::Corrupt("a dead letter".into());
                let len =
                    u32::from_le_bytes(v.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?)
                        as usize;
                let reason = v.get(4..4 + len).ok_or_else(bad)?;
                Ok(DeadLetter {
                    seq: be_u64(&k)?,
                    reason: String::from_utf8_lossy(reason).into_owned(),
                    submission: decode_submission(v.get(4 + len..).ok_or_else(bad)?)?,
                })
            })
            .collect()
    }

    /// How many submissions are dead-lettered.
    pub fn dead_len(&self) -> usize {
        self.inner.trees.dead.len()
    }

    /// Periods the hub holds newer releases of than this agent.
    pub fn lost_periods(&self) -> Result<BTreeMap<Period, LostMark>, AgentError> {
        scan_periods(&self.inner.trees.meta, META_LOST_PREFIX, LostMark::decode)
    }

    /// The hub releases the operator let re-imported records overrule.
    pub fn overruled(&self) -> Result<BTreeMap<Period, HubRelease>, AgentError> {
        scan_periods(
            &self.inner.trees.meta,
            META_OVERRULED_PREFIX,
            HubRelease::decode,
        )
    }

    /// Periods with a submission waiting in the outbox.
    pub fn queued_periods(&self) -> Result<BTreeSet<Period>, AgentError> {
        Ok(
            scan_periods(&self.inner.trees.meta, META_QUEUED_PREFIX, |_| Ok(()))?
                .into_keys()
                .collect(),
        )
    }

    /// Records a failed push attempt's error.
    pub async fn set_push_error(&self, error: &str) -> Result<(), AgentError> {
        let error = error.to_owned();
        self.write("push_error", Durability::Deferred, move |w| {
            w.set_push_result(None, &error)
        })
        .await
    }

    /// (last successful push, seconds since the epoch or 0; last error or empty).
    pub fn push_status(&self) -> Result<(i64, String), AgentError> {
        let meta = &self.inner.trees.meta;
        let last = match meta.get(META_LAST_PUSH)? {
            Some(v) => be_u64(&v)? as i64,
            None => 0,
        };
        let err = match meta.get(META_LAST_PUSH_ERROR)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => String::new(),
        };
        Ok((last, err))
    }
}

fn published_truth(meta: &Tree, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
    let Some(v) = meta.get(format!("{META_TRUTH_PREFIX}{period}"))? else {
        return Ok(None);
    };
    if v.len() % 8 != 0 {
        return Err(AgentError::Corrupt(format!(
            "the true counts behind {period}'s last release"
        )));
    }
    Ok(Some(
        v.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    ))
}

fn last_submission(meta: &Tree, period: Period) -> Result<Option<pb::Submission>, AgentError> {
    match meta.get(format!("{META_LAST_PREFIX}{period}"))? {
        Some(v) => Ok(Some(decode_submission(&v)?)),
        None => Ok(None),
    }
}

/// Decoded records, a segment at a time.
pub struct Records<'a> {
    store: &'a Store,
    segments: std::vec::IntoIter<u32>,
    ready: VecDeque<Result<PseudonymRecord, AgentError>>,
}

impl Iterator for Records<'_> {
    type Item = Result<PseudonymRecord, AgentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            let seg = self.segments.next()?;
            if let Err(e) = self.load(seg) {
                return Some(Err(e));
            }
        }
    }
}

impl Records<'_> {
    fn load(&mut self, seg: u32) -> Result<(), AgentError> {
        // Deleted by a compaction since the listing: its live records moved on.
        let Some(bytes) = self.store.inner.segments.read(seg)? else {
            return Ok(());
        };
        let index = self.store.index();
        for e in segment::entries(&bytes)? {
            let e = e?;
            if index.is_live(&record_key(e.record)?, Loc { seg, slot: e.slot }) {
                self.ready.push_back(decode_record(e.record));
            }
        }
        Ok(())
    }
}

/// Rebuilds the index from every segment, oldest first: a later copy of a
/// record supersedes an earlier one, and a re-keyed copy removes the one it replaced.
fn rebuild(segments: &SegmentDir) -> Result<(Index, u32), AgentError> {
    let mut index = Index::new();
    let mut next = 0u32;
    for seg in segments.list(true)? {
        let Some(bytes) = segments.read(seg)? else {
            continue;
        };
        let mut stored = 0;
        for e in segment::entries(&bytes)? {
            let e = e?;
            stored += 1;
            let r = decode_record(e.record)?;
            if let Some(old) = e.replaces {
                let old = Pseudonym(*old);
                if let Some(id) = index.get(&old) {
                    index.remove(id, &old);
                }
            }
            let loc = Loc { seg, slot: e.slot };
            let meta = RecordMeta::of(&r, e.record);
            match index.get(&r.record) {
                Some(id) => index.relocate(id, &r.person, loc, meta),
                None => {
                    index.insert(&r.record, &r.person, loc, meta);
                }
            }
        }
        index.add_segment(seg, stored);
        next = seg
            .checked_add(1)
            .ok_or_else(|| AgentError::Corrupt("segment ids exhausted".into()))?;
    }
    Ok((index, next))
}

/// Moves a schema-1 store (one sled key per record) into segment files.
fn migrate_v1(db: &sled::Db, trees: &Trees, segments: &SegmentDir) -> Result<(), AgentError> {
    let old = db.open_tree("records")?;
    let mut seg = 0u32;
    let mut b = SegmentBuilder::new();
    for v in old.iter().values() {
        let v = v?;
        decode_record(&v)?;
        if b.push(&v, None).is_none() {
            segments.write(seg, &std::mem::take(&mut b).into_bytes(), true)?;
            seg += 1;
            b.push(&v, None);
        }
    }
    if !b.is_empty() {
        segments.write(seg, &b.into_bytes(), true)?;
    }
    segments.sync_dir()?;
    trees
        .meta
        .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
    db.flush()?;
    db.drop_tree("records")?;
    db.drop_tree("persons")?;
    db.flush()?;
    tracing::info!("migrated the store to schema version {SCHEMA_VERSION}");
    Ok(())
}

/// One job's record writes: a new segment, and what they made obsolete.
pub struct SegmentWrite {
    seg: u32,
    builder: SegmentBuilder,
    /// Older segments that must be rewritten in the same batch (re-keys and erasures).
    must_compact: BTreeSet<u32>,
    /// Older segments in which this job left dead entries.
    touched: BTreeSet<u32>,
    /// Segments this job read, by id (an update reads few; a re-key, its old ones).
    cache: HashMap<u32, Vec<u8>>,
    meta: Batch,
    meta_empty: bool,
    /// Erased pseudonyms this job remembers (`true`) or forgets (`false`).
    erased: Vec<(Pseudonym, bool)>,
}

impl Writer {
    /// The index, for writing. Only the writer thread calls this, so readers
    /// wait at most one job.
    pub fn index_mut(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a job's writes. Small writes (a council system's single
    /// upserts) are appended to the newest segment while it is small, so the
    /// store does not become a million one-record segments; slot numbers of
    /// the records already there stay as they are.
    pub fn begin(&mut self) -> Result<SegmentWrite, AgentError> {
        let mut sw = SegmentWrite {
            seg: self.next_segment,
            builder: SegmentBuilder::new(),
            must_compact: BTreeSet::new(),
            touched: BTreeSet::new(),
            cache: HashMap::new(),
            meta: Batch::default(),
            meta_empty: true,
            erased: Vec::new(),
        };
        if let Some(last) = self.next_segment.checked_sub(1) {
            let small = self
                .index_mut()
                .segment(last)
                .is_some_and(|s| s.stored < SMALL_SEGMENT);
            if small && let Some(bytes) = self.segment_bytes(last)? {
                let mut b = SegmentBuilder::new();
                for e in segment::entries(&bytes)? {
                    let e = e?;
                    b.put(e.slot, e.record);
                }
                b.continue_after_last();
                sw.seg = last;
                sw.builder = b;
            }
        }
        Ok(sw)
    }

    /// Whether any person was ever erased here (so ingest can skip the check).
    pub fn any_erased(&self) -> bool {
        !self.erased.is_empty()
    }

    /// Whether `p` is a remembered erased record or person pseudonym.
    pub fn was_erased(&self, p: &Pseudonym) -> bool {
        self.erased.contains(p)
    }

    /// A stored record's bytes at `loc`, including those written earlier in `sw`.
    pub fn read(&self, sw: &mut SegmentWrite, loc: Loc) -> Result<Vec<u8>, AgentError> {
        if loc.seg == sw.seg {
            return sw
                .builder
                .get(loc.slot)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| AgentError::Corrupt("a slot missing from the open segment".into()));
        }
        if let std::collections::hash_map::Entry::Vacant(e) = sw.cache.entry(loc.seg) {
            let bytes = self
                .segment_bytes(loc.seg)?
                .ok_or_else(|| AgentError::Corrupt(format!("segment {} is missing", loc.seg)))?;
            e.insert(bytes);
        }
        let bytes = &sw.cache[&loc.seg];
        segment::find(bytes, loc.slot)?
            .map(<[u8]>::to_vec)
            .ok_or_else(|| AgentError::Corrupt(format!("slot {} of segment {}", loc.slot, loc.seg)))
    }

    /// A segment's current bytes: written earlier in this group, or on disk.
    fn segment_bytes(&self, seg: u32) -> Result<Option<Vec<u8>>, AgentError> {
        match self.pending.get(&seg) {
            Some(p) => Ok(p.clone()),
            None => self.segments.read(seg),
        }
    }

    /// Applies `sw`: meta first (extra dirty marks are harmless), then queues
    /// the new segment and every rewrite it needs for the end of the group
    /// ([`Writer::persist`]). Returns whether anything was written.
    pub fn commit(&mut self, mut sw: SegmentWrite) -> Result<bool, AgentError> {
        let wrote_meta = !sw.meta_empty;
        if wrote_meta {
            self.trees.meta.apply_batch(std::mem::take(&mut sw.meta))?;
        }
        for (p, remember) in std::mem::take(&mut sw.erased) {
            if remember {
                self.erased.insert(p);
            } else {
                self.erased.remove(&p);
            }
        }
        let mut wrote = false;
        let has_new = sw.builder.has_new();
        if has_new {
            self.next_segment = self.next_segment.max(
                sw.seg
                    .checked_add(1)
                    .ok_or_else(|| AgentError::Corrupt("segment ids exhausted".into()))?,
            );
            self.fresh.insert(sw.seg);
        }
        let index_lock = self.index.clone();
        let mut index = index_lock.write().unwrap_or_else(|e| e.into_inner());
        if has_new {
            index.add_segment(sw.seg, sw.builder.len() as u32);
            sw.must_compact.insert(sw.seg);
        }
        // Segments now mostly dead are rewritten too: bounded space, and
        // each entry is copied a bounded number of times.
        for seg in std::mem::take(&mut sw.touched) {
            if let Some(s) = index.segment(seg)
                && f64::from(s.stored - s.live) >= COMPACT_DEAD_SHARE * f64::from(s.stored)
            {
                sw.must_compact.insert(seg);
            }
        }
        let new_seg = sw.seg;
        let mut fresh = Some(std::mem::take(&mut sw.builder));
        for seg in std::mem::take(&mut sw.must_compact) {
            let live = index.segment(seg).map_or(0, |s| s.live);
            let (bytes, all_live) = if seg == new_seg {
                let b = fresh.take().unwrap_or_default();
                let all_live = live == b.len() as u32;
                (Some(b.into_bytes()), all_live)
            } else {
                let bytes = match sw.cache.remove(&seg) {
                    Some(v) => Some(v),
                    None => self.segment_bytes(seg)?,
                };
                (bytes, false)
            };
            let Some(bytes) = bytes else { continue };
            let rewritten = if live == 0 {
                None
            } else if all_live {
                Some(bytes)
            } else {
                Some(keep_live(&index, seg, &bytes)?)
            };
            self.pending.insert(seg, rewritten);
            index.compacted(seg);
            wrote = true;
        }
        Ok(wrote || wrote_meta)
    }

    /// Writes the group's segment files: those with new records first (and,
    /// if anything older is rewritten after them, synced before it), then the
    /// rewrites and deletions. With `sync`, everything written since the last
    /// sync is synced, so the group's callers can be acknowledged.
    pub fn persist(&mut self, sync: bool) -> Result<(), AgentError> {
        if self.pending.is_empty() && (!sync || self.unsynced.is_empty()) {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let fresh = std::mem::take(&mut self.fresh);
        let (new, old): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(seg, _)| fresh.contains(seg));
        let sync_new = sync || !old.is_empty();
        for (seg, bytes) in &new {
            match bytes {
                Some(b) => self.segments.write(*seg, b, sync_new)?,
                None => self.segments.remove(*seg)?,
            }
            if !sync_new {
                self.unsynced.insert(*seg);
            }
        }
        if sync_new {
            for seg in std::mem::take(&mut self.unsynced) {
                self.segments.sync_file(seg)?;
            }
            self.segments.sync_dir()?;
        }
        if !old.is_empty() {
            for (seg, bytes) in &old {
                match bytes {
                    Some(b) => self.segments.write(*seg, b, true)?,
                    None => self.segments.remove(*seg)?,
                }
            }
            self.segments.sync_dir()?;
        }
        Ok(())
    }

    /// Removes an outbox entry (and its period's queue mark), moving it to
    /// the dead-letter tree when `dead` holds its dead-letter bytes.
    pub fn remove_from_outbox(
        &self,
        seq: u64,
        period: Option<Period>,
        dead: Option<Vec<u8>>,
    ) -> Result<(), AgentError> {
        let key = seq.to_be_bytes();
        self.trees.outbox.remove(&key[..])?;
        if let Some(p) = period {
            let q = format!("{META_QUEUED_PREFIX}{p}");
            if self.trees.meta.get(q.as_bytes())?.as_deref() == Some(&key[..]) {
                self.trees.meta.remove(q.as_bytes())?;
            }
        }
        if let Some(entry) = dead {
            self.trees.dead.insert(&key[..], entry)?;
        }
        Ok(())
    }

    /// Every lost period, with its mark.
    pub fn lost_periods(&self) -> Result<BTreeMap<Period, LostMark>, AgentError> {
        scan_periods(&self.trees.meta, META_LOST_PREFIX, LostMark::decode)
    }

    /// The lost mark of `period`, if the hub holds a newer release of it.
    pub fn lost(&self, period: Period) -> Result<Option<LostMark>, AgentError> {
        self.trees
            .meta
            .get(format!("{META_LOST_PREFIX}{period}"))?
            .map(|v| LostMark::decode(&v))
            .transpose()
    }

    /// Marks `period` lost: the publisher holds it back.
    pub fn mark_lost(&self, period: Period, mark: &LostMark) -> Result<(), AgentError> {
        self.trees.meta.insert(
            format!("{META_LOST_PREFIX}{period}").as_bytes(),
            mark.encode(),
        )?;
        Ok(())
    }

    /// Clears `period`'s lost mark, if any.
    pub fn clear_lost(&self, period: Period) -> Result<(), AgentError> {
        self.trees
            .meta
            .remove(format!("{META_LOST_PREFIX}{period}").as_bytes())?;
        Ok(())
    }

    /// The hub release of `period` that re-imported records may overrule.
    pub fn overruled(&self, period: Period) -> Result<Option<HubRelease>, AgentError> {
        self.trees
            .meta
            .get(format!("{META_OVERRULED_PREFIX}{period}"))?
            .map(|v| HubRelease::decode(&v))
            .transpose()
    }

    /// Lets the agent's records overrule the hub's `release` of `period`.
    pub fn overrule(&self, period: Period, release: &HubRelease) -> Result<(), AgentError> {
        self.trees.meta.insert(
            format!("{META_OVERRULED_PREFIX}{period}").as_bytes(),
            release.encode(),
        )?;
        Ok(())
    }

    /// Notes `release` as the last of `period` the hub acknowledged.
    pub fn set_acked(&self, period: Period, release: &HubRelease) -> Result<(), AgentError> {
        self.trees.meta.insert(
            format!("{META_ACKED_PREFIX}{period}").as_bytes(),
            release.encode(),
        )?;
        Ok(())
    }

    /// Forgets `period`'s last submission (not its true counts, which the
    /// release gate keeps comparing with), so its next recomputation is
    /// published even if it equals a release that never reached the hub.
    pub fn forget_last(&self, period: Period) -> Result<(), AgentError> {
        self.trees
            .meta
            .remove(format!("{META_LAST_PREFIX}{period}").as_bytes())?;
        Ok(())
    }

    /// Whether a newly computed release of `period` (with `digest`, when
    /// it was protected) must be held back because the hub holds a newer
    /// release than this agent. A release equal to the hub's (the agent has
    /// its records back) clears the mark and may go: the hub answers
    /// DUPLICATE. Anything else waits for the re-import.
    pub fn held_by_loss(&self, period: Period, digest: Option<&str>) -> Result<bool, AgentError> {
        let Some(mark) = self.lost(period)? else {
            return Ok(false);
        };
        if digest.is_some_and(|d| !mark.hub.digest.is_empty() && d == mark.hub.digest) {
            self.clear_lost(period)?;
            tracing::info!(%period, "the records again give the hub's release of a lost period: no longer held");
            return Ok(false);
        }
        tracing::warn!(%period, hub_revision = mark.hub.revision, "held back: the hub holds a newer release of this period than this agent (re-import the latest full export)");
        Ok(true)
    }

    fn set_push_result(&self, ok_at_unix: Option<i64>, error: &str) -> Result<(), AgentError> {
        if let Some(t) = ok_at_unix {
            self.trees
                .meta
                .insert(META_LAST_PUSH, &t.to_be_bytes()[..])?;
        }
        self.trees
            .meta
            .insert(META_LAST_PUSH_ERROR, error.as_bytes())?;
        Ok(())
    }

    /// The last submission enqueued for a period.
    pub fn last_submission(&self, period: Period) -> Result<Option<pb::Submission>, AgentError> {
        last_submission(&self.trees.meta, period)
    }

    /// The true counts behind the last release enqueued for a period.
    pub fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
        published_truth(&self.trees.meta, period)
    }

    /// Marks a period for re-aggregation.
    pub fn mark_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        self.trees.meta.insert(
            format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
            &generation.to_be_bytes()[..],
        )?;
        Ok(())
    }

    /// Clears a dirty mark, unless it was set again (a newer generation) meanwhile.
    pub fn clear_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        let key = format!("{META_DIRTY_PREFIX}{period}");
        if self.trees.meta.get(key.as_bytes())?.as_deref() == Some(&generation.to_be_bytes()[..]) {
            self.trees.meta.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Enqueues a new revision for `period` (with the true counts behind it,
    /// kept for the next release's comparison) and clears the period's dirty mark
    /// (if still at `generation`). An older revision of the same period still
    /// waiting in the outbox is dropped: the hub only needs the latest. The
    /// writes are ordered so a crash between them leaves at worst a period
    /// marked dirty (recomputed) or an outbox entry without its queue mark
    /// (sent once more, idempotently).
    pub fn enqueue(
        &self,
        period: Period,
        submission: &pb::Submission,
        truth: Option<&[u64]>,
        generation: u64,
    ) -> Result<u64, AgentError> {
        let seq = self.db.generate_id()?;
        // `None` re-issues the same content (a new number), whose truth is kept.
        if let Some(truth) = truth {
            let bytes: Vec<u8> = truth.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.trees.meta.insert(
                format!("{META_TRUTH_PREFIX}{period}").as_bytes(),
                bytes.as_slice(),
            )?;
        }
        let bytes = submission.encode_to_vec();
        let last_key = format!("{META_LAST_PREFIX}{period}");
        let queued_key = format!("{META_QUEUED_PREFIX}{period}");
        let m = &self.trees.meta;
        let o = &self.trees.outbox;
        let older = m.get(queued_key.as_bytes())?;
        o.insert(&seq.to_be_bytes()[..], bytes.as_slice())?;
        m.insert(queued_key.as_bytes(), &seq.to_be_bytes()[..])?;
        m.insert(last_key.as_bytes(), bytes.as_slice())?;
        if let Some(old) = older {
            o.remove(old)?;
        }
        self.clear_dirty(period, generation)?;
        Ok(seq)
    }
}

/// Stored bytes of segment `seg` with only its live entries, slots kept.
fn keep_live(index: &Index, seg: u32, bytes: &[u8]) -> Result<Vec<u8>, AgentError> {
    let mut b = SegmentBuilder::new();
    for e in segment::entries(bytes)? {
        let e = e?;
        if index.is_live(&record_key(e.record)?, Loc { seg, slot: e.slot }) {
            b.put(e.slot, e.record);
        }
    }
    Ok(b.into_bytes())
}

impl SegmentWrite {
    /// Appends a record's new copy; returns where it now lives. `replaces`
    /// is its record pseudonym under an older key, when it is re-keyed.
    pub fn push(&mut self, bytes: &[u8], replaces: Option<&Pseudonym>) -> Result<Loc, AgentError> {
        let slot = self
            .builder
            .push(bytes, replaces.map(|p| &p.0))
            .ok_or_else(|| {
                AgentError::invalid(
                    "records",
                    format!("at most {} records per write", segment::MAX_SEGMENT_RECORDS),
                )
            })?;
        Ok(Loc {
            seg: self.seg,
            slot,
        })
    }

    /// Notes that an entry of `seg` died in this job (a candidate for compaction).
    pub fn touched(&mut self, seg: u32) {
        self.touched.insert(seg);
    }

    /// Requires `seg` to be rewritten in this job's batch (the copies there
    /// must go now, not at a later compaction).
    pub fn compact(&mut self, seg: u32) {
        self.must_compact.insert(seg);
    }

    /// Remembers an erased person's record or person pseudonym, in this job's batch.
    pub fn remember_erased(&mut self, p: &Pseudonym) {
        self.meta_empty = false;
        self.meta.insert(erased_key(p), &[][..]);
        self.erased.push((*p, true));
    }

    /// Forgets an erasure (the person was re-admitted on purpose).
    pub fn forget_erased(&mut self, p: &Pseudonym) {
        self.meta_empty = false;
        self.meta.remove(erased_key(p));
        self.erased.push((*p, false));
    }

    /// Marks a period for re-aggregation; `generation` tells a later change from this one.
    pub fn dirty(&mut self, period: Period, generation: u64) {
        self.meta_empty = false;
        self.meta.insert(
            format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
            &generation.to_be_bytes()[..],
        );
    }

    /// Notes that records were written with this key id.
    pub fn key_written(&mut self, key_id: &str) {
        self.meta_empty = false;
        self.meta
            .insert(format!("{META_KEY_PREFIX}{key_id}").as_bytes(), &[][..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rev: u64) -> pb::Submission {
        pb::Submission {
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
        let err = Store::open(&file, 1 << 20, None).unwrap_err().to_string();
        assert!(err.contains("not-a-dir"), "{err}");
    }
}
