//! Pseudonymisation: the second step of the data flow, replacing a
//! [`crate::validate::ValidRecord`]'s identifiers with keyed hashes
//! (HMAC-SHA256) before anything is stored.
//!
//! One secret per site (a Kubernetes Secret) is stretched with HKDF-SHA256
//! into one key per purpose (person, record, neighbourhood, fingerprint), so a
//! person pseudonym can never be taken for a record pseudonym even when both
//! hash the same local case id. Inputs are also domain-separated (an NHS
//! number and a local case id that happen to be the same string give
//! different person pseudonyms).
//!
//! Key ids let a site rotate keys: the [`KeyRing`]'s newest key writes, older
//! keys are only used to match records written before the rotation.
//!
//! Performance: HMAC key setup costs two SHA-256 compressions (the inner and
//! outer padded keys). [`Pseudonymiser`] does it once per purpose and clones
//! the keyed state for each call, so a pseudonym costs the two compressions
//! of the message and nothing else.

use crate::validate::PersonId;
use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_BYTES: usize = 32;
/// HKDF salt: versions the whole derivation, so a future scheme cannot collide with this one.
const HKDF_SALT: &[u8] = b"lacnet.pseudonym.v1";
/// What the fingerprint key is applied to.
const FINGERPRINT_MESSAGE: &[u8] = b"lacnet.fingerprint.v1";
/// Bytes of the fingerprint shown (as hex): enough to tell keys apart, short enough to read out.
const FINGERPRINT_BYTES: usize = 16;

/// Why a key or key ring was refused. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("the pseudonymisation secret must be at least {min} bytes, got {got}")]
    SecretTooShort {
        /// Bytes required.
        min: usize,
        /// Bytes given.
        got: usize,
    },
    /// A key id is not 1 to 32 of `A-Z a-z 0-9 . _ -`.
    #[error("a key id must be 1 to 32 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidKeyId,
    /// A key ring needs at least one key.
    #[error("the key ring has no keys")]
    EmptyKeyRing,
    /// Two keys in a ring share an id.
    #[error("key id {0} appears more than once in the key ring")]
    DuplicateKeyId(String),
}

