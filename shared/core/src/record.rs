//! The pseudonymised record: the only form of a record a site stores, and
//! the input to [`crate::aggregate`].
//!
//! [`ValidRecord::pseudonymise`] makes one from a validated record; it keeps
//! the age band, never the age, and pseudonyms, never identifiers. The
//! record's [`CaseFacts`] pass across unchanged: the two records differ only
//! in how they name the person, the introduction and the ward.
//! [`PseudonymRecord::encode`] gives the compact, versioned bytes the site
//! agent writes to storage, and [`PseudonymRecord::decode`] refuses anything
//! it did not write.
//!
//! Format version 1, little-endian:
//!
//! | bytes | field |
//! |-------|-------|
//! | 1  | version (1) |
//! | 32 | record pseudonym |
//! | 32 | person pseudonym |
//! | 1 + n | key id length, key id |
//! | 4  | introduced_on (days since 1970-01-01, i32) |
//! | 1  | flags: bit 0 closed, bit 1 neighbourhood |
//! | 4  | closed_on (only when bit 0 is set) |
//! | 1 × 4 | support level, age band, primary need, source (proto codes) |
//! | 2  | outcome bits |
//! | 32 | neighbourhood pseudonym (only when bit 1 is set) |
//!
//! Format version 2 is version 1 with two additions, written only when the
//! record has a dated outcome or a last contact (so records without them keep
//! their version 1 bytes, and a re-send stays "unchanged"):
//!
//! - flags bit 2: a last contact date (4 bytes) follows the closure date;
//! - after the outcome bits, 4 bytes per outcome in the set, in outcome
//!   order: the day it was achieved, or `i32::MIN` when undated.
use crate::date::Date;
use crate::pseudonym::{KeyId, Pseudonym, Pseudonymiser};
use crate::validate::ValidRecord;
use crate::vocab::{
    AgeBand, IntroductionSource, NO_OUTCOME_DATES, Outcome, OutcomeDates, OutcomeSet, PrimaryNeed,
    SupportLevel,
};

/// The storage format version written by [`PseudonymRecord::encode`] for a
/// record with no outcome dates and no last contact.
pub const FORMAT_VERSION: u8 = 1;
/// The version written when a record has an outcome date or a last contact.
pub const FORMAT_VERSION_DATED: u8 = 2;
const FLAG_CLOSED: u8 = 1;
const FLAG_NEIGHBOURHOOD: u8 = 2;
const FLAG_LAST_CONTACT: u8 = 4;
/// An outcome without a date, in version 2.
const UNDATED: i32 = i32::MIN;
/// 0001-01-01 and 9999-12-31 in storage form: the range [`Date`] allows.
const MIN_STORED_DAY: i32 = -719_162;
const MAX_STORED_DAY: i32 = 2_932_896;

/// What a record says about the case, apart from who it is about: the part
/// that passes unchanged from the validated record to the pseudonymised one,
/// and the only part aggregation reads besides the person pseudonym. Nothing
/// here identifies anyone, which is why its `Debug` is derived while the
/// validated record's is written by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseFacts {
    /// Date of introduction.
    pub introduced_on: Date,
    /// Date of closure, if closed.
    pub closed_on: Option<Date>,
    /// Support level.
    pub support_level: SupportLevel,
    /// Age band at introduction (validation drops the exact age).
    pub age_band: AgeBand,
    /// Primary need.
    pub primary_need: PrimaryNeed,
    /// Who introduced the person.
    pub source: IntroductionSource,
    /// Outcomes recorded so far.
    pub outcomes: OutcomeSet,
    /// The day each outcome was achieved, by [`Outcome::index`]; `None` for
    /// an undated outcome (see [`Self::achieved_on`]) or one not in `outcomes`.
    pub outcome_dates: OutcomeDates,
    /// The last contact with the person, if the council records it.
    pub last_contact_on: Option<Date>,
}

