//! Ingest: validate → pseudonymise → match → store, for one chunk of records.
//!
//! Two steps, so the expensive one runs outside the writer lock:
//!
//! 1. [`prepare`] (pure CPU, run on the blocking pool, in parallel for big
//!    chunks): validation with `lacnet_core::validate`, then every pseudonym
//!    under the active key, plus the record and person pseudonyms under each
//!    older key of the ring (to match records written before a rotation). The
//!    raw identifiers are dropped here; nothing after this step sees them.
//! 2. [`apply`] (under the agent's writer lock): looks each record up, decides
//!    its verdict (new, updated, unchanged), re-keys anything found under an
//!    older key, and builds one [`WriteSet`] for the whole chunk, with the
//!    periods whose aggregates changed marked dirty for the publisher.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use lacnet_core::aggregate::periods_touched;
use lacnet_core::pseudonym::{KeyRing, Pseudonym};
use lacnet_core::record::PseudonymRecord;
use lacnet_core::validate::{FieldViolation, RecordInput, validate};
use lacnet_core::{Date, Granularity, Period};

use crate::AgentError;
use crate::store::{Store, WriteSet};

/// A record after validation and pseudonymisation, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The record under the active key.
    pub record: PseudonymRecord,
    /// Its storage bytes.
    pub bytes: Vec<u8>,
    /// (record pseudonym, person pseudonym) under each older key, newest first.
    pub older: Vec<(Pseudonym, Pseudonym)>,
}

/// One input's fate after [`prepare`].
#[derive(Debug, Clone)]
pub enum Item {
    /// Failed validation.
    Rejected(Vec<FieldViolation>),
    /// Ready for [`apply`].
    Valid(Box<Prepared>),
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not seen before.
    New,
    /// Replaced an earlier version (or re-keyed one written under an older key).
    Updated,
    /// Identical to what was stored.
    Unchanged,
    /// Refused; nothing stored for it.
    Rejected(Vec<FieldViolation>),
}

/// Validates and pseudonymises one record.
pub fn prepare_one(input: &RecordInput, ring: &KeyRing, today: Date) -> Item {
    let valid = match validate(input, today) {
        Ok(v) => v,
        Err(violations) => return Item::Rejected(violations),
    };
    let (key_id, active) = ring.active();
    let record = valid.pseudonymise(key_id, active);
    let bytes = record.encode();
    let older = ring
        .iter()
        .skip(1)
        .map(|(_, p)| (p.record(&valid.local_case_id), p.person(&valid.person)))
        .collect();
    Item::Valid(Box::new(Prepared {
        record,
        bytes,
        older,
    }))
}

/// Validates and pseudonymises a chunk, spreading it over `threads` OS threads
/// when it is large enough to be worth it. Blocking: call from the blocking pool.
pub fn prepare(inputs: &[RecordInput], ring: &KeyRing, today: Date, threads: usize) -> Vec<Item> {
    const MIN_PER_THREAD: usize = 512;
    let threads = threads.clamp(1, inputs.len().div_ceil(MIN_PER_THREAD).max(1));
    if threads == 1 {
        return inputs.iter().map(|i| prepare_one(i, ring, today)).collect();
    }
    let per = inputs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|i| prepare_one(i, ring, today))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(inputs.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // prepare_one does not panic on any input; if it ever does, re-raise it.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Hashes a pseudonym by its first 8 bytes: HMAC output is already uniform
/// and unknown to record authors, so SipHash would be wasted work here.
#[derive(Default)]
struct PseudonymHasher(u64);

impl Hasher for PseudonymHasher {
    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(head) => self.0 ^= u64::from_le_bytes(*head),
            None => {
                for b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(*b);
                }
            }
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fast = BuildHasherDefault<PseudonymHasher>;

/// Reads records through the writes of the chunk being built.
struct Overlay<'a> {
    store: &'a Store,
    records: HashMap<Pseudonym, Option<Vec<u8>>, Fast>,
    persons_removed: HashSet<(Pseudonym, Pseudonym), Fast>,
}

impl Overlay<'_> {
    fn get(&self, r: &Pseudonym) -> Result<Option<Vec<u8>>, AgentError> {
        match self.records.get(r) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.record(r)?.map(|v| v.to_vec())),
        }
    }

    fn put(&mut self, w: &mut WriteSet, r: &Pseudonym, bytes: Vec<u8>) {
        w.put_record(r, &bytes);
        self.records.insert(*r, Some(bytes));
    }

    fn del(&mut self, w: &mut WriteSet, r: &Pseudonym) {
        w.del_record(r);
        self.records.insert(*r, None);
    }

    fn del_person(&mut self, w: &mut WriteSet, p: &Pseudonym, r: &Pseudonym) {
        w.del_person(p, r);
        self.persons_removed.insert((*p, *r));
    }
}

