//! Storage: the only module that touches sled. Everything stored is
//! pseudonymised: raw identifiers, exact ages and ward codes never get here.
//!
//! Trees (schema version 2):
//!
//! | tree       | key                              | value |
//! |------------|----------------------------------|-------|
//! | `segments` | big-endian segment id            | records packed by [`crate::segment`] |
//! | `outbox`   | big-endian sequence number       | encoded `lacnet.common.v1.Submission` |
//! | `dead`     | big-endian sequence number       | reason length (u32 LE) ‖ reason ‖ encoded submission |
//! | `meta`     | see the `META_*` constants       | schema version, key ids written, dirty periods, last submission per period, push status |
//!
//! Every write is a job on one writer thread ([`lacnet_store::Committer`]),
//! which also owns the write side of the in-memory [`Index`]; readers take
//! the index's read lock. A job that must be durable is answered only after
//! its group's flush. Each ingest job writes its records as one new segment,
//! together with the rewrites of older segments it made obsolete, in one
//! atomic sled batch, so a crash never leaves a record both re-keyed and
//! still present under its old key.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use lacnet_core::Period;
use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::record::PseudonymRecord;
use lacnet_proto::common::v1 as pb;
use lacnet_store::{CommitError, Committer, Durability, Health, Observer};
use prost::Message;
use sled::{Batch, Tree};

use crate::AgentError;
use crate::index::{Index, RecordMeta};
use crate::segment::{self, Loc, SegmentBuilder};

/// Version of the layout described above. Version 1 kept one sled key per
/// record (`records`, `persons`); [`Store::open`] migrates it.
pub const SCHEMA_VERSION: u32 = 2;

const META_SCHEMA: &[u8] = b"schema_version";
const META_KEY_PREFIX: &str = "key_written/";
const META_RETIRED_PREFIX: &str = "key_retired/";
const META_DIRTY_PREFIX: &str = "dirty/";
const META_LAST_PREFIX: &str = "last/";
const META_QUEUED_PREFIX: &str = "queued/";
const META_LAST_PUSH: &[u8] = b"push/last_unix";
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
    trees: Trees,
    index: Arc<RwLock<Index>>,
    committer: Committer<Writer>,
}

#[derive(Clone)]
struct Trees {
    segments: Tree,
    outbox: Tree,
    dead: Tree,
    meta: Tree,
}

/// The write side, owned by the writer thread: jobs get `&mut Writer`.
pub struct Writer {
    db: sled::Db,
    trees: Trees,
    index: Arc<RwLock<Index>>,
    next_segment: u32,
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
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| at("cannot open the database", e))?;
        let trees = Trees {
            segments: db.open_tree("segments").map_err(|e| at("segments", e))?,
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
            Some(v) if v.as_ref() == 1u32.to_be_bytes() => migrate_v1(&db, &trees)?,
            Some(_) => {
                return Err(AgentError::DataDir {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "it holds a schema other than version {SCHEMA_VERSION} (a newer agent wrote it?)"
                    ),
                });
            }
        }
        let (index, next_segment) = rebuild(&trees.segments)?;
        let index = Arc::new(RwLock::new(index));
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            index: index.clone(),
            next_segment,
        };
        let committer = Committer::start(
            "agent-store",
            db,
            writer,
            lacnet_store::DEFAULT_MAX_GROUP,
            observer,
        )
        .map_err(|e| AgentError::DataDir {
            path: dir.to_path_buf(),
            reason: format!("cannot start the writer thread: {e}"),
        })?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                dir: dir.to_path_buf(),
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
        Records {
            store: self,
            segments: self.inner.trees.segments.iter(),
            ready: VecDeque::new(),
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

    /// Removes an entry the hub has acknowledged, and notes the push.
    pub async fn outbox_remove(
        &self,
        seq: u64,
        period: Option<Period>,
        now_unix: i64,
    ) -> Result<(), AgentError> {
        self.write("outbox_ack", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, period, None)?;
            w.set_push_result(Some(now_unix), "")
        })
        .await
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

fn last_submission(meta: &Tree, period: Period) -> Result<Option<pb::Submission>, AgentError> {
    match meta.get(format!("{META_LAST_PREFIX}{period}"))? {
        Some(v) => Ok(Some(decode_submission(&v)?)),
        None => Ok(None),
    }
}

/// Decoded records, a segment at a time.
pub struct Records<'a> {
    store: &'a Store,
    segments: sled::Iter,
    ready: VecDeque<Result<PseudonymRecord, AgentError>>,
}

impl Iterator for Records<'_> {
    type Item = Result<PseudonymRecord, AgentError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            let (k, v) = match self.segments.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            if let Err(e) = self.load(&k, &v) {
                return Some(Err(e));
            }
        }
    }
}

impl Records<'_> {
    fn load(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), AgentError> {
        let seg = segment::segment_id(key)?;
        let index = self.store.index();
        for e in segment::entries(bytes)? {
            let (slot, record) = e?;
            if index.is_live(&record_key(record)?, Loc { seg, slot }) {
                self.ready.push_back(decode_record(record));
            }
        }
        Ok(())
    }
}

