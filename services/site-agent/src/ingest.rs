//! Ingest: validate → pseudonymise → match → store, for one chunk of records.
//!
//! Two steps, so the expensive one runs outside the writer lock:
//!
//! 1. [`prepare`] (pure CPU, run on the blocking pool, in parallel for big
//!    chunks): validation with `lacnet_core::validate`, then every pseudonym
//!    under the active key, plus the record and person pseudonyms under each
//!    older key of the ring (to match records written before a rotation). The
//!    raw identifiers are dropped here; nothing after this step sees them.
//! 2. [`apply`] (a job on the store's writer thread): looks each record up in
//!    the in-memory index, decides its verdict (new, updated, unchanged)
//!    without reading the disk, re-keys anything found under an older key,
//!    and writes the chunk as one segment, with the periods whose aggregates
//!    changed marked dirty for the publisher. A record of a person erased
//!    here is refused (the agent remembers them as pseudonyms, see
//!    [`erase`]) unless the caller re-admits them on purpose.

use std::collections::BTreeSet;

use lacnet_core::pseudonym::{KeyRing, Pseudonym};
use lacnet_core::record::PseudonymRecord;
use lacnet_core::structural::NeverServed;
use lacnet_core::validate::{FieldViolation, PersonId, RecordField, RecordInput, validate};
use lacnet_core::{Date, Granularity, Period};

use crate::AgentError;
use crate::index::RecordMeta;
use crate::store::{RecordsTxn, Writer};

/// A record after validation and pseudonymisation, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The record under the active key.
    pub record: PseudonymRecord,
    /// Its storage bytes.
    pub bytes: Vec<u8>,
    /// What the index keeps of it.
    pub meta: RecordMeta,
    /// (record pseudonym, person pseudonym) under each older key, newest first.
    pub older: Vec<(Pseudonym, Pseudonym)>,
    /// Whether the person is identified by an NHS number (else by the case id).
    pub person_is_nhs: bool,
    /// Re-admit the person even if they were erased here (and forget that erasure).
    pub readmit_erased: bool,
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

/// Validates one record against the rules and the site's categories it
/// never serves, and pseudonymises it.
pub fn prepare_one(input: &RecordInput, ring: &KeyRing, never: &NeverServed, today: Date) -> Item {
    let valid = match validate(input, today) {
        Ok(v) => v,
        Err(violations) => return Item::Rejected(violations),
    };
    if let Some(refused) = never.refuses(&valid) {
        return Item::Rejected(vec![refused]);
    }
    let (key_id, active) = ring.active();
    let record = valid.pseudonymise(key_id, active);
    let bytes = record.encode();
    let meta = RecordMeta::of(&record, &bytes);
    let older = ring
        .iter()
        .skip(1)
        .map(|(_, p)| (p.record(&valid.local_case_id), p.person(&valid.person)))
        .collect();
    Item::Valid(Box::new(Prepared {
        record,
        bytes,
        meta,
        older,
        person_is_nhs: matches!(valid.person, PersonId::Nhs(_)),
        readmit_erased: false,
    }))
}

/// Validates and pseudonymises a chunk, spreading it over `threads` OS threads
/// when it is large enough to be worth it. Blocking: call from the blocking pool.
pub fn prepare(
    inputs: &[RecordInput],
    ring: &KeyRing,
    never: &NeverServed,
    today: Date,
    threads: usize,
) -> Vec<Item> {
    const MIN_PER_THREAD: usize = 512;
    let threads = threads.clamp(1, inputs.len().div_ceil(MIN_PER_THREAD).max(1));
    if threads == 1 {
        return inputs
            .iter()
            .map(|i| prepare_one(i, ring, never, today))
            .collect();
    }
    let per = inputs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|i| prepare_one(i, ring, never, today))
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

/// Decides each record's verdict and writes the chunk as one segment. Runs
/// on the store's writer thread (a [`crate::store::Store::write`] job).
/// Returns the verdicts and whether anything changed.
pub fn apply(
    w: &mut Writer,
    items: Vec<Item>,
    active_key: &str,
    cx: ApplyContext,
) -> Result<(Vec<Outcome>, bool), AgentError> {
    // One cheap look before the chunk: most sites never erase anyone.
    let guard = w.any_erased();
    w.records_job(|tx| {
        let mut periods: BTreeSet<Period> = BTreeSet::new();
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
            if guard {
                let refused = erased_guard(tx, &p);
                if !refused.is_empty() {
                    outcomes.push(Outcome::Rejected(refused));
                    continue;
                }
            }
            let outcome = place(tx, &p, cx, &mut periods)?;
            if outcome != Outcome::Unchanged {
                periods.extend(p.meta.periods(cx.granularity, cx.today));
                wrote = true;
            }
            wrote |= rekey_person(tx, &p, cx, &mut periods)?;
            outcomes.push(outcome);
        }
        if wrote {
            tx.write.key_written(active_key);
        }
        for period in periods {
            tx.write.dirty(period, cx.generation);
        }
        Ok((outcomes, wrote))
    })
}

