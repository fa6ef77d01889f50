//! Storage: the only module that touches sled. Everything stored is
//! pseudonymised: raw identifiers, exact ages and ward codes never get here.
//!
//! Trees:
//!
//! | tree      | key                                        | value |
//! |-----------|--------------------------------------------|-------|
//! | `records` | record pseudonym (32 bytes)                | `PseudonymRecord::encode` |
//! | `persons` | person pseudonym ‖ record pseudonym (64)   | empty (an index: erasure and matching are prefix scans) |
//! | `outbox`  | big-endian sequence number                 | encoded `lacnet.common.v1.Submission` |
//! | `dead`    | big-endian sequence number                 | reason length (u32 LE) ‖ reason ‖ encoded submission |
//! | `meta`    | see the `META_*` constants                 | schema version, record count, key ids written, dirty periods, last revision per period, push status |
//!
//! Ingest applies each chunk's writes in a crash-safe order
//! ([`Store::commit`]), and waits for [`Store::flush`] before it acknowledges
//! anything. The outbox and dead-letter moves are sled
//! transactions (small and rare).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use lacnet_core::Period;
use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::record::PseudonymRecord;
use lacnet_proto::common::v1 as pb;
use prost::Message;
use sled::transaction::ConflictableTransactionError;
use sled::{Batch, IVec, Transactional, Tree};

use crate::AgentError;

/// Version of the layout described above.
pub const SCHEMA_VERSION: u32 = 1;

const META_SCHEMA: &[u8] = b"schema_version";
const META_KEY_PREFIX: &str = "key_written/";
const META_RETIRED_PREFIX: &str = "key_retired/";
const META_DIRTY_PREFIX: &str = "dirty/";
const META_LAST_PREFIX: &str = "last/";
const META_QUEUED_PREFIX: &str = "queued/";
const META_LAST_PUSH: &[u8] = b"push/last_unix";
const META_LAST_PUSH_ERROR: &[u8] = b"push/last_error";

/// The agent's sled database with its typed trees.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    records: Tree,
    persons: Tree,
    outbox: Tree,
    dead: Tree,
    meta: Tree,
    /// Counted once at open (a key scan), then kept up to date by [`Store::commit`].
    record_count: Arc<AtomicI64>,
}

/// Writes for one ingest chunk or one erasure, applied by [`Store::commit`].
#[derive(Default)]
pub struct WriteSet {
    /// Record writes in order; `None` deletes.
    records: Vec<(Pseudonym, Option<Vec<u8>>)>,
    persons_add: Vec<[u8; 64]>,
    persons_remove: Vec<[u8; 64]>,
    meta: Batch,
    record_delta: i64,
    empty: bool,
}

impl WriteSet {
    /// An empty set.
    pub fn new() -> WriteSet {
        WriteSet {
            empty: true,
            ..WriteSet::default()
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Stores (or replaces) a record.
    pub fn put_record(&mut self, record: &Pseudonym, bytes: &[u8]) {
        self.empty = false;
        self.records.push((*record, Some(bytes.to_vec())));
    }

    /// Deletes a record.
    pub fn del_record(&mut self, record: &Pseudonym) {
        self.empty = false;
        self.records.push((*record, None));
    }

    /// Adds an index entry person → record.
    pub fn put_person(&mut self, person: &Pseudonym, record: &Pseudonym) {
        self.empty = false;
        self.persons_add.push(person_key(person, record));
    }

    /// Removes an index entry person → record.
    pub fn del_person(&mut self, person: &Pseudonym, record: &Pseudonym) {
        self.empty = false;
        self.persons_remove.push(person_key(person, record));
    }

    /// Changes the stored record count by `delta`.
    pub fn count(&mut self, delta: i64) {
        self.record_delta += delta;
    }

    /// Marks a period for re-aggregation; `generation` tells a later change from this one.
    pub fn dirty(&mut self, period: Period, generation: u64) {
        self.empty = false;
        self.meta.insert(
            format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
            &generation.to_be_bytes()[..],
        );
    }

    /// Notes that records were written with this key id.
    pub fn key_written(&mut self, key_id: &str) {
        self.empty = false;
        self.meta
            .insert(format!("{META_KEY_PREFIX}{key_id}").as_bytes(), &[][..]);
    }
}

fn person_key(person: &Pseudonym, record: &Pseudonym) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&person.0);
    k[32..].copy_from_slice(&record.0);
    k
}

