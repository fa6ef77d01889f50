//! The pseudonymisation key file: the one text format that `lacnet keygen`
//! writes and the site agent reads. It lives here, below both, so the CLI
//! makes keys without linking the agent. Text in, text out: reading the file
//! from disk is the agent's job.
//!
//! ```text
//! # comment lines are ignored
//! lacnet-key v1
//! id k2025
//! secret <64 lowercase hex digits: 32 random bytes>
//! ```
//!
//! The `id` must match the id the file is given under. Nothing else is a
//! key: not a passphrase, not raw bytes of any length. The pseudonyms are
//! HMACs of identifiers that anyone can enumerate (NHS numbers, case ids), so
//! their protection is exactly the key's unpredictability; a key a person
//! chose can be guessed offline from one pseudonym, or from the fingerprint.
//! A secret whose bytes are all printable ASCII (a hex-encoded passphrase) or
//! that uses fewer than [`MIN_DISTINCT_BYTES`] distinct byte values is also
//! refused: 32 random bytes do that with probability below 2^-40.
//!
//! Errors name the reason, never the file's content.

use zeroize::Zeroizing;

use crate::pseudonym::{KeyError, Secret};

/// The first line of the versioned key format.
pub const KEY_FILE_MAGIC: &str = "lacnet-key v1";

/// Bytes of secret a key file holds.
pub const SECRET_BYTES: usize = 32;

/// Fewest distinct byte values a secret may use (32 random bytes use about 30).
pub const MIN_DISTINCT_BYTES: usize = 16;

/// Why a file's text is not a usable key. The refusals of something that is
/// not a key at all end with how to make one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// The file is not UTF-8 text (raw key bytes, say).
    #[error(
        "not a lacnet key file (binary content; raw key bytes are no longer accepted); {HOW_TO_MAKE_A_KEY}"
    )]
    Binary,
    /// The first line is not the format's magic (a passphrase, say).
    #[error(
        "not a lacnet key file (the first line must be `{KEY_FILE_MAGIC}`): a passphrase or other text is not a key; {HOW_TO_MAKE_A_KEY}"
    )]
    NotAKeyFile,
    /// A `lacnet-key` file of another version.
    #[error(
        "unsupported key file version (this agent reads `{KEY_FILE_MAGIC}`); {HOW_TO_MAKE_A_KEY}"
    )]
    UnsupportedVersion,
    /// A line after the magic that is neither `id` nor `secret`.
    #[error("{KEY_FILE_MAGIC}: unexpected line (expected `id` or `secret`)")]
    UnexpectedLine,
    /// The file holds another key id than the one it was given under.
    #[error("the file holds key {found:?}, not {expected:?}")]
    WrongId {
        /// The id in the file.
        found: String,
        /// The id it was given under.
        expected: String,
    },
    /// No `id` line.
    #[error("{KEY_FILE_MAGIC}: no `id` line")]
    NoId,
    /// No `secret` line.
    #[error("{KEY_FILE_MAGIC}: no `secret` line")]
    NoSecret,
    /// The secret is not 64 hex digits.
    #[error("{KEY_FILE_MAGIC}: the secret must be 64 hex digits (32 bytes)")]
    NotHex,
    /// The secret's bytes are all printable: a passphrase, hex-encoded.
    #[error(
        "{KEY_FILE_MAGIC}: the secret is printable text, not random bytes; {HOW_TO_MAKE_A_KEY}"
    )]
    PrintableSecret,
    /// The secret uses too few distinct byte values to be random.
    #[error(
        "{KEY_FILE_MAGIC}: the secret repeats too few byte values to be random; {HOW_TO_MAKE_A_KEY}"
    )]
    RepetitiveSecret,
    /// The decoded secret was refused as a key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The end of every refusal of a file that is not a key: how to make one.
const HOW_TO_MAKE_A_KEY: &str = "make a key with `lacnet keygen --id <id> --out <file>` \
     (32 random bytes in the `lacnet-key v1` format)";