/// Writes one prepared record: new, an update of the stored one, or the
/// same record re-keyed from an older key; unchanged writes nothing. Adds
/// the periods a replaced version counted in to `periods`.
fn place(
    tx: &mut RecordsTxn<'_>,
    p: &Prepared,
    cx: ApplyContext,
    periods: &mut BTreeSet<Period>,
) -> Result<Outcome, AgentError> {
    let rk = p.record.record;
    let index = &mut tx.index;
    if let Some(id) = index.get(&rk) {
        if index.meta(id).digest == p.meta.digest {
            return Ok(Outcome::Unchanged);
        }
        periods.extend(index.meta(id).periods(cx.granularity, cx.today));
        tx.write.touched(index.loc(id).seg);
        let loc = tx.write.push(&p.bytes, None)?;
        index.relocate(id, &p.record.person, loc, p.meta);
        return Ok(Outcome::Updated);
    }
    // Not under the active key: was it written under an older one?
    let older = p
        .older
        .iter()
        .find_map(|(old_rk, _)| index.get(old_rk).map(|id| (*old_rk, id)));
    let loc = tx
        .write
        .push(&p.bytes, older.as_ref().map(|(old_rk, _)| old_rk))?;
    let Some((old_rk, id)) = older else {
        index.insert(&rk, &p.record.person, loc, p.meta);
        return Ok(Outcome::New);
    };
    periods.extend(index.meta(id).periods(cx.granularity, cx.today));
    // The copy under the old key must go in this same batch: on a restart
    // it would be another record.
    tx.write.compact(index.loc(id).seg);
    index.rename(id, &old_rk, &rk);
    index.relocate(id, &p.record.person, loc, p.meta);
    Ok(Outcome::Updated)
}

/// The same person known under an older key: moves their other records'
/// person pseudonym to the newest key so they count as one person. Returns
/// whether it rewrote any.
fn rekey_person(
    tx: &mut RecordsTxn<'_>,
    p: &Prepared,
    cx: ApplyContext,
    periods: &mut BTreeSet<Period>,
) -> Result<bool, AgentError> {
    let mut wrote = false;
    for (_, old_person) in &p.older {
        for other in tx.index.person_records(old_person) {
            let old_loc = tx.index.loc(other);
            let mut rec = decode(&tx.read(old_loc)?)?;
            periods.extend(tx.index.meta(other).periods(cx.granularity, cx.today));
            rec.person = p.record.person;
            let bytes = rec.encode();
            let meta = RecordMeta::of(&rec, &bytes);
            tx.write.touched(old_loc.seg);
            let loc = tx.write.push(&bytes, None)?;
            tx.index.relocate(other, &rec.person, loc, meta);
            wrote = true;
        }
    }
    Ok(wrote)
}

/// Why a record of an erased person is refused, one violation per field that
/// matches (its case id, its NHS number), or nothing to go on. When the
/// caller re-admits the person, their erasure is forgotten in this batch.
fn erased_guard(tx: &mut RecordsTxn<'_>, p: &Prepared) -> Vec<FieldViolation> {
    let records = std::iter::once(p.record.record).chain(p.older.iter().map(|(r, _)| *r));
    let persons = std::iter::once(p.record.person).chain(p.older.iter().map(|(_, q)| *q));
    let case_hit = records.clone().any(|r| tx.was_erased(&r));
    let person_hit = persons.clone().any(|q| tx.was_erased(&q));
    if !case_hit && !person_hit {
        return Vec::new();
    }
    if p.readmit_erased {
        for x in records.chain(persons) {
            tx.write.forget_erased(&x);
        }
        return Vec::new();
    }
    // Without an NHS number the person pseudonym is the case id's.
    let mut kinds = Vec::with_capacity(2);
    if case_hit || (person_hit && !p.person_is_nhs) {
        kinds.push(RecordField::LocalCaseId);
    }
    if person_hit && p.person_is_nhs {
        kinds.push(RecordField::NhsNumber);
    }
    kinds
        .into_iter()
        .map(|kind| FieldViolation {
            kind,
            field: kind.name().to_owned(),
            reason: "belongs to a person erased at this site (an old export would bring them \
                     back): leave the row out, or if the person has returned, re-admit them \
                     (lacnet import --readmit-erased)"
                .to_owned(),
        })
        .collect()
}

/// Erases every record of the people identified by `persons` (person pseudonyms
/// under each key) and of the records `records` (record pseudonyms under each
/// key) together with the rest of those records' people. Every segment that
/// held a copy of any of them is rewritten before this returns, so no old
/// version survives to be found on a restart. When anyone was erased, their
/// record and person pseudonyms (and those asked for, under every key) are
/// remembered in the same batch, so [`apply`] can refuse them if an old export
/// is imported again. Returns how many records went.
/// Runs on the store's writer thread.
pub fn erase(
    w: &mut Writer,
    persons: &[Pseudonym],
    records: &[Pseudonym],
    cx: ApplyContext,
) -> Result<u32, AgentError> {
    w.records_job(|tx| {
        let mut n: u32 = 0;
        let mut periods = BTreeSet::new();
        let mut ids: Vec<_> = persons
            .iter()
            .flat_map(|p| tx.index.person_records(p))
            .collect();
        for r in records {
            if let Some(id) = tx.index.get(r) {
                ids.extend(tx.index.same_person(id));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        // Dead copies of the same records may sit in older segments until
        // compaction: rewrite every segment that has any, as well.
        for seg in tx.index.fragmented() {
            tx.write.compact(seg);
        }
        for id in ids {
            let loc = tx.index.loc(id);
            let rec = decode(&tx.read(loc)?)?;
            periods.extend(tx.index.meta(id).periods(cx.granularity, cx.today));
            tx.index.remove(id, &rec.record);
            tx.write.compact(loc.seg);
            tx.write.remember_erased(&rec.record);
            tx.write.remember_erased(&rec.person);
            n = n.saturating_add(1);
        }
        if n > 0 {
            for p in persons.iter().chain(records) {
                tx.write.remember_erased(p);
            }
        }
        for period in periods {
            tx.write.dirty(period, cx.generation);
        }
        Ok(n)
    })
}
