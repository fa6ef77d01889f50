//! The in-memory index over the stored records: record pseudonym → where the
//! record is, person pseudonym → that person's records, and per-segment
//! live counts for compaction.
//!
//! It is rebuilt from the segments at startup (a sequential scan) and kept
//! current by the writer thread, which is its only writer. Nothing here is
//! an identifier: the keys are the first 128 bits of HMAC-SHA256
//! pseudonyms. Two different pseudonyms sharing 128 bits is a 2⁻¹²⁸ event
//! per pair (10⁻²⁷ over a million records), far below the rate at which the
//! disk itself corrupts data, so 128 bits stand for the whole pseudonym and
//! save 16 bytes a record. The tables hold only 4-byte ids; the keys live
//! once, in the entries and person slots.
//!
//! Per record it keeps what ingest needs to decide a verdict without reading
//! the disk: where the record is, its person, its dates (which periods an
//! update makes dirty) and a 64-bit SHA-256 digest of its bytes (whether a
//! re-sent record is unchanged).

use std::collections::BTreeMap;

use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::record::PseudonymRecord;
use lacnet_core::{Date, Granularity, Period};
use sha2::{Digest, Sha256};

use crate::segment::Loc;

/// A pseudonym's first 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u32; 4]);

impl Key {
    /// The key of a pseudonym.
    pub fn of(p: &Pseudonym) -> Key {
        let b = &p.0;
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Key([w(0), w(4), w(8), w(12)])
    }
}

const NONE: u32 = u32::MAX;
const OPEN: i32 = i32::MIN;

/// An open-addressing hash set of ids whose keys live elsewhere (in the
/// entries or person slots), so each stored key costs 4 bytes here instead
/// of a map's 20 plus its empty buckets. Linear probing, at most 3/4 full,
/// deletion by backward shift (no tombstones).
#[derive(Debug, Default)]
struct IdTable {
    slots: Vec<u32>,
    len: usize,
}

impl IdTable {
    fn len(&self) -> usize {
        self.len
    }

    fn home(&self, key: Key) -> usize {
        // The key's first 64 bits are uniform (HMAC output); take the high bits.
        let h = u64::from(key.0[0]) | (u64::from(key.0[1]) << 32);
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (self.slots.len() - 1)
    }

    fn find(&self, key: Key, key_of: impl Fn(u32) -> Key) -> Option<(usize, u32)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let id = self.slots[i];
            if id == NONE {
                return None;
            }
            if key_of(id) == key {
                return Some((i, id));
            }
            i = (i + 1) & mask;
        }
    }

    fn get(&self, key: Key, key_of: impl Fn(u32) -> Key) -> Option<u32> {
        self.find(key, key_of).map(|(_, id)| id)
    }

    /// Adds `id` (whose key must not be present yet).
    fn insert(&mut self, key: Key, id: u32, key_of: impl Fn(u32) -> Key) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let old = std::mem::take(&mut self.slots);
            self.slots = vec![NONE; (old.len() * 2).max(16)];
            for other in old.into_iter().filter(|&o| o != NONE) {
                self.place(key_of(other), other);
            }
        }
        self.place(key, id);
        self.len += 1;
    }

    fn place(&mut self, key: Key, id: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots[i] != NONE {
            i = (i + 1) & mask;
        }
        self.slots[i] = id;
    }

    /// Removes the id stored under `key`, if any.
    fn remove(&mut self, key: Key, key_of: impl Fn(u32) -> Key) -> Option<u32> {
        let (mut hole, id) = self.find(key, &key_of)?;
        let mask = self.slots.len() - 1;
        self.slots[hole] = NONE;
        self.len -= 1;
        // Shift back every later entry of the run that may not sit past the hole.
        let mut j = (hole + 1) & mask;
        while self.slots[j] != NONE {
            let home = self.home(key_of(self.slots[j]));
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                self.slots[j] = NONE;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        Some(id)
    }
}

/// What the index remembers of one stored record's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    introduced_on: i32,
    closed_on: i32,
    /// First 64 bits of SHA-256 over the stored bytes.
    pub digest: u64,
}

impl RecordMeta {
    /// The metadata of a record and its stored bytes.
    pub fn of(record: &PseudonymRecord, bytes: &[u8]) -> RecordMeta {
        RecordMeta {
            introduced_on: record.facts.introduced_on.to_storage(),
            closed_on: record.facts.closed_on.map_or(OPEN, Date::to_storage),
            digest: digest(bytes),
        }
    }

    /// Whether a record with these dates may count in the days from
    /// `start` to `end`: introduced by the end and not closed before the
    /// start. (The inactivity rule can only narrow this.)
    pub fn may_count_in(&self, start: Date, end: Date) -> bool {
        self.introduced_on <= end.to_storage()
            && (self.closed_on == OPEN || self.closed_on >= start.to_storage())
    }