/// A site's pseudonymisation secret. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps secret bytes; refuses fewer than [`MIN_SECRET_BYTES`].
    pub fn new(bytes: Vec<u8>) -> Result<Secret, KeyError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort {
                min: MIN_SECRET_BYTES,
                got: bytes.len(),
            });
        }
        Ok(Secret(bytes))
    }

    /// Reads a secret as stored in a file (e.g. a mounted Kubernetes Secret),
    /// dropping one trailing `\n` or `\r\n` left by editors and `echo`.
    pub fn from_file_contents(bytes: Vec<u8>) -> Result<Secret, KeyError> {
        let mut bytes = Zeroizing::new(bytes);
        let strip = if bytes.ends_with(b"\r\n") {
            2
        } else if bytes.ends_with(b"\n") {
            1
        } else {
            0
        };
        let keep = bytes.len() - strip;
        bytes.truncate(keep);
        // Move the bytes out without leaving a copy behind: `take` leaves an
        // empty Vec in the Zeroizing wrapper, and truncation kept the allocation.
        Secret::new(std::mem::take(&mut *bytes))
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Names a key, so stored records say which key made their pseudonyms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Longest key id, in bytes.
    pub const MAX_LEN: usize = 32;

    /// A key id of 1 to 32 characters from `A-Z a-z 0-9 . _ -`.
    pub fn new(id: &str) -> Result<KeyId, KeyError> {
        let ok = (1..=Self::MAX_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(KeyId(id.to_owned()))
        } else {
            Err(KeyError::InvalidKeyId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A keyed hash of an identifier. Shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(pub [u8; 32]);

impl Pseudonym {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Pseudonym> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = (crate::hex::digit(pair[0])? << 4) | crate::hex::digit(pair[1])?;
        }
        Some(Pseudonym(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str(&crate::hex::encode(bytes))
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// HMAC-SHA256 keyed once: the inner and outer padded keys are already hashed.
fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Finishes a keyed HMAC over the concatenation of `parts`, leaving `state` reusable.
fn mac(state: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    let mut m = state.clone();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Derives the 32-byte key for one purpose.
fn derive(hk: &Hkdf<Sha256>, info: &[u8]) -> HmacSha256 {
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expand cannot fail.
    hk.expand(info, &mut okm[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    keyed(&okm[..])
}

/// Computes every pseudonym for one key.
///
/// Known residual: the `hmac` crate (0.12) offers no zeroize, so the cached
/// keyed HMAC states here (and HKDF's PRK while `new` runs) are not wiped on
/// drop. They are hashes of the derived keys rather than the keys, and the
/// derived key bytes themselves are zeroized.
#[derive(Clone)]
pub struct Pseudonymiser {
    person: HmacSha256,
    record: HmacSha256,
    neighbourhood: HmacSha256,
    fingerprint: String,
}

impl Pseudonymiser {
    /// Derives the purpose keys from `secret`.
    pub fn new(secret: &Secret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.expose());
        let fingerprint_mac = mac(&derive(&hk, b"fingerprint"), &[FINGERPRINT_MESSAGE]);
        let fingerprint = fingerprint_mac[..FINGERPRINT_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Pseudonymiser {
            person: derive(&hk, b"person"),
            record: derive(&hk, b"record"),
            neighbourhood: derive(&hk, b"neighbourhood"),
            fingerprint,
        }
    }

    /// The person pseudonym: links all introductions of one person.
    pub fn person(&self, id: &PersonId) -> Pseudonym {
        // The tag keeps an NHS number and an identical local case id apart;
        // the NUL cannot occur in either (digits only, no control characters).
        Pseudonym(match id {
            PersonId::Nhs(digits) => mac(&self.person, &[b"nhs\0", digits.as_bytes()]),
            PersonId::LocalCase(case) => mac(&self.person, &[b"case\0", case.as_bytes()]),
        })
    }

    /// The record pseudonym: identifies one introduction (for updates).
    pub fn record(&self, local_case_id: &str) -> Pseudonym {
        Pseudonym(mac(&self.record, &[b"case\0", local_case_id.as_bytes()]))
    }

    /// The neighbourhood pseudonym of a ward code (local use only).
    pub fn neighbourhood(&self, ward_code: &str) -> Pseudonym {
        Pseudonym(mac(&self.neighbourhood, &[b"ward\0", ward_code.as_bytes()]))
    }

    /// Hex of a keyed check value: two parties holding the same secret see the
    /// same fingerprint, and the fingerprint reveals nothing about the secret.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A site's keys, newest first: the first writes, the others only match.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<(KeyId, Pseudonymiser)>,
}

impl KeyRing {
    /// Builds a ring from keys listed newest first; refuses an empty list and repeated ids.
    pub fn new(keys: Vec<(KeyId, Secret)>) -> Result<KeyRing, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::EmptyKeyRing);
        }
        let mut out: Vec<(KeyId, Pseudonymiser)> = Vec::with_capacity(keys.len());
        for (id, secret) in keys {
            if out.iter().any(|(seen, _)| *seen == id) {
                return Err(KeyError::DuplicateKeyId(id.0));
            }
            let p = Pseudonymiser::new(&secret);
            out.push((id, p));
        }
        Ok(KeyRing { keys: out })
    }

    /// The newest key, used for everything written now.
    pub fn active(&self) -> (&KeyId, &Pseudonymiser) {
        let (id, p) = &self.keys[0];
        (id, p)
    }

    /// The key with this id, if the ring holds it.
    pub fn get(&self, id: &KeyId) -> Option<&Pseudonymiser> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, p)| p)
    }

    /// Every key, newest first.
    pub fn iter(&self) -> impl Iterator<Item = (&KeyId, &Pseudonymiser)> {
        self.keys.iter().map(|(k, p)| (k, p))
    }

    /// Number of keys (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring cannot be empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
        mac(&keyed(key), &[data])
    }

    fn unhex(s: &str) -> Vec<u8> {
        crate::hex::decode(s).unwrap()
    }

    use crate::hex::encode as hex;

    fn secret(fill: u8) -> Secret {
        Secret::new(vec![fill; 32]).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (
                unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hex(&hmac_sha256(&key, &data)), want);
            // The cached state is reusable: a second call gives the same answer.
            let state = keyed(&key);
            assert_eq!(
                mac(&state, &[&data]),
                mac(&state, &[&data[..3], &data[3..]])
            );
        }
    }

    #[test]
    fn short_secrets_are_refused_and_file_newlines_are_stripped_once() {
        assert_eq!(
            Secret::new(vec![7; 31]).unwrap_err(),
            KeyError::SecretTooShort { min: 32, got: 31 }
        );
        assert!(Secret::new(vec![7; 32]).is_ok());
        let mut text = vec![b'k'; 32];
        text.extend_from_slice(b"\r\n");
        assert_eq!(
            Secret::from_file_contents(text).unwrap().expose(),
            &[b'k'; 32][..]
        );
        let mut two = vec![b'k'; 32];
        two.extend_from_slice(b"\n\n");
        assert_eq!(Secret::from_file_contents(two).unwrap().expose().len(), 33);
        let mut short = vec![b'k'; 31];
        short.push(b'\n');
        assert!(matches!(
            Secret::from_file_contents(short),
            Err(KeyError::SecretTooShort { got: 31, .. })
        ));
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let s = Secret::new(b"super-secret-value-0123456789abcdef".to_vec()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let p = Pseudonymiser::new(&s);
        let shown = format!("{p:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains(&p.fingerprint()));
        let ring = KeyRing::new(vec![(KeyId::new("k1").unwrap(), s)]).unwrap();
        assert!(!format!("{ring:?}").contains("super-secret"));
    }

    #[test]
    fn key_ids_and_rings_are_checked() {
        assert!(KeyId::new("2025-01.site_a").is_ok());
        assert_eq!(KeyId::new("").unwrap_err(), KeyError::InvalidKeyId);
        assert_eq!(
            KeyId::new(&"a".repeat(33)).unwrap_err(),
            KeyError::InvalidKeyId
        );
        assert_eq!(KeyId::new("has space").unwrap_err(), KeyError::InvalidKeyId);
        assert_eq!(KeyId::new("k/1").unwrap_err(), KeyError::InvalidKeyId);
        assert_eq!(KeyId::new("k1").unwrap().to_string(), "k1");
        assert_eq!(KeyRing::new(vec![]).unwrap_err(), KeyError::EmptyKeyRing);
        let id = KeyId::new("k1").unwrap();
        assert_eq!(
            KeyRing::new(vec![(id.clone(), secret(1)), (id, secret(2))]).unwrap_err(),
            KeyError::DuplicateKeyId("k1".into())
        );
        let ring = KeyRing::new(vec![
            (KeyId::new("new").unwrap(), secret(1)),
            (KeyId::new("old").unwrap(), secret(2)),
        ])
        .unwrap();
        assert_eq!(ring.len(), 2);
        assert!(!ring.is_empty());
        let old = ring.get(&KeyId::new("old").unwrap()).unwrap();
        assert_eq!(
            old.fingerprint(),
            Pseudonymiser::new(&secret(2)).fingerprint()
        );
        assert!(ring.get(&KeyId::new("gone").unwrap()).is_none());
        assert_eq!(
            ring.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["new", "old"]
        );
    }

    #[test]
    fn purposes_and_identifier_kinds_are_separated() {
        let p = Pseudonymiser::new(&secret(9));
        let same = "9434765919";
        let nhs = p.person(&PersonId::Nhs(same.into()));
        let case = p.person(&PersonId::LocalCase(same.into()));
        assert_ne!(nhs, case);
        assert_ne!(p.record(same), case);
        assert_ne!(p.record(same), nhs);
        assert_ne!(p.neighbourhood(same), p.record(same));
        // Fixed vectors (checked independently with Python's hmac/hashlib
        // HKDF), so an accidental change to the derivation shows up: it would
        // orphan every stored record.
        let fixed = p.person(&PersonId::Nhs(same.into()));
        assert_eq!(
            fixed.to_string(),
            "565a4f759a93fc922e91d7ed10f3a22c25c937da423d699910aadce0eab272fe"
        );
        assert_eq!(p.fingerprint(), "2c200f9cefc8a74a635b0d07986dadcd");
        assert_eq!(Pseudonym::from_hex(&fixed.to_string()), Some(fixed));
        assert_eq!(p.fingerprint().len(), 2 * FINGERPRINT_BYTES);
        assert_ne!(
            p.fingerprint(),
            Pseudonymiser::new(&secret(8)).fingerprint()
        );
    }

    #[test]
    fn pseudonym_hex_round_trips_and_refuses_junk() {
        let x = Pseudonym([0xab; 32]);
        assert_eq!(x.to_string(), "ab".repeat(32));
        assert_eq!(format!("{x:?}"), "ab".repeat(32));
        assert_eq!(Pseudonym::from_hex(&"AB".repeat(32)), Some(x));
        assert_eq!(Pseudonym::from_hex(&"ab".repeat(31)), None);
        assert_eq!(Pseudonym::from_hex(&"zz".repeat(32)), None);
        assert_eq!(Pseudonym::from_hex(&"é".repeat(32)), None);
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    proptest! {
        #[test]
        fn pseudonyms_are_deterministic(s in proptest::collection::vec(any::<u8>(), 32..64), id in "\\PC{1,64}") {
            let a = Pseudonymiser::new(&Secret::new(s.clone()).unwrap());
            let b = Pseudonymiser::new(&Secret::new(s).unwrap());
            prop_assert_eq!(a.person(&PersonId::LocalCase(id.clone())), b.person(&PersonId::LocalCase(id.clone())));
            prop_assert_eq!(a.record(&id), b.record(&id));
            prop_assert_eq!(a.neighbourhood(&id), b.neighbourhood(&id));
            prop_assert_eq!(a.fingerprint(), b.fingerprint());
        }

        #[test]
        fn different_secrets_give_different_pseudonyms(
            s1 in proptest::collection::vec(any::<u8>(), 32..48),
            s2 in proptest::collection::vec(any::<u8>(), 32..48),
            id in "[0-9]{10}",
        ) {
            prop_assume!(s1 != s2);
            let a = Pseudonymiser::new(&Secret::new(s1).unwrap());
            let b = Pseudonymiser::new(&Secret::new(s2).unwrap());
            prop_assert_ne!(a.person(&PersonId::Nhs(id.clone())), b.person(&PersonId::Nhs(id.clone())));
            prop_assert_ne!(a.record(&id), b.record(&id));
            prop_assert_ne!(a.fingerprint(), b.fingerprint());
        }

        #[test]
        fn output_never_contains_the_input(id in "\\PC{4,64}", nhs in "[0-9]{10}") {
            let p = Pseudonymiser::new(&secret(3));
            let outputs = [
                (id.as_str(), p.record(&id)),
                (id.as_str(), p.person(&PersonId::LocalCase(id.clone()))),
                (id.as_str(), p.neighbourhood(&id)),
                (nhs.as_str(), p.person(&PersonId::Nhs(nhs.clone()))),
            ];
            for (input, out) in outputs {
                let raw = input.as_bytes();
                let out_hex = out.to_string();
                // Raw bytes, and the input's hex inside the output's hex: >= 4 bytes
                // means a chance match is below 1e-8.
                prop_assert!(!contains(&out.0, raw));
                prop_assert!(!out_hex.contains(&hex(raw)));
                // The input as text inside the hex: a 4-character input made of
                // hex letters would match by chance about once in a thousand, so
                // this check needs 8 bytes to stay meaningful without flaking.
                if raw.len() >= 8 {
                    prop_assert!(!out_hex.contains(input));
                }
            }
        }

        #[test]
        fn the_active_key_is_the_first(n in 1usize..5) {
            let keys = (0..n)
                .map(|i| (KeyId::new(&format!("k{i}")).unwrap(), secret(i as u8)))
                .collect();
            let ring = KeyRing::new(keys).unwrap();
            let (id, p) = ring.active();
            prop_assert_eq!(id.as_str(), "k0");
            prop_assert_eq!(p.fingerprint(), Pseudonymiser::new(&secret(0)).fingerprint());
            prop_assert_eq!(ring.len(), n);
        }
    }
}
