//! Segments: how records sit on disk.
//!
//! Records are written in **segments**, one per group commit, under
//! sequential ids in the `segments` tree. Keyed hashes are random by design,
//! and sled inserts of random keys ran at a fifth of the rate of sequential
//! ones here; one insert per group instead of one per record removes the
//! per-record B-tree work altogether (measured in the closing note of the
//! ingest issue and by `benches/ingest.rs`).
//!
//! A record lives at a [`Loc`]: its segment and its slot in that segment.
//! When a record is updated, its new version goes into a newer segment and
//! the old slot is dead; compaction rewrites a segment without its dead
//! slots, keeping the slot numbers of the live ones, so locations never move
//! except by a write of the record itself. On startup the newest copy of
//! each record wins (segments are read in id order), which is what makes it
//! safe to leave a dead copy of the *same* record key behind for a while.
//!
//! Segments are files (`segments/NNNNNNNNNN.seg` in the data directory),
//! written whole to a temporary name, synced and renamed into place, so a
//! crash leaves either the old file or the new one. They are not sled
//! values: sled 0.34 keeps every value it has written resident in memory,
//! whatever its cache size, and the records are most of what the agent stores.
//!
//! Format version 1: `[version u8 = 1]` then entries
//! `[slot u32 LE][len u16 LE][kind u8][replaced record pseudonym, 32 bytes, kind 1 only][record bytes]`.
//! Kind 1 marks a record re-keyed from an older key: a restart that finds
//! the old copy (its segment's rewrite lost in a crash) drops it.

use crate::AgentError;

/// The segment format written by [`SegmentBuilder`].
pub const SEGMENT_VERSION: u8 = 1;
const KIND_PUT: u8 = 0;
const KIND_REPLACES: u8 = 1;

/// Most records in one segment; the slot numbers of one segment are below it.
pub const MAX_SEGMENT_RECORDS: u32 = 1 << 16;

/// Where a record is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    /// Segment id.
    pub seg: u32,
    /// Slot within the segment.
    pub slot: u32,
}

/// Builds one segment's bytes.
#[derive(Debug)]
pub struct SegmentBuilder {
    bytes: Vec<u8>,
    /// Byte offset of each slot's record, for reads of a segment not yet written.
    offsets: Vec<(u32, u32, u16)>,
    next_slot: u32,
    /// Entries that were already stored when the segment was reopened.
    reopened: usize,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        SegmentBuilder::new()
    }
}

impl SegmentBuilder {
    /// An empty segment.
    pub fn new() -> SegmentBuilder {
        SegmentBuilder {
            bytes: vec![SEGMENT_VERSION],
            offsets: Vec::new(),
            next_slot: 0,
            reopened: 0,
        }
    }

    /// Appends a record with the next free slot, and returns that slot; `None` when full.
    /// `replaces` is the record pseudonym it had under an older key, if re-keyed.
    pub fn push(&mut self, record: &[u8], replaces: Option<&[u8; 32]>) -> Option<u32> {
        if self.next_slot >= MAX_SEGMENT_RECORDS {
            return None;
        }
        let slot = self.next_slot;
        self.put_entry(slot, record, replaces);
        self.next_slot += 1;
        Some(slot)
    }

    /// Appends a record under a given slot (compaction keeps slot numbers).
    pub fn put(&mut self, slot: u32, record: &[u8]) {
        self.put_entry(slot, record, None);
    }

    fn put_entry(&mut self, slot: u32, record: &[u8], replaces: Option<&[u8; 32]>) {
        // Records are at most a few hundred bytes (PseudonymRecord::encode).
        let len = u16::try_from(record.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&slot.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        match replaces {
            Some(old) => {
                self.bytes.push(KIND_REPLACES);
                self.bytes.extend_from_slice(old);
            }
            None => self.bytes.push(KIND_PUT),
        }
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&record[..usize::from(len)]);
        self.offsets.push((slot, at, len));
    }

    /// Numbers new records after the highest slot already present (a
    /// segment reopened to append to).
    pub fn continue_after_last(&mut self) {
        self.next_slot = self.offsets.last().map_or(0, |o| o.0.saturating_add(1));
        self.reopened = self.offsets.len();
    }