    /// The periods a record with these dates counts in (as
    /// `lacnet_core::aggregate::periods_touched`).
    pub fn periods(&self, granularity: Granularity, today: Date) -> impl Iterator<Item = Period> {
        let intro = Date::from_storage(self.introduced_on);
        let end = if self.closed_on == OPEN {
            today
        } else {
            Date::from_storage(self.closed_on)
        };
        let first = Period::containing(granularity, intro);
        let last = Period::containing(granularity, end).max(first);
        std::iter::successors(Some(first), move |p| (*p < last).then(|| p.next()))
    }
}

/// First 64 bits of SHA-256 over `bytes`: tells an unchanged re-send from an update.
pub fn digest(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The record pseudonym's key (the records table holds only ids).
    key: Key,
    loc: Loc,
    /// The next record of the same person, or NONE.
    next: u32,
    /// The person's slot.
    person: u32,
    meta: RecordMeta,
}

#[derive(Debug, Clone, Copy)]
struct PersonSlot {
    key: Key,
    head: u32,
}

/// How many slots a segment was written with, and how many are still live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Entries stored in the segment.
    pub stored: u32,
    /// Entries that are the current copy of their record.
    pub live: u32,
}

/// Record id: a dense in-memory number, reused after erasure, never stored.
pub type RecordId = u32;

/// The index. See the module docs.
#[derive(Debug, Default)]
pub struct Index {
    records: IdTable,
    persons: IdTable,
    entries: Vec<Entry>,
    free: Vec<RecordId>,
    person_slots: Vec<PersonSlot>,
    free_persons: Vec<u32>,
    segments: BTreeMap<u32, SegmentStats>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// How many distinct people are stored.
    pub fn people(&self) -> usize {
        self.persons.len()
    }

    /// The earliest introduction date of any stored record.
    pub fn earliest_introduction(&self) -> Option<Date> {
        self.records
            .slots
            .iter()
            .filter(|&&id| id != NONE)
            .map(|id| self.entries[*id as usize].meta.introduced_on)
            .min()
            .map(Date::from_storage)
    }

