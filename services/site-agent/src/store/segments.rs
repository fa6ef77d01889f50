//! The records' side of the store: segment files (`segments/`, see
//! [`crate::segment`]), the index rebuilt from them at open, one job's
//! segment write ([`SegmentWrite`]) and its group commit, compaction, and
//! reading every live record ([`Records`]).

use super::*;

/// The `segments/` directory.
#[derive(Debug, Clone)]
pub(super) struct SegmentDir(pub(super) PathBuf);

impl SegmentDir {
    pub(super) fn path(&self, seg: u32) -> PathBuf {
        self.0.join(segment::file_name(seg))
    }

    /// A segment's bytes; `None` if it has no file (deleted by compaction).
    pub(super) fn read(&self, seg: u32) -> Result<Option<Vec<u8>>, AgentError> {
        match std::fs::read(self.path(seg)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("cannot read a segment", &e)),
        }
    }

    /// Every segment id, ascending. With `clean` (at start-up, before the
    /// writer runs), also removes the temporary files a crash left.
    pub(super) fn list(&self, clean: bool) -> Result<Vec<u32>, AgentError> {
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
    pub(super) fn write(&self, seg: u32, bytes: &[u8], sync: bool) -> Result<(), AgentError> {
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

    pub(super) fn remove(&self, seg: u32) -> Result<(), AgentError> {
        match std::fs::remove_file(self.path(seg)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("cannot delete a segment", &e)),
        }
    }

    pub(super) fn sync_file(&self, seg: u32) -> Result<(), AgentError> {
        match std::fs::File::open(self.path(seg)) {
            Ok(f) => f
                .sync_all()
                .map_err(|e| self.error("cannot sync a segment", &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("cannot sync a segment", &e)),
        }
    }

    /// Makes renames and deletions in the directory durable.
    pub(super) fn sync_dir(&self) -> Result<(), AgentError> {
        std::fs::File::open(&self.0)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error("cannot sync the segment directory", &e))
    }

    pub(super) fn error(&self, what: &str, e: &std::io::Error) -> AgentError {
        AgentError::DataDir {
            path: self.0.clone(),
            reason: format!("{what}: {e}"),
        }
    }
}

pub(super) fn pseudonym_at(bytes: &[u8], at: usize) -> Result<Pseudonym, AgentError> {
    bytes
        .get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .map(Pseudonym)
        .ok_or_else(|| AgentError::Corrupt("a record shorter than its pseudonyms".into()))
}

/// The record pseudonym of stored record bytes (format version 1 puts it at byte 1).
pub(super) fn record_key(bytes: &[u8]) -> Result<Pseudonym, AgentError> {
    pseudonym_at(bytes, 1)
}

pub(super) fn decode_record(bytes: &[u8]) -> Result<PseudonymRecord, AgentError> {
    PseudonymRecord::decode(bytes).map_err(|e| AgentError::Corrupt(format!("a record: {e}")))
}

pub(super) fn erased_key(p: &Pseudonym) -> Vec<u8> {
    [META_ERASED_PREFIX, &p.0[..]].concat()
}

pub(super) fn load_erased(meta: &Tree) -> Result<HashSet<Pseudonym>, AgentError> {
    let mut out = HashSet::new();
    for key in meta.scan_prefix(META_ERASED_PREFIX).keys() {
        let key = key?;
        out.insert(pseudonym_at(&key, META_ERASED_PREFIX.len())?);
    }
    Ok(out)
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
    pub(super) fn load(&mut self, seg: u32) -> Result<(), AgentError> {
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
pub(super) fn rebuild(segments: &SegmentDir) -> Result<(Index, u32), AgentError> {
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

/// Stored bytes of segment `seg` with only its live entries, slots kept.
pub(super) fn keep_live(index: &Index, seg: u32, bytes: &[u8]) -> Result<Vec<u8>, AgentError> {
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

impl Store {
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

    /// (segments, entries stored in them): dead entries awaiting compaction
    /// are the difference from [`Store::record_count`].
    pub fn segment_totals(&self) -> (usize, u64) {
        self.index().segment_totals()
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
}

/// One job's change to the records: the index, locked for writing, and the
/// job's new segment ([`SegmentWrite`]), with reads of older segments. Made
/// by [`Writer::records_job`], which commits it when the job succeeds and
/// drops it, unwritten, when the job fails.
pub struct RecordsTxn<'w> {
    writer: &'w Writer,
    /// The index, for reading and writing.
    pub index: RwLockWriteGuard<'w, Index>,
    /// The segment this job writes, and what it makes obsolete.
    pub write: SegmentWrite,
}

impl RecordsTxn<'_> {
    /// The stored bytes at `loc` (this job's new segment included).
    pub fn read(&mut self, loc: Loc) -> Result<Vec<u8>, AgentError> {
        self.writer.read(&mut self.write, loc)
    }

    /// Whether `p` (a record or person pseudonym) belongs to someone erased.
    pub fn was_erased(&self, p: &Pseudonym) -> bool {
        self.writer.was_erased(p)
    }
}

impl Writer {
    /// Runs `job` over one [`RecordsTxn`] and commits what it wrote as one
    /// segment, with its dirty marks and bookkeeping in the same group.
    pub fn records_job<R>(
        &mut self,
        job: impl FnOnce(&mut RecordsTxn<'_>) -> Result<R, AgentError>,
    ) -> Result<R, AgentError> {
        let write = self.begin()?;
        // The index lock is released at the end of this block, before the commit.
        let (out, write) = {
            let mut tx = RecordsTxn {
                writer: self,
                index: self.index_mut(),
                write,
            };
            let out = job(&mut tx)?;
            (out, tx.write)
        };
        self.commit(write)?;
        Ok(out)
    }
}

impl Writer {
    /// The index, for writing. Only the writer thread calls this, so readers
    /// wait at most one job.
    pub(super) fn index_mut(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a job's writes. Small writes (a council system's single
    /// upserts) are appended to the newest segment while it is small, so the
    /// store does not become a million one-record segments; slot numbers of
    /// the records already there stay as they are.
    pub(super) fn begin(&mut self) -> Result<SegmentWrite, AgentError> {
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
    pub(super) fn read(&self, sw: &mut SegmentWrite, loc: Loc) -> Result<Vec<u8>, AgentError> {
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
    pub(super) fn segment_bytes(&self, seg: u32) -> Result<Option<Vec<u8>>, AgentError> {
        match self.pending.get(&seg) {
            Some(p) => Ok(p.clone()),
            None => self.segments.read(seg),
        }
    }

    /// Applies `sw`: meta first (extra dirty marks are harmless), then queues
    /// the new segment and every rewrite it needs for the end of the group
    /// ([`Writer::persist`]). Returns whether anything was written.
    pub(super) fn commit(&mut self, mut sw: SegmentWrite) -> Result<bool, AgentError> {
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
}