/// Rebuilds the index from every segment, oldest first: a later copy of a
/// record supersedes an earlier one.
fn rebuild(segments: &Tree) -> Result<(Index, u32), AgentError> {
    let mut index = Index::new();
    let mut next = 0u32;
    for kv in segments.iter() {
        let (k, v) = kv?;
        let seg = segment::segment_id(&k)?;
        let mut stored = 0;
        for e in segment::entries(&v)? {
            let (slot, bytes) = e?;
            stored += 1;
            let r = decode_record(bytes)?;
            let loc = Loc { seg, slot };
            let meta = RecordMeta::of(&r, bytes);
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

/// Moves a schema-1 store (one sled key per record) into segments, in one pass.
fn migrate_v1(db: &sled::Db, trees: &Trees) -> Result<(), AgentError> {
    let old = db.open_tree("records")?;
    let mut seg = 0u32;
    let mut b = SegmentBuilder::new();
    for v in old.iter().values() {
        let v = v?;
        decode_record(&v)?;
        if b.push(&v).is_none() {
            trees.segments.insert(
                segment::segment_key(seg),
                std::mem::take(&mut b).into_bytes(),
            )?;
            seg += 1;
            b.push(&v);
        }
    }
    if !b.is_empty() {
        trees
            .segments
            .insert(segment::segment_key(seg), b.into_bytes())?;
    }
    db.flush()?;
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
    cache: HashMap<u32, sled::IVec>,
    meta: Batch,
    meta_empty: bool,
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
        };
        if let Some(last) = self.next_segment.checked_sub(1) {
            let small = self
                .index_mut()
                .segment(last)
                .is_some_and(|s| s.stored < SMALL_SEGMENT);
            if small && let Some(bytes) = self.trees.segments.get(segment::segment_key(last))? {
                let mut b = SegmentBuilder::new();
                for e in segment::entries(&bytes)? {
                    let (slot, record) = e?;
                    b.put(slot, record);
                }
                b.continue_after_last();
                sw.seg = last;
                sw.builder = b;
            }
        }
        Ok(sw)
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
                .trees
                .segments
                .get(segment::segment_key(loc.seg))?
                .ok_or_else(|| AgentError::Corrupt(format!("segment {} is missing", loc.seg)))?;
            e.insert(bytes);
        }
        let bytes = &sw.cache[&loc.seg];
        segment::find(bytes, loc.slot)?
            .map(<[u8]>::to_vec)
            .ok_or_else(|| AgentError::Corrupt(format!("slot {} of segment {}", loc.slot, loc.seg)))
    }

    /// Applies `sw`: meta first (extra dirty marks are harmless), then the
    /// new segment with every rewrite it needs, atomically. Returns whether
    /// anything was written.
    pub fn commit(&mut self, mut sw: SegmentWrite) -> Result<bool, AgentError> {
        let wrote_meta = !sw.meta_empty;
        if wrote_meta {
            self.trees.meta.apply_batch(std::mem::take(&mut sw.meta))?;
        }
        let mut batch = Batch::default();
        let mut wrote = false;
        if sw.builder.has_new() {
            self.next_segment = sw
                .seg
                .checked_add(1)
                .ok_or_else(|| AgentError::Corrupt("segment ids exhausted".into()))?;
        }
        {
            let mut index = self.index_mut();
            if sw.builder.has_new() {
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
                let key = segment::segment_key(seg);
                let live = match index.segment(seg) {
                    Some(s) => s.live,
                    None => 0,
                };
                if seg == new_seg {
                    let b = fresh.take().unwrap_or_default();
                    if live == 0 {
                        // It may have been reopened from disk: it must go there too.
                        batch.remove(&key[..]);
                    } else if live == b.len() as u32 {
                        batch.insert(&key[..], b.into_bytes());
                    } else {
                        batch.insert(&key[..], keep_live(&index, seg, &b.into_bytes())?);
                    }
                } else {
                    let old = match sw.cache.remove(&seg) {
                        Some(v) => v,
                        None => match self.trees.segments.get(key)? {
                            Some(v) => v,
                            None => continue,
                        },
                    };
                    if live == 0 {
                        batch.remove(&key[..]);
                    } else {
                        batch.insert(&key[..], keep_live(&index, seg, &old)?);
                    }
                }
                index.compacted(seg);
                wrote = true;
            }
        }
        if wrote {
            self.trees.segments.apply_batch(batch)?;
        }
        Ok(wrote || wrote_meta)
    }

    fn remove_from_outbox(
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

    /// Clears a dirty mark, unless it was set again (a newer generation) meanwhile.
    pub fn clear_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        let key = format!("{META_DIRTY_PREFIX}{period}");
        if self.trees.meta.get(key.as_bytes())?.as_deref() == Some(&generation.to_be_bytes()[..]) {
            self.trees.meta.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Enqueues a new revision for `period` and clears the period's dirty mark
    /// (if still at `generation`). An older revision of the same period still
    /// waiting in the outbox is dropped: the hub only needs the latest. The
    /// writes are ordered so a crash between them leaves at worst a period
    /// marked dirty (recomputed) or an outbox entry without its queue mark
    /// (sent once more, idempotently).
    pub fn enqueue(
        &self,
        period: Period,
        submission: &pb::Submission,
        generation: u64,
    ) -> Result<u64, AgentError> {
        let seq = self.db.generate_id()?;
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
        let (slot, record) = e?;
        if index.is_live(&record_key(record)?, Loc { seg, slot }) {
            b.put(slot, record);
        }
    }
    Ok(b.into_bytes())
}

impl SegmentWrite {
    /// Appends a record's new copy; returns where it now lives.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Loc, AgentError> {
        let slot = self.builder.push(bytes).ok_or_else(|| {
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
            .write("t", Durability::Flush, move |w| w.enqueue(q, &sub(1), 1))
            .await
            .unwrap();
        assert!(store.dirty_periods().unwrap().is_empty());
        store.mark_dirty(q, 2).await.unwrap();
        let seq = store
            .write("t", Durability::Flush, move |w| w.enqueue(q, &sub(2), 1))
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