fn decode(bytes: &[u8]) -> Result<PseudonymRecord, AgentError> {
    PseudonymRecord::decode(bytes).map_err(|e| AgentError::Corrupt(format!("a record: {e}")))
}

/// Context for [`apply`].
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext {
    /// Reporting granularity (for the dirty periods).
    pub granularity: Granularity,
    /// Today, for open records' periods.
    pub today: Date,
    /// Marks this chunk's dirty periods.
    pub generation: u64,
}

/// Decides each record's verdict and builds the chunk's writes. Call under
/// the writer lock, then [`Store::commit`] the returned set and flush.
pub fn apply(
    store: &Store,
    items: Vec<Item>,
    active_key: &str,
    cx: ApplyContext,
) -> Result<(Vec<Outcome>, WriteSet), AgentError> {
    let mut w = WriteSet::new();
    let mut overlay = Overlay {
        store,
        records: HashMap::with_capacity_and_hasher(0, Fast::default()),
        persons_removed: HashSet::with_hasher(Fast::default()),
    };
    let mut periods: BTreeSet<Period> = BTreeSet::new();
    let touch = |r: &PseudonymRecord, periods: &mut BTreeSet<Period>| {
        periods.extend(periods_touched(r, cx.granularity, cx.today));
    };
    let mut outcomes = Vec::with_capacity(items.len());
    let mut wrote = false;
    for item in items {
        let p = match item {
            Item::Rejected(v) => {
                outcomes.push(Outcome::Rejected(v));
                continue;
            }
            Item::Valid(p) => *p,
        };
        let rk = p.record.record;
        let outcome = if let Some(old) = overlay.get(&rk)? {
            if old == p.bytes {
                Outcome::Unchanged
            } else {
                let old = decode(&old)?;
                if old.person != p.record.person {
                    overlay.del_person(&mut w, &old.person, &rk);
                    w.put_person(&p.record.person, &rk);
                }
                touch(&old, &mut periods);
                Outcome::Updated
            }
        } else {
            // Not under the active key: was it written under an older one?
            let mut found = None;
            for (old_rk, _) in &p.older {
                if let Some(old) = overlay.get(old_rk)? {
                    found = Some((*old_rk, old));
                    break;
                }
            }
            match found {
                Some((old_rk, old)) => {
                    let old = decode(&old)?;
                    overlay.del(&mut w, &old_rk);
                    overlay.del_person(&mut w, &old.person, &old_rk);
                    w.put_person(&p.record.person, &rk);
                    touch(&old, &mut periods);
                    Outcome::Updated
                }
                None => {
                    w.put_person(&p.record.person, &rk);
                    w.count(1);
                    Outcome::New
                }
            }
        };
        if outcome != Outcome::Unchanged {
            touch(&p.record, &mut periods);
            overlay.put(&mut w, &rk, p.bytes);
            wrote = true;
        }
        // The same person known under an older key: move their other records'
        // person pseudonym to the newest key so they count as one person.
        for (_, old_person) in &p.older {
            for other in store.person_records(old_person)? {
                if overlay.persons_removed.contains(&(*old_person, other)) {
                    continue;
                }
                let Some(bytes) = overlay.get(&other)? else {
                    continue;
                };
                let mut rec = decode(&bytes)?;
                touch(&rec, &mut periods);
                rec.person = p.record.person;
                overlay.del_person(&mut w, old_person, &other);
                w.put_person(&p.record.person, &other);
                overlay.put(&mut w, &other, rec.encode());
                wrote = true;
            }
        }
        outcomes.push(outcome);
    }
    if wrote {
        w.key_written(active_key);
    }
    for period in periods {
        w.dirty(period, cx.generation);
    }
    Ok((outcomes, w))
}

/// Erases every record of the people identified by `persons` (person pseudonyms
/// under each key) and of the records `records` (record pseudonyms under each
/// key) together with the rest of those records' people. Returns how many
/// records went and the writes to commit.
pub fn erase(
    store: &Store,
    persons: &[Pseudonym],
    records: &[Pseudonym],
    cx: ApplyContext,
) -> Result<(u32, WriteSet), AgentError> {
    let mut people: Vec<Pseudonym> = persons.to_vec();
    for r in records {
        if let Some(bytes) = store.record(r)? {
            people.push(decode(&bytes)?.person);
        }
    }
    let mut w = WriteSet::new();
    let mut erased: HashSet<Pseudonym> = HashSet::new();
    let mut n: u32 = 0;
    let mut periods = BTreeSet::new();
    for person in &people {
        for rk in store.person_records(person)? {
            w.del_person(person, &rk);
            if !erased.insert(rk) {
                continue;
            }
            if let Some(bytes) = store.record(&rk)? {
                periods.extend(periods_touched(&decode(&bytes)?, cx.granularity, cx.today));
                w.del_record(&rk);
                w.count(-1);
                n = n.saturating_add(1);
            }
        }
    }
    for period in periods {
        w.dirty(period, cx.generation);
    }
    Ok((n, w))
}