fn pseudonym(bytes: &[u8]) -> Result<Pseudonym, AgentError> {
    let a: [u8; 32] = bytes
        .try_into()
        .map_err(|_| AgentError::Corrupt(format!("a pseudonym of {} bytes", bytes.len())))?;
    Ok(Pseudonym(a))
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
    /// Opens (or creates) the database in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, AgentError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let store = Store {
            records: db.open_tree("records")?,
            persons: db.open_tree("persons")?,
            outbox: db.open_tree("outbox")?,
            dead: db.open_tree("dead")?,
            meta: db.open_tree("meta")?,
            record_count: Arc::new(AtomicI64::new(0)),
            db,
        };
        let n = store.records.len();
        store
            .record_count
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        match store.meta.get(META_SCHEMA)? {
            None => {
                store
                    .meta
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
                store.db.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            Some(_) => {
                return Err(AgentError::Corrupt(format!(
                    "the data directory holds a schema other than version {SCHEMA_VERSION}"
                )));
            }
        }
        Ok(store)
    }

    /// A stored record's bytes.
    pub fn record(&self, record: &Pseudonym) -> Result<Option<IVec>, AgentError> {
        Ok(self.records.get(record.0)?)
    }

    /// The record pseudonyms indexed under a person.
    pub fn person_records(&self, person: &Pseudonym) -> Result<Vec<Pseudonym>, AgentError> {
        self.persons
            .scan_prefix(person.0)
            .keys()
            .map(|k| pseudonym(&k?[32..]))
            .collect()
    }

    /// Applies `w` in an order that leaves a consistent store after a crash at
    /// any point. sled recovers a prefix of its log, so the order of the
    /// writes below is the order a crash can cut them in. Plain inserts, not
    /// `apply_batch` or transactions: at bulk-ingest rates a 4,096-record
    /// batch costs twice the time and several times the memory of the same
    /// inserts (measured with 1M random 32-byte keys), and atomicity per
    /// chunk buys nothing that this order does not already give:
    ///
    /// 1. dirty periods and key ids (`meta`): extra dirty marks only cost a recomputation;
    /// 2. new index entries: an entry whose record is missing is skipped by every reader;
    /// 3. the records;
    /// 4. removed index entries, last, so an erasure or re-key interrupted
    ///    half-way never leaves a stored record unreachable from its person.
    ///
    /// Nothing is acknowledged until [`Store::flush`] returns, and a client
    /// that saw no acknowledgement re-sends (ingest is idempotent).
    pub fn commit(&self, w: WriteSet) -> Result<(), AgentError> {
        if !w.empty {
            self.meta.apply_batch(w.meta)?;
            for key in &w.persons_add {
                self.persons.insert(&key[..], &[][..])?;
            }
            for (record, value) in w.records {
                match value {
                    Some(bytes) => self.records.insert(&record.0[..], bytes)?,
                    None => self.records.remove(&record.0[..])?,
                };
            }
            for key in &w.persons_remove {
                self.persons.remove(&key[..])?;
            }
        }
        if w.record_delta != 0 {
            self.record_count
                .fetch_add(w.record_delta, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), AgentError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Every stored record, decoded. Not a snapshot: a concurrent change marks its
    /// periods dirty again, so a publisher scanning here catches up on the next run.
    pub fn records(&self) -> impl Iterator<Item = Result<PseudonymRecord, AgentError>> + '_ {
        self.records.iter().values().map(|v| {
            let v = v?;
            PseudonymRecord::decode(&v).map_err(|e| AgentError::Corrupt(format!("a record: {e}")))
        })
    }

    /// How many records are stored.
    pub fn record_count(&self) -> Result<u64, AgentError> {
        Ok(u64::try_from(self.record_count.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// Key ids that records have been written with, and not retired since.
    pub fn keys_written(&self) -> Result<Vec<String>, AgentError> {
        self.meta
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
        let mut b = Batch::default();
        b.remove(format!("{META_KEY_PREFIX}{key_id}").as_bytes());
        b.insert(
            format!("{META_RETIRED_PREFIX}{key_id}").as_bytes(),
            &now_unix.to_be_bytes()[..],
        );
        self.meta.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Marks one period dirty outside an ingest (the scheduled recomputation).
    pub fn mark_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        self.meta.insert(
            format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
            &generation.to_be_bytes()[..],
        )?;
        Ok(())
    }

    /// Periods waiting for re-aggregation, with their generation.
    pub fn dirty_periods(&self) -> Result<Vec<(Period, u64)>, AgentError> {
        self.meta
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

    /// Clears a dirty mark, unless it was set again (a newer generation) meanwhile.
    pub fn clear_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        let key = format!("{META_DIRTY_PREFIX}{period}");
        // compare_and_swap leaves a newer generation in place.
        let _ = self.meta.compare_and_swap(
            key.as_bytes(),
            Some(&generation.to_be_bytes()[..]),
            None as Option<&[u8]>,
        )?;
        Ok(())
    }

    /// The last submission enqueued for a period.
    pub fn last_submission(&self, period: Period) -> Result<Option<pb::Submission>, AgentError> {
        match self.meta.get(format!("{META_LAST_PREFIX}{period}"))? {
            Some(v) => Ok(Some(decode_submission(&v)?)),
            None => Ok(None),
        }
    }

    /// Every period with a last submission, and that submission.
    pub fn last_submissions(&self) -> Result<Vec<pb::Submission>, AgentError> {
        self.meta
            .scan_prefix(META_LAST_PREFIX)
            .values()
            .map(|v| decode_submission(&v?))
            .collect()
    }

    /// Enqueues a new revision for `period` and clears the period's dirty mark
    /// (if still at `generation`), atomically. An older revision of the same
    /// period still waiting in the outbox is dropped: the hub only needs the latest.
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
        let dirty_key = format!("{META_DIRTY_PREFIX}{period}");
        (&self.outbox, &self.meta).transaction(|(o, m)| {
            if let Some(old) = m.get(queued_key.as_bytes())? {
                o.remove(old)?;
            }
            o.insert(&seq.to_be_bytes()[..], bytes.as_slice())?;
            m.insert(queued_key.as_bytes(), &seq.to_be_bytes()[..])?;
            m.insert(last_key.as_bytes(), bytes.as_slice())?;
            if m.get(dirty_key.as_bytes())?.as_deref() == Some(&generation.to_be_bytes()[..]) {
                m.remove(dirty_key.as_bytes())?;
            }
            Ok::<_, ConflictableTransactionError<AgentError>>(())
        })?;
        Ok(seq)
    }

    /// The oldest outbox entry.
    pub fn outbox_first(&self) -> Result<Option<(u64, pb::Submission)>, AgentError> {
        match self.outbox.first()? {
            Some((k, v)) => Ok(Some((be_u64(&k)?, decode_submission(&v)?))),
            None => Ok(None),
        }
    }

    /// Entries waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Every outbox entry, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, pb::Submission)>, AgentError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((be_u64(&k)?, decode_submission(&v)?))
            })
            .collect()
    }

    fn remove_from_outbox(
        &self,
        seq: u64,
        period: Option<Period>,
        dead: Option<Vec<u8>>,
    ) -> Result<(), AgentError> {
        let key = seq.to_be_bytes();
        let queued_key = period.map(|p| format!("{META_QUEUED_PREFIX}{p}"));
        (&self.outbox, &self.meta, &self.dead).transaction(|(o, m, d)| {
            o.remove(&key[..])?;
            if let Some(q) = &queued_key
                && m.get(q.as_bytes())?.as_deref() == Some(&key[..])
            {
                m.remove(q.as_bytes())?;
            }
            if let Some(entry) = &dead {
                d.insert(&key[..], entry.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<AgentError>>(())
        })?;
        Ok(())
    }

    /// Removes an entry the hub has acknowledged.
    pub fn outbox_remove(&self, seq: u64, period: Option<Period>) -> Result<(), AgentError> {
        self.remove_from_outbox(seq, period, None)
    }

    /// Moves an entry the hub refused for good to the dead-letter tree.
    pub fn dead_letter(
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
        self.remove_from_outbox(seq, period, Some(entry))
    }

    /// Every dead-lettered submission.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, AgentError> {
        self.dead
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
                    submission: decode_submission(&v[4 + len..])?,
                })
            })
            .collect()
    }

    /// How many submissions are dead-lettered.
    pub fn dead_len(&self) -> usize {
        self.dead.len()
    }

    /// Records a push outcome: the time of success, or the error of a failure.
    pub fn set_push_result(&self, ok_at_unix: Option<i64>, error: &str) -> Result<(), AgentError> {
        if let Some(t) = ok_at_unix {
            self.meta.insert(META_LAST_PUSH, &t.to_be_bytes()[..])?;
        }
        self.meta.insert(META_LAST_PUSH_ERROR, error.as_bytes())?;
        Ok(())
    }

    /// (last successful push, seconds since the epoch or 0; last error or empty).
    pub fn push_status(&self) -> Result<(i64, String), AgentError> {
        let last = match self.meta.get(META_LAST_PUSH)? {
            Some(v) => be_u64(&v)? as i64,
            None => 0,
        };
        let err = match self.meta.get(META_LAST_PUSH_ERROR)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => String::new(),
        };
        Ok((last, err))
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

    #[test]
    fn commit_index_count_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (r, p) = (Pseudonym([1; 32]), Pseudonym([2; 32]));
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let mut w = WriteSet::new();
            w.put_record(&r, b"x");
            w.put_person(&p, &r);
            w.count(1);
            w.key_written("k1");
            store.commit(w).unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.record(&r).unwrap().unwrap().as_ref(), b"x");
        assert_eq!(store.person_records(&p).unwrap(), vec![r]);
        assert_eq!(store.record_count().unwrap(), 1);
        assert_eq!(store.keys_written().unwrap(), vec!["k1".to_owned()]);
        store.retire_key("k1", 5).unwrap();
        assert!(store.keys_written().unwrap().is_empty());
    }

    #[test]
    fn outbox_keeps_one_entry_per_period_and_dirty_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let q = Period::parse("2025-Q1").unwrap();
        store.mark_dirty(q, 1).unwrap();
        store.enqueue(q, &sub(1), 1).unwrap();
        assert!(store.dirty_periods().unwrap().is_empty());
        store.mark_dirty(q, 2).unwrap();
        let seq = store.enqueue(q, &sub(2), 1).unwrap();
        // A newer generation stays dirty.
        assert_eq!(store.dirty_periods().unwrap(), vec![(q, 2)]);
        assert_eq!(store.outbox_len(), 1);
        assert_eq!(store.outbox_first().unwrap().unwrap().1.revision, 2);
        assert_eq!(store.last_submission(q).unwrap().unwrap().revision, 2);
        store.dead_letter(seq, Some(q), &sub(2), "refused").unwrap();
        assert_eq!(store.outbox_len(), 0);
        let dead = store.dead_letters().unwrap();
        assert_eq!(dead[0].reason, "refused");
        assert_eq!(dead[0].submission.revision, 2);
        store.clear_dirty(q, 2).unwrap();
        assert!(store.dirty_periods().unwrap().is_empty());
    }
}