    /// What the index remembers of every stored record.
    pub fn metas(&self) -> impl Iterator<Item = RecordMeta> + '_ {
        self.records
            .slots
            .iter()
            .filter(|&&id| id != NONE)
            .map(|id| self.entries[*id as usize].meta)
    }

    /// The id of a stored record.
    pub fn get(&self, record: &Pseudonym) -> Option<RecordId> {
        let entries = &self.entries;
        self.records
            .get(Key::of(record), |id| entries[id as usize].key)
    }

    /// Where a record is stored.
    pub fn loc(&self, id: RecordId) -> Loc {
        self.entries[id as usize].loc
    }

    /// What the index remembers of a record.
    pub fn meta(&self, id: RecordId) -> RecordMeta {
        self.entries[id as usize].meta
    }

    /// Whether the record is filed under this person.
    pub fn has_person(&self, id: RecordId, person: &Pseudonym) -> bool {
        self.person_slots[self.entries[id as usize].person as usize].key == Key::of(person)
    }

    /// The records of a person.
    pub fn person_records(&self, person: &Pseudonym) -> Vec<RecordId> {
        let mut out = Vec::new();
        let slots = &self.person_slots;
        if let Some(slot) = self.persons.get(Key::of(person), |s| slots[s as usize].key) {
            let mut id = self.person_slots[slot as usize].head;
            while id != NONE {
                out.push(id);
                id = self.entries[id as usize].next;
            }
        }
        out
    }

    /// Every record filed under the same person as `id` (itself included).
    pub fn same_person(&self, id: RecordId) -> Vec<RecordId> {
        let mut out = Vec::new();
        let mut at = self.person_slots[self.entries[id as usize].person as usize].head;
        while at != NONE {
            out.push(at);
            at = self.entries[at as usize].next;
        }
        out
    }

    /// Whether `loc` holds the current copy of `record`.
    pub fn is_live(&self, record: &Pseudonym, loc: Loc) -> bool {
        self.get(record).is_some_and(|id| self.loc(id) == loc)
    }

    /// Files a record not stored before.
    pub fn insert(
        &mut self,
        record: &Pseudonym,
        person: &Pseudonym,
        loc: Loc,
        meta: RecordMeta,
    ) -> RecordId {
        let key = Key::of(record);
        let entry = Entry {
            key,
            loc,
            next: NONE,
            person: NONE,
            meta,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as RecordId
            }
        };
        self.link(id, person);
        let entries = &self.entries;
        self.records.insert(key, id, |i| entries[i as usize].key);
        self.segments.entry(loc.seg).or_default().live += 1;
        id
    }

    /// Moves a stored record to its new copy at `loc`, with its new person and content.
    pub fn relocate(&mut self, id: RecordId, person: &Pseudonym, loc: Loc, meta: RecordMeta) {
        let old = self.entries[id as usize].loc;
        self.dead(old);
        self.segments.entry(loc.seg).or_default().live += 1;
        let e = &mut self.entries[id as usize];
        e.loc = loc;
        e.meta = meta;
        if !self.has_person(id, person) {
            self.unlink(id);
            self.link(id, person);
        }
    }

    /// Files a stored record under a new record pseudonym (a key rotation).
    pub fn rename(&mut self, id: RecordId, old: &Pseudonym, new: &Pseudonym) {
        let entries = &self.entries;
        self.records
            .remove(Key::of(old), |i| entries[i as usize].key);
        self.entries[id as usize].key = Key::of(new);
        let entries = &self.entries;
        self.records
            .insert(Key::of(new), id, |i| entries[i as usize].key);
    }

    /// Forgets a record (erasure).
    pub fn remove(&mut self, id: RecordId, record: &Pseudonym) {
        let loc = self.entries[id as usize].loc;
        self.dead(loc);
        self.unlink(id);
        let entries = &self.entries;
        self.records
            .remove(Key::of(record), |i| entries[i as usize].key);
        self.free.push(id);
    }

    /// Notes a segment written with `stored` entries (none live yet).
    pub fn add_segment(&mut self, seg: u32, stored: u32) {
        self.segments.entry(seg).or_default().stored = stored;
    }

    /// Notes a segment rewritten with only its live entries, or deleted.
    pub fn compacted(&mut self, seg: u32) {
        match self.segments.get_mut(&seg) {
            Some(s) if s.live == 0 => {
                self.segments.remove(&seg);
            }
            Some(s) => s.stored = s.live,
            None => {}
        }
    }

    /// A segment's counts.
    pub fn segment(&self, seg: u32) -> Option<SegmentStats> {
        self.segments.get(&seg).copied()
    }

    /// Segments holding dead entries, oldest first.
    pub fn fragmented(&self) -> Vec<u32> {
        self.segments
            .iter()
            .filter(|(_, s)| s.live < s.stored)
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many segments there are, and how many entries they store in all.
    pub fn segment_totals(&self) -> (usize, u64) {
        let stored = self.segments.values().map(|s| u64::from(s.stored)).sum();
        (self.segments.len(), stored)
    }

    fn dead(&mut self, loc: Loc) {
        if let Some(s) = self.segments.get_mut(&loc.seg) {
            s.live = s.live.saturating_sub(1);
        }
    }

    fn link(&mut self, id: RecordId, person: &Pseudonym) {
        let key = Key::of(person);
        let slots = &self.person_slots;
        let slot = match self.persons.get(key, |s| slots[s as usize].key) {
            Some(slot) => slot,
            None => {
                let p = PersonSlot { key, head: NONE };
                let slot = match self.free_persons.pop() {
                    Some(s) => {
                        self.person_slots[s as usize] = p;
                        s
                    }
                    None => {
                        self.person_slots.push(p);
                        (self.person_slots.len() - 1) as u32
                    }
                };
                let slots = &self.person_slots;
                self.persons.insert(key, slot, |s| slots[s as usize].key);
                slot
            }
        };
        let p = &mut self.person_slots[slot as usize];
        self.entries[id as usize].next = p.head;
        self.entries[id as usize].person = slot;
        p.head = id;
    }

    fn unlink(&mut self, id: RecordId) {
        let slot = self.entries[id as usize].person;
        let next = self.entries[id as usize].next;
        let p = self.person_slots[slot as usize];
        if p.head == id {
            self.person_slots[slot as usize].head = next;
        } else {
            let mut at = p.head;
            while at != NONE {
                let n = self.entries[at as usize].next;
                if n == id {
                    self.entries[at as usize].next = next;
                    break;
                }
                at = n;
            }
        }
        if self.person_slots[slot as usize].head == NONE {
            let slots = &self.person_slots;
            self.persons.remove(p.key, |s| slots[s as usize].key);
            self.free_persons.push(slot);
        }
        let e = &mut self.entries[id as usize];
        e.next = NONE;
        e.person = NONE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_table_matches_a_map_under_random_inserts_and_removals() {
        // Keys share their home slots often (few distinct high bits), so long
        // probe runs and wrap-around are exercised by the backward shift.
        let mut keys: Vec<Key> = Vec::new();
        let mut model = std::collections::HashMap::new();
        let mut t = IdTable::default();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u32 {
            let r = rnd();
            if r % 3 != 0 || model.is_empty() {
                let k = Key([(r as u32) & 0x7, (r >> 32) as u32 & 0x3, step, 1]);
                keys.push(k);
                let id = (keys.len() - 1) as u32;
                let ks = keys.clone();
                t.insert(k, id, |i| ks[i as usize]);
                model.insert(k, id);
            } else {
                let pick = *model.keys().nth((r as usize) % model.len()).unwrap();
                let want = model.remove(&pick);
                assert_eq!(t.remove(pick, |i| keys[i as usize]), want);
            }
            if step % 997 == 0 {
                assert_eq!(t.len(), model.len());
                for (k, id) in &model {
                    assert_eq!(t.get(*k, |i| keys[i as usize]), Some(*id));
                }
            }
        }
        for (k, id) in &model {
            assert_eq!(t.get(*k, |i| keys[i as usize]), Some(*id));
        }
        let absent = Key([9, 9, 9, 9]);
        assert_eq!(t.get(absent, |i| keys[i as usize]), None);
    }

    fn p(b: u8) -> Pseudonym {
        Pseudonym([b; 32])
    }

    fn meta(d: u64) -> RecordMeta {
        RecordMeta {
            introduced_on: 0,
            closed_on: OPEN,
            digest: d,
        }
    }

    fn at(seg: u32, slot: u32) -> Loc {
        Loc { seg, slot }
    }

    #[test]
    fn people_records_and_segments_stay_consistent() {
        let mut ix = Index::new();
        ix.add_segment(0, 3);
        let a = ix.insert(&p(1), &p(100), at(0, 0), meta(1));
        let b = ix.insert(&p(2), &p(100), at(0, 1), meta(2));
        let c = ix.insert(&p(3), &p(101), at(0, 2), meta(3));
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.people(), 2);
        let mut of100 = ix.person_records(&p(100));
        of100.sort();
        assert_eq!(of100, vec![a, b]);
        assert_eq!(ix.segment(0).unwrap().live, 3);

        // b moves to a new segment and to person 101.
        ix.add_segment(1, 1);
        ix.relocate(b, &p(101), at(1, 0), meta(22));
        assert_eq!(ix.person_records(&p(100)), vec![a]);
        assert_eq!(ix.person_records(&p(101)).len(), 2);
        assert!(!ix.is_live(&p(2), at(0, 1)));
        assert!(ix.is_live(&p(2), at(1, 0)));
        assert_eq!(ix.fragmented(), vec![0]);
        assert_eq!(ix.meta(b).digest, 22);

        // Erasing person 100's only record frees the person.
        ix.remove(a, &p(1));
        assert!(ix.person_records(&p(100)).is_empty());
        assert_eq!(ix.people(), 1);
        assert!(ix.get(&p(1)).is_none());
        // The freed id is reused.
        let d = ix.insert(&p(4), &p(102), at(1, 1), meta(4));
        assert_eq!(d, a);

        // Key rotation renames.
        ix.rename(c, &p(3), &p(33));
        assert!(ix.get(&p(3)).is_none());
        assert_eq!(ix.get(&p(33)), Some(c));

        // Segment 0 now holds only c live; compaction drops the rest.
        assert_eq!(ix.segment(0).unwrap(), SegmentStats { stored: 3, live: 1 });
        ix.compacted(0);
        assert_eq!(ix.segment(0).unwrap(), SegmentStats { stored: 1, live: 1 });
        ix.remove(c, &p(33));
        ix.compacted(0);
        assert!(ix.segment(0).is_none());
    }

    #[test]
    fn dates_give_the_same_periods_as_core() {
        use lacnet_core::aggregate::periods_touched;
        use lacnet_core::pseudonym::KeyId;
        use lacnet_core::record::CaseFacts;
        use lacnet_core::vocab::*;
        let today = Date::parse("2025-06-30").unwrap();
        for (intro, closed) in [
            ("2024-02-10", None),
            ("2024-02-10", Some("2024-11-01")),
            ("2025-06-01", Some("2025-06-01")),
        ] {
            let r = PseudonymRecord {
                record: p(1),
                person: p(2),
                key_id: KeyId::new("k1").unwrap(),
                facts: CaseFacts {
                    introduced_on: Date::parse(intro).unwrap(),
                    closed_on: closed.map(|c| Date::parse(c).unwrap()),
                    support_level: SupportLevel::Level2,
                    age_band: AgeBand::From25To34,
                    primary_need: PrimaryNeed::MentalHealth,
                    source: IntroductionSource::SelfReferral,
                    outcomes: OutcomeSet::default(),
                    outcome_dates: NO_OUTCOME_DATES,
                    last_contact_on: None,
                },
                neighbourhood: None,
            };
            let m = RecordMeta::of(&r, &r.encode());
            for g in [Granularity::Month, Granularity::Quarter] {
                let ours: Vec<Period> = m.periods(g, today).collect();
                let core: Vec<Period> = periods_touched(&r, g, today).collect();
                assert_eq!(ours, core);
            }
        }
    }
}