/// A record with its identifiers replaced by pseudonyms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PseudonymRecord {
    /// Identifies the introduction (from the local case id).
    pub record: Pseudonym,
    /// Identifies the person (from the NHS number, else the local case id).
    pub person: Pseudonym,
    /// The key that made the pseudonyms.
    pub key_id: KeyId,
    /// The case itself, as validated.
    pub facts: CaseFacts,
    /// Pseudonymised ward, for local use only (never sent to the hub).
    pub neighbourhood: Option<Pseudonym>,
}

/// Why stored bytes were not a [`PseudonymRecord`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first byte is not a format version this code reads.
    #[error("unsupported record format version {0}")]
    Version(u8),
    /// The bytes end before the record does.
    #[error("record is truncated")]
    Truncated,
    /// Bytes remain after the record.
    #[error("record has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The key id is not a valid key id.
    #[error("record has an invalid key id")]
    KeyId,
    /// A flag bit this version does not define is set.
    #[error("record has unknown flags {0:#04x}")]
    Flags(u8),
    /// A date is outside the years 1 to 9999, or the closure precedes the introduction.
    #[error("record has an invalid {0}")]
    Date(&'static str),
    /// An enum code or outcome bit is unknown.
    #[error("record has an unknown {0} code")]
    UnknownCode(&'static str),
}

impl ValidRecord {
    /// Replaces identifiers with pseudonyms made by `p`, whose key is `key_id`.
    pub fn pseudonymise(&self, key_id: &KeyId, p: &Pseudonymiser) -> PseudonymRecord {
        PseudonymRecord {
            record: p.record(&self.local_case_id),
            person: p.person(&self.person),
            key_id: key_id.clone(),
            facts: self.facts,
            neighbourhood: self.ward_code.as_deref().map(|w| p.neighbourhood(w)),
        }
    }
}

impl CaseFacts {
    /// The day `outcome` counts as achieved, if the record has it.
    ///
    /// An outcome sent without a date (the older, undated `outcomes` field)
    /// is dated to the introduction: the one day every version of the record
    /// agrees on (a later closure or contact date would move it between
    /// periods on each update), and the earliest day it can have happened.
    /// It therefore counts once, in the period of the introduction.
    pub fn achieved_on(&self, outcome: Outcome) -> Option<Date> {
        self.outcomes
            .contains(outcome)
            .then(|| self.outcome_dates[outcome.index()].unwrap_or(self.introduced_on))
    }

    /// The last day anything is known to have happened on the record: its
    /// introduction, last contact or latest outcome. An open record with no
    /// sign of life for the site's inactivity limit after this day stops
    /// counting as active (see [`crate::aggregate`]).
    pub fn last_seen(&self) -> Date {
        let mut last = self.introduced_on;
        if let Some(c) = self.last_contact_on {
            last = last.max(c);
        }
        for o in self.outcomes.iter() {
            if let Some(d) = self.achieved_on(o) {
                last = last.max(d);
            }
        }
        last
    }

    fn has_dates(&self) -> bool {
        self.last_contact_on.is_some()
            || self
                .outcomes
                .iter()
                .any(|o| self.outcome_dates[o.index()].is_some())
    }
}

impl PseudonymRecord {
    /// Compact storage bytes (format version 1, or 2 with dates; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let key = self.key_id.as_str().as_bytes();
        let facts = &self.facts;
        let dated = facts.has_dates();
        let mut out = Vec::with_capacity(1 + 32 + 32 + 1 + key.len() + 4 + 1 + 8 + 4 + 2 + 36 + 32);
        out.push(if dated {
            FORMAT_VERSION_DATED
        } else {
            FORMAT_VERSION
        });
        out.extend_from_slice(&self.record.0);
        out.extend_from_slice(&self.person.0);
        // KeyId guarantees 1..=32 bytes, so the length fits a byte.
        out.push(key.len() as u8);
        out.extend_from_slice(key);
        out.extend_from_slice(&facts.introduced_on.to_storage().to_le_bytes());
        let flags = if facts.closed_on.is_some() {
            FLAG_CLOSED
        } else {
            0
        } | if self.neighbourhood.is_some() {
            FLAG_NEIGHBOURHOOD
        } else {
            0
        } | if facts.last_contact_on.is_some() {
            FLAG_LAST_CONTACT
        } else {
            0
        };
        out.push(flags);
        if let Some(c) = facts.closed_on {
            out.extend_from_slice(&c.to_storage().to_le_bytes());
        }
        if let Some(c) = facts.last_contact_on {
            out.extend_from_slice(&c.to_storage().to_le_bytes());
        }
        // Enum codes are 1..=10: they fit a byte.
        out.push(facts.support_level.code() as u8);
        out.push(facts.age_band.code() as u8);
        out.push(facts.primary_need.code() as u8);
        out.push(facts.source.code() as u8);
        out.extend_from_slice(&facts.outcomes.bits().to_le_bytes());
        if dated {
            for o in facts.outcomes.iter() {
                let day = facts.outcome_dates[o.index()].map_or(UNDATED, Date::to_storage);
                out.extend_from_slice(&day.to_le_bytes());
            }
        }
        if let Some(n) = self.neighbourhood {
            out.extend_from_slice(&n.0);
        }
        out
    }

    /// Reads bytes written by [`Self::encode`]; refuses anything else.
    pub fn decode(bytes: &[u8]) -> Result<PseudonymRecord, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_DATED {
            return Err(DecodeError::Version(version));
        }
        let dated = version == FORMAT_VERSION_DATED;
        let record = r.pseudonym()?;
        let person = r.pseudonym()?;
        let key_len = usize::from(r.u8()?);
        let key = std::str::from_utf8(r.take(key_len)?).map_err(|_| DecodeError::KeyId)?;
        let key_id = KeyId::new(key).map_err(|_| DecodeError::KeyId)?;
        let introduced_on = r.date("introduction date")?;
        let flags = r.u8()?;
        let known = if dated {
            FLAG_CLOSED | FLAG_NEIGHBOURHOOD | FLAG_LAST_CONTACT
        } else {
            FLAG_CLOSED | FLAG_NEIGHBOURHOOD
        };
        if flags & !known != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let closed_on = if flags & FLAG_CLOSED != 0 {
            Some(r.date("closure date")?)
        } else {
            None
        };
        if closed_on.is_some_and(|c| c < introduced_on) {
            return Err(DecodeError::Date("closure date"));
        }
        let last_contact_on = if flags & FLAG_LAST_CONTACT != 0 {
            Some(r.date("last contact date")?)
        } else {
            None
        };
        let support_level =
            SupportLevel::from_code(r.code()?).ok_or(DecodeError::UnknownCode("support level"))?;
        let age_band = AgeBand::from_code(r.code()?).ok_or(DecodeError::UnknownCode("age band"))?;
        let primary_need =
            PrimaryNeed::from_code(r.code()?).ok_or(DecodeError::UnknownCode("primary need"))?;
        let source =
            IntroductionSource::from_code(r.code()?).ok_or(DecodeError::UnknownCode("source"))?;
        let outcome_bits = u16::from_le_bytes(r.array()?);
        let outcomes =
            OutcomeSet::from_bits(outcome_bits).ok_or(DecodeError::UnknownCode("outcome"))?;
        let mut outcome_dates = NO_OUTCOME_DATES;
        if dated {
            for o in outcomes.iter() {
                let day = i32::from_le_bytes(r.array()?);
                if day != UNDATED {
                    if !(MIN_STORED_DAY..=MAX_STORED_DAY).contains(&day) {
                        return Err(DecodeError::Date("outcome date"));
                    }
                    outcome_dates[o.index()] = Some(Date::from_storage(day));
                }
            }
        }
        let neighbourhood = if flags & FLAG_NEIGHBOURHOOD != 0 {
            Some(r.pseudonym()?)
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes(r.0.len()));
        }
        Ok(PseudonymRecord {
            record,
            person,
            key_id,
            facts: CaseFacts {
                introduced_on,
                closed_on,
                support_level,
                age_band,
                primary_need,
                source,
                outcomes,
                outcome_dates,
                last_contact_on,
            },
            neighbourhood,
        })
    }
}

