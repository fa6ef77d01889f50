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
//! Format version 1: `[version u8 = 1]` then entries `[slot u32 LE][len u16 LE][record bytes]`.

use crate::AgentError;

/// The segment format written by [`SegmentBuilder`].
pub const SEGMENT_VERSION: u8 = 1;
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

/// The sled key of segment `seg` (big-endian, so sled iterates in id order).
pub fn segment_key(seg: u32) -> [u8; 8] {
    u64::from(seg).to_be_bytes()
}

/// The segment id in a sled key.
pub fn segment_id(key: &[u8]) -> Result<u32, AgentError> {
    let a: [u8; 8] = key
        .try_into()
        .map_err(|_| AgentError::Corrupt("a segment key has the wrong length".into()))?;
    u32::try_from(u64::from_be_bytes(a))
        .map_err(|_| AgentError::Corrupt("a segment id out of range".into()))
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
    pub fn push(&mut self, record: &[u8]) -> Option<u32> {
        if self.next_slot >= MAX_SEGMENT_RECORDS {
            return None;
        }
        let slot = self.next_slot;
        self.put(slot, record);
        self.next_slot += 1;
        Some(slot)
    }

    /// Appends a record under a given slot (compaction keeps slot numbers).
    pub fn put(&mut self, slot: u32, record: &[u8]) {
        // Records are at most a few hundred bytes (PseudonymRecord::encode).
        let len = u16::try_from(record.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&slot.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
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

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u32, &'a [u8]), AgentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let truncated = || AgentError::Corrupt("a truncated segment".into());
        let Some((head, rest)) = self.0.split_first_chunk::<6>() else {
            self.0 = &[];
            return Some(Err(truncated()));
        };
        let slot = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::from(u16::from_le_bytes([head[4], head[5]]));
        if rest.len() < len {
            self.0 = &[];
            return Some(Err(truncated()));
        }
        let (record, rest) = rest.split_at(len);
        self.0 = rest;
        Some(Ok((slot, record)))
    }
}

/// The record in `slot` of stored segment bytes.
pub fn find(bytes: &[u8], slot: u32) -> Result<Option<&[u8]>, AgentError> {
    for e in entries(bytes)? {
        let (s, record) = e?;
        if s == slot {
            return Ok(Some(record));
        }
        if s > slot {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_slots_and_bytes() {
        let mut b = SegmentBuilder::new();
        assert_eq!(b.push(b"first"), Some(0));
        assert_eq!(b.push(b""), Some(1));
        assert_eq!(b.push(b"third"), Some(2));
        assert_eq!(b.get(2), Some(&b"third"[..]));
        let bytes = b.into_bytes();
        let all: Vec<(u32, Vec<u8>)> = entries(&bytes)
            .unwrap()
            .map(|e| e.map(|(s, r)| (s, r.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            all,
            vec![(0, b"first".to_vec()), (1, vec![]), (2, b"third".to_vec())]
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
        b.push(b"abcdef");
        let bytes = b.into_bytes();
        // A lone version byte is a valid empty segment; every other cut is not.
        for cut in 2..bytes.len() {
            let r: Result<Vec<_>, _> = entries(&bytes[..cut]).unwrap().collect();
            assert!(r.is_err(), "cut at {cut}");
        }
        assert_eq!(segment_id(&segment_key(77)).unwrap(), 77);
        assert!(segment_id(&[1, 2]).is_err());
    }
}