/// The text of a key file holding `secret` under `id`, with `comment` lines
/// (each prefixed with `# `) before it. `lacnet keygen` writes this.
pub fn encode_key_file(id: &str, secret: &[u8; SECRET_BYTES], comment: &[&str]) -> String {
    let mut text = String::new();
    for line in comment {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    let hex = Zeroizing::new(crate::hex::encode(secret));
    text.push_str(KEY_FILE_MAGIC);
    text.push_str("\nid ");
    text.push_str(id);
    text.push_str("\nsecret ");
    text.push_str(&hex);
    text.push('\n');
    text
}

/// Reads a key file's bytes, which must be the versioned format (see the
/// module docs) holding key `id`.
pub fn decode_key_file(id: &str, bytes: Vec<u8>) -> Result<Secret, KeyFileError> {
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileError::Binary)?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some(KEY_FILE_MAGIC) => {}
        Some(l) if l.starts_with("lacnet-key ") => return Err(KeyFileError::UnsupportedVersion),
        _ => return Err(KeyFileError::NotAKeyFile),
    }
    let (mut file_id, mut secret) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("id", v)) => file_id = Some(v.trim()),
            Some(("secret", v)) => secret = Some(v.trim()),
            _ => return Err(KeyFileError::UnexpectedLine),
        }
    }
    match file_id {
        Some(f) if f == id => {}
        Some(f) => {
            return Err(KeyFileError::WrongId {
                found: f.to_owned(),
                expected: id.to_owned(),
            });
        }
        None => return Err(KeyFileError::NoId),
    }
    let hex = secret.ok_or(KeyFileError::NoSecret)?;
    let raw = Zeroizing::new(
        crate::hex::decode(hex)
            .filter(|raw| raw.len() == SECRET_BYTES)
            .ok_or(KeyFileError::NotHex)?,
    );
    if raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(KeyFileError::PrintableSecret);
    }
    let mut seen = [false; 256];
    raw.iter().for_each(|b| seen[usize::from(*b)] = true);
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT_BYTES {
        return Err(KeyFileError::RepetitiveSecret);
    }
    Ok(Secret::new(raw.to_vec())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 distinct, non-text bytes derived from `seed`.
    fn secret_bytes(seed: u8) -> [u8; SECRET_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn a_hex_encoded_passphrase_or_a_repetitive_secret_is_refused() {
        let text: [u8; SECRET_BYTES] = *b"my council passphrase, 32 chars!";
        let err =
            decode_key_file("k1", encode_key_file("k1", &text, &[]).into_bytes()).unwrap_err();
        assert!(matches!(err, KeyFileError::PrintableSecret), "{err}");
        assert!(err.to_string().contains("lacnet keygen"), "says how: {err}");
        let zeros = [0u8; SECRET_BYTES];
        let err =
            decode_key_file("k1", encode_key_file("k1", &zeros, &[]).into_bytes()).unwrap_err();
        assert!(matches!(err, KeyFileError::RepetitiveSecret), "{err}");
        let err = decode_key_file("k1", b"lacnet-key v2\nid k1\nsecret 00\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::UnsupportedVersion), "{err}");
    }

    #[test]
    fn versioned_key_files_are_read_and_checked() {
        let bytes = secret_bytes(0);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("# test key\nlacnet-key v1\nid k9\nsecret {hex}\n");
        assert_eq!(text, encode_key_file("k9", &bytes, &["test key"]));
        let raw = decode_key_file("k9", text.clone().into_bytes()).unwrap();
        let direct = Secret::new(bytes.to_vec()).unwrap();
        let fp = |s: &Secret| crate::pseudonym::Pseudonymiser::new(s).fingerprint();
        assert_eq!(fp(&raw), fp(&direct), "the hex decodes to the 32 bytes");
        let err = decode_key_file("k1", text.into_bytes()).unwrap_err();
        assert!(
            matches!(&err, KeyFileError::WrongId { found, expected } if found == "k9" && expected == "k1"),
            "{err}"
        );
        assert!(!err.to_string().contains(&hex), "{err}");
        let err =
            decode_key_file("k9", b"lacnet-key v1\nid k9\nsecret abc\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::NotHex), "{err}");
    }

    #[test]
    fn what_is_not_a_key_file_is_named_without_its_content() {
        let err = decode_key_file("k1", b"correct horse battery staple\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::NotAKeyFile), "{err}");
        assert!(!err.to_string().contains("horse"), "{err}");
        let err = decode_key_file("k1", vec![0xff, 0xfe, 0x9c]).unwrap_err();
        assert!(matches!(err, KeyFileError::Binary), "{err}");
        let err = decode_key_file("k1", b"lacnet-key v1\nsecret 00\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::NoId), "{err}");
        let err = decode_key_file("k1", b"lacnet-key v1\nid k1\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::NoSecret), "{err}");
        let err = decode_key_file("k1", b"lacnet-key v1\nid k1\nkey 00\n".to_vec()).unwrap_err();
        assert!(matches!(err, KeyFileError::UnexpectedLine), "{err}");
    }
}