/// A cursor over the bytes still to read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn code(&mut self) -> Result<i32, DecodeError> {
        self.u8().map(i32::from)
    }

    fn pseudonym(&mut self) -> Result<Pseudonym, DecodeError> {
        self.array().map(Pseudonym)
    }

    fn date(&mut self, what: &'static str) -> Result<Date, DecodeError> {
        let days = i32::from_le_bytes(self.array()?);
        if !(MIN_STORED_DAY..=MAX_STORED_DAY).contains(&days) {
            return Err(DecodeError::Date(what));
        }
        Ok(Date::from_storage(days))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::Secret;
    use crate::validate::{AgeInput, RecordInput, validate};
    use crate::vocab::Outcome;
    use proptest::prelude::*;

    fn sample() -> PseudonymRecord {
        PseudonymRecord {
            record: Pseudonym([1; 32]),
            person: Pseudonym([2; 32]),
            key_id: KeyId::new("k-2025.1").unwrap(),
            facts: CaseFacts {
                introduced_on: Date::parse("2025-01-15").unwrap(),
                closed_on: Some(Date::parse("2025-03-01").unwrap()),
                support_level: SupportLevel::Level2,
                age_band: AgeBand::From85,
                primary_need: PrimaryNeed::Other,
                source: IntroductionSource::Other,
                outcomes: OutcomeSet::from_bits(0b1_0000_0101).unwrap(),
                outcome_dates: NO_OUTCOME_DATES,
                last_contact_on: None,
            },
            neighbourhood: Some(Pseudonym([3; 32])),
        }
    }

    #[test]
    fn stored_day_bounds_match_the_date_range() {
        assert_eq!(
            Date::parse("0001-01-01").unwrap().to_storage(),
            MIN_STORED_DAY
        );
        assert_eq!(
            Date::parse("9999-12-31").unwrap().to_storage(),
            MAX_STORED_DAY
        );
    }

    #[test]
    fn round_trips_with_and_without_optional_fields() {
        let full = sample();
        let bytes = full.encode();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(bytes.len(), 1 + 32 + 32 + 1 + 8 + 4 + 1 + 4 + 4 + 2 + 32);
        assert_eq!(PseudonymRecord::decode(&bytes), Ok(full.clone()));
        let bare = PseudonymRecord {
            facts: CaseFacts {
                closed_on: None,
                outcomes: OutcomeSet::EMPTY,
                ..full.facts
            },
            neighbourhood: None,
            ..full
        };
        assert_eq!(PseudonymRecord::decode(&bare.encode()), Ok(bare));
    }

    #[test]
    fn truncated_garbage_and_unknown_values_are_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert_eq!(
                PseudonymRecord::decode(&bytes[..n]),
                Err(DecodeError::Truncated),
                "length {n}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            PseudonymRecord::decode(&long),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut v2 = bytes.clone();
        v2[0] = 3;
        assert_eq!(PseudonymRecord::decode(&v2), Err(DecodeError::Version(3)));

        // Offsets: 1 version + 64 pseudonyms + 1 + 8 key id = 74, then the
        // introduction date (4), flags (1), closure (4), then the enum codes.
        let key_len = 65;
        let mut bad_key = bytes.clone();
        bad_key[key_len + 1] = b'/';
        assert_eq!(PseudonymRecord::decode(&bad_key), Err(DecodeError::KeyId));
        let mut zero_key = bytes.clone();
        zero_key[key_len] = 0;
        assert!(PseudonymRecord::decode(&zero_key).is_err());
        let flags = 74 + 4;
        let mut bad_flags = bytes.clone();
        bad_flags[flags] |= 4;
        assert_eq!(
            PseudonymRecord::decode(&bad_flags),
            Err(DecodeError::Flags(7))
        );
        let codes = flags + 1 + 4;
        for (i, what) in ["support level", "age band", "primary need", "source"]
            .into_iter()
            .enumerate()
        {
            for bad in [0u8, 11, 255] {
                let mut b = bytes.clone();
                b[codes + i] = bad;
                assert_eq!(
                    PseudonymRecord::decode(&b),
                    Err(DecodeError::UnknownCode(what))
                );
            }
        }
        let mut bad_outcome = bytes.clone();
        bad_outcome[codes + 5] = 0x80;
        assert_eq!(
            PseudonymRecord::decode(&bad_outcome),
            Err(DecodeError::UnknownCode("outcome"))
        );
        let mut bad_date = bytes.clone();
        bad_date[74..78].copy_from_slice(&i32::MAX.to_le_bytes());
        assert_eq!(
            PseudonymRecord::decode(&bad_date),
            Err(DecodeError::Date("introduction date"))
        );
        let mut backwards = bytes.clone();
        backwards[flags + 1..flags + 5].copy_from_slice(&0i32.to_le_bytes());
        assert_eq!(
            PseudonymRecord::decode(&backwards),
            Err(DecodeError::Date("closure date"))
        );
    }

    #[test]
    fn pseudonymise_keeps_the_band_and_drops_identifiers() {
        let input = RecordInput {
            local_case_id: "CASE-77".into(),
            nhs_number: Some("9434765919".into()),
            introduced_on: "2025-02-03".into(),
            closed_on: None,
            support_level: 1,
            age: Some(AgeInput::Years(40)),
            primary_need: 2,
            introduction_source: 1,
            outcomes: vec![9],
            ward_code: Some("W05000999".into()),
            dated_outcomes: vec![],
            last_contact_on: None,
        };
        let valid = validate(&input, Date::parse("2025-06-01").unwrap()).unwrap();
        let p = Pseudonymiser::new(&Secret::new(vec![5; 32]).unwrap());
        let key = KeyId::new("k1").unwrap();
        let r = valid.pseudonymise(&key, &p);
        assert_eq!(r.record, p.record("CASE-77"));
        assert_eq!(r.person, p.person(&valid.person));
        assert_eq!(r.neighbourhood, Some(p.neighbourhood("W05000999")));
        assert_eq!(r.facts.age_band, AgeBand::From35To44);
        assert!(r.facts.outcomes.contains(Outcome::CarerSupported));
        let bytes = r.encode();
        for raw in [&b"CASE-77"[..], b"9434765919", b"W05000999"] {
            assert!(!bytes.windows(raw.len()).any(|w| w == raw));
        }
        assert_eq!(PseudonymRecord::decode(&bytes), Ok(r));
    }

    #[test]
    fn dated_outcomes_and_last_contact_round_trip_in_version_2() {
        let mut r = sample();
        assert_eq!(r.encode()[0], FORMAT_VERSION, "no dates: version 1 bytes");
        // Undated outcomes count from the introduction.
        assert_eq!(
            r.facts.achieved_on(Outcome::CrisisAvoided),
            Some(r.facts.introduced_on)
        );
        assert_eq!(r.facts.achieved_on(Outcome::CommunityConnection), None);
        assert_eq!(r.facts.last_seen(), r.facts.introduced_on);
        let feb = Date::parse("2025-02-20").unwrap();
        r.facts.outcome_dates[Outcome::CrisisAvoided.index()] = Some(feb);
        r.facts.last_contact_on = Some(Date::parse("2025-02-10").unwrap());
        let bytes = r.encode();
        assert_eq!(bytes[0], FORMAT_VERSION_DATED);
        let back = PseudonymRecord::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.facts.achieved_on(Outcome::CrisisAvoided), Some(feb));
        // The other outcome in the set stays undated.
        assert_eq!(
            back.facts.achieved_on(Outcome::Volunteering),
            Some(r.facts.introduced_on)
        );
        assert_eq!(back.facts.last_seen(), feb);
        // Version 1 never carries the last-contact flag.
        let mut v1 = sample().encode();
        v1[74 + 4] |= FLAG_LAST_CONTACT;
        assert!(matches!(
            PseudonymRecord::decode(&v1),
            Err(DecodeError::Flags(_))
        ));
        for n in 0..bytes.len() {
            assert!(PseudonymRecord::decode(&bytes[..n]).is_err(), "length {n}");
        }
    }

    /// Bytes already on sites' disks: these must decode, and encoding must
    /// not drift from them, whatever the in-memory shape of the record.
    #[test]
    fn encoding_is_pinned_to_known_bytes() {
        let ones = "01".repeat(32);
        let twos = "02".repeat(32);
        let threes = "03".repeat(32);
        let v1 = [
            "01",                 // version
            &ones,                // record pseudonym
            &twos,                // person pseudonym
            "086b2d323032352e31", // key id "k-2025.1"
            "874e0000",           // introduced 2025-01-15
            "03",                 // flags: closed, neighbourhood
            "b44e0000",           // closed 2025-03-01
            "02090a09",           // support level, age band, primary need, source
            "0501",               // outcome bits
            &threes,              // neighbourhood
        ]
        .concat();
        let v2 = [
            "02",
            &ones,
            &twos,
            "086b2d323032352e31",
            "874e0000",
            "05",       // flags: closed, last contact
            "b44e0000", // closed 2025-03-01
            "a14e0000", // last contact 2025-02-10
            "02090a09",
            "0501",
            "ab4e0000", // first outcome achieved 2025-02-20
            "00000080", // the other two undated
            "00000080",
        ]
        .concat();

        let undated = sample();
        let mut dated = sample();
        dated.facts.outcome_dates[Outcome::CrisisAvoided.index()] =
            Some(Date::parse("2025-02-20").unwrap());
        dated.facts.last_contact_on = Some(Date::parse("2025-02-10").unwrap());
        dated.neighbourhood = None;
        for (r, hex) in [(undated, v1), (dated, v2)] {
            assert_eq!(crate::hex::encode(&r.encode()), hex);
            let bytes = crate::hex::decode(&hex).unwrap();
            assert_eq!(PseudonymRecord::decode(&bytes), Ok(r));
        }
    }

    fn pick<T: Copy + std::fmt::Debug>(all: &'static [T]) -> impl Strategy<Value = T> {
        proptest::sample::select(all)
    }

    fn arb_record() -> impl Strategy<Value = PseudonymRecord> {
        (
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                "[A-Za-z0-9._-]{1,32}",
                MIN_STORED_DAY..=MAX_STORED_DAY,
            ),
            proptest::option::of(0i32..5000),
            (
                pick(SupportLevel::ALL),
                pick(AgeBand::ALL),
                pick(PrimaryNeed::ALL),
                pick(IntroductionSource::ALL),
            ),
            (
                0u16..512,
                proptest::collection::vec(proptest::option::of(0i32..4000), 9),
                proptest::option::of(0i32..4000),
            ),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(
                    (rec, per, key, intro),
                    closed_after,
                    (sl, ab, pn, src),
                    (bits, days, contact),
                    nb,
                )| {
                    let introduced_on = Date::from_storage(intro);
                    let later =
                        |d: i32| Date::from_storage(intro.saturating_add(d).min(MAX_STORED_DAY));
                    let outcomes = OutcomeSet::from_bits(bits).unwrap();
                    let mut outcome_dates = NO_OUTCOME_DATES;
                    for o in outcomes.iter() {
                        outcome_dates[o.index()] = days[o.index()].map(later);
                    }
                    PseudonymRecord {
                        record: Pseudonym(rec),
                        person: Pseudonym(per),
                        key_id: KeyId::new(&key).unwrap(),
                        facts: CaseFacts {
                            introduced_on,
                            closed_on: closed_after.map(|d| {
                                Date::from_storage(intro.saturating_add(d).min(MAX_STORED_DAY))
                            }),
                            support_level: sl,
                            age_band: ab,
                            primary_need: pn,
                            source: src,
                            outcomes,
                            outcome_dates,
                            last_contact_on: contact.map(later),
                        },
                        neighbourhood: nb.map(Pseudonym),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(r in arb_record()) {
            prop_assert_eq!(PseudonymRecord::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PseudonymRecord::decode(&bytes);
        }
    }
}