    /// Whether records were pushed since it was started or reopened.
    pub fn has_new(&self) -> bool {
        self.offsets.len() > self.reopened
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The record in `slot`, if this segment has it.
    pub fn get(&self, slot: u32) -> Option<&[u8]> {
        let i = self.offsets.binary_search_by_key(&slot, |o| o.0).ok()?;
        let (_, at, len) = self.offsets[i];
        self.bytes.get(at as usize..at as usize + usize::from(len))
    }

    /// The bytes to store.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Iterates the `(slot, record bytes)` entries of stored segment bytes.
pub fn entries(bytes: &[u8]) -> Result<Entries<'_>, AgentError> {
    match bytes.first() {
        Some(&SEGMENT_VERSION) => Ok(Entries(&bytes[1..])),
        Some(v) => Err(AgentError::Corrupt(format!(
            "a segment of format version {v}; this agent reads version {SEGMENT_VERSION}"
        ))),
        None => Err(AgentError::Corrupt("an empty segment".into())),
    }
}

/// The entries of one segment, in slot order.
#[derive(Debug, Clone)]
pub struct Entries<'a>(&'a [u8]);

/// One stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its slot.
    pub slot: u32,
    /// The record's bytes.
    pub record: &'a [u8],
    /// The record pseudonym it replaced (a re-key), if any.
    pub replaces: Option<&'a [u8; 32]>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, AgentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let entry = self.read();
        if entry.is_err() {
            self.0 = &[];
        }
        Some(entry)
    }
}

impl<'a> Entries<'a> {
    fn read(&mut self) -> Result<Entry<'a>, AgentError> {
        let truncated = || AgentError::Corrupt("a truncated segment".into());
        let (head, rest) = self.0.split_first_chunk::<7>().ok_or_else(truncated)?;
        let slot = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::from(u16::from_le_bytes([head[4], head[5]]));
        let (replaces, rest) = match head[6] {
            KIND_PUT => (None, rest),
            KIND_REPLACES => {
                let (old, rest) = rest.split_first_chunk::<32>().ok_or_else(truncated)?;
                (Some(old), rest)
            }
            k => return Err(AgentError::Corrupt(format!("a segment entry of kind {k}"))),
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (record, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(Entry {
            slot,
            record,
            replaces,
        })
    }
}

/// The record in `slot` of stored segment bytes.
pub fn find(bytes: &[u8], slot: u32) -> Result<Option<&[u8]>, AgentError> {
    for e in entries(bytes)? {
        let e = e?;
        if e.slot == slot {
            return Ok(Some(e.record));
        }
        if e.slot > slot {
            break;
        }
    }
    Ok(None)
}

/// The file name of segment `seg`.
pub fn file_name(seg: u32) -> String {
    format!("{seg:010}.seg")
}

/// The segment id of a segment file's name; `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_slots_and_bytes() {
        let mut b = SegmentBuilder::new();
        assert_eq!(b.push(b"first", None), Some(0));
        assert_eq!(b.push(b"", Some(&[7; 32])), Some(1));
        assert_eq!(b.push(b"third", None), Some(2));
        assert_eq!(b.get(2), Some(&b"third"[..]));
        let bytes = b.into_bytes();
        let all: Vec<(u32, Vec<u8>, bool)> = entries(&bytes)
            .unwrap()
            .map(|e| e.map(|e| (e.slot, e.record.to_vec(), e.replaces == Some(&[7; 32]))))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            all,
            vec![
                (0, b"first".to_vec(), false),
                (1, vec![], true),
                (2, b"third".to_vec(), false)
            ]
        );
        assert_eq!(find(&bytes, 2).unwrap(), Some(&b"third"[..]));
        assert_eq!(find(&bytes, 3).unwrap(), None);

        // Compaction keeps the slot numbers of what survives.
        let mut c = SegmentBuilder::new();
        c.put(2, b"third");
        let bytes = c.into_bytes();
        assert_eq!(find(&bytes, 2).unwrap(), Some(&b"third"[..]));
        assert_eq!(find(&bytes, 0).unwrap(), None);
    }

    #[test]
    fn corrupt_segments_are_errors_not_panics() {
        assert!(entries(&[]).is_err());
        assert!(entries(&[9]).is_err());
        let mut b = SegmentBuilder::new();
        b.push(b"abcdef", Some(&[1; 32]));
        let bytes = b.into_bytes();
        // A lone version byte is a valid empty segment; every other cut is not.
        for cut in 2..bytes.len() {
            let r: Result<Vec<_>, _> = entries(&bytes[..cut]).unwrap().collect();
            assert!(r.is_err(), "cut at {cut}");
        }
        assert_eq!(parse_file_name(&file_name(77)), Some(77));
        assert_eq!(parse_file_name("0000000077.seg.tmp"), None);
        assert_eq!(parse_file_name("77.seg"), None);
    }
}
