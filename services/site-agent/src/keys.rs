//! Loading the pseudonymisation key ring from files, as a mounted Kubernetes
//! Secret provides them. The first file is the newest key (it writes new
//! pseudonyms); the others only match records written before a rotation.
//!
//! A key file has one format, the versioned text that `lacnet keygen` writes:
//!
//! ```text
//! # comment lines are ignored
//! lacnet-key v1
//! id k2025
//! secret <64 lowercase hex digits: 32 random bytes>
//! ```
//!
//! whose `id` must match the id the file is given under. Nothing else is a
//! key: not a passphrase, not raw bytes of any length. The pseudonyms are
//! HMACs of identifiers that anyone can enumerate (NHS numbers, case ids), so
//! their protection is exactly the key's unpredictability; a key a person
//! chose can be guessed offline from one pseudonym, or from the fingerprint.
//! A secret whose bytes are all printable ASCII (a hex-encoded passphrase) or
//! that uses fewer than [`MIN_DISTINCT_BYTES`] distinct byte values is also
//! refused: 32 random bytes do that with probability below 2^-40.
//!
//! The key fingerprint (the agent's status, `lacnet keygen`'s output) is kept.
//! It is an HMAC, under its own HKDF-derived key, of a fixed message: with a
//! secret of 32 random bytes, guessing the secret from it costs 2^256 trials,
//! the same as from any pseudonym. What made it dangerous was a weak key, and
//! this module no longer accepts one. A random key id would not serve its
//! purpose, which is that two parties holding the same secret (a council and
//! its backup site, or a linkage partner) can check that they hash alike
//! without revealing the key.
//!
//! Errors name the key id, the file and the reason; never the file's content.

use std::path::PathBuf;

use lacnet_core::pseudonym::{KeyId, KeyRing, Secret};

use crate::AgentError;

/// Reads every key file (newest first) into a ring.
pub fn load_ring(files: &[(String, PathBuf)]) -> Result<KeyRing, AgentError> {
    if files.is_empty() {
        return Err(AgentError::Config(
            "no pseudonymisation key: pass --key-file id=path".to_owned(),
        ));
    }
    let mut keys = Vec::with_capacity(files.len());
    for (id, path) in files {
        let fail = |reason: String| AgentError::Key {
            id: id.clone(),
            path: path.clone(),
            reason,
        };
        let key_id = KeyId::new(id).map_err(|e| fail(e.to_string()))?;
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let secret = decode_key_file(id, bytes).map_err(fail)?;
        keys.push((key_id, secret));
    }
    KeyRing::new(keys).map_err(|e| AgentError::KeyRing(e.to_string()))
}

/// The first line of the versioned key format.
pub const KEY_FILE_MAGIC: &str = "lacnet-key v1";

/// Bytes of secret a key file holds.
pub const SECRET_BYTES: usize = 32;

/// Fewest distinct byte values a secret may use (32 random bytes use about 30).
pub const MIN_DISTINCT_BYTES: usize = 16;

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
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    text.push_str(&format!("{KEY_FILE_MAGIC}\nid {id}\nsecret {hex}\n"));
    text
}

/// Reads a key file's bytes, which must be the versioned format (see the
/// module docs); anything else is refused with how to make a key.
pub fn decode_key_file(id: &str, bytes: Vec<u8>) -> Result<Secret, String> {
    let bytes = zeroize::Zeroizing::new(bytes);
    let not_a_key = |what: &str| format!("{what}; {HOW_TO_MAKE_A_KEY}");
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(not_a_key(
            "not a lacnet key file (binary content; raw key bytes are no longer accepted)",
        ));
    };
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some(KEY_FILE_MAGIC) => {}
        Some(l) if l.starts_with("lacnet-key ") => {
            return Err(not_a_key(&format!(
                "unsupported key file version (this agent reads `{KEY_FILE_MAGIC}`)"
            )));
        }
        _ => {
            return Err(not_a_key(&format!(
                "not a lacnet key file (the first line must be `{KEY_FILE_MAGIC}`): \
                 a passphrase or other text is not a key"
            )));
        }
    }
    let (mut file_id, mut secret) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("id", v)) => file_id = Some(v.trim()),
            Some(("secret", v)) => secret = Some(v.trim()),
            _ => {
                return Err(format!(
                    "{KEY_FILE_MAGIC}: unexpected line (expected `id` or `secret`)"
                ));
            }
        }
    }
    match file_id {
        Some(f) if f == id => {}
        Some(f) => return Err(format!("the file holds key {f:?}, not {id:?}")),
        None => return Err(format!("{KEY_FILE_MAGIC}: no `id` line")),
    }
    let hex = secret.ok_or_else(|| format!("{KEY_FILE_MAGIC}: no `secret` line"))?;
    let decoded: Option<Vec<u8>> = (hex.len() == 2 * SECRET_BYTES)
        .then(|| {
            (0..SECRET_BYTES)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let raw =
        zeroize::Zeroizing::new(decoded.ok_or_else(|| {
            format!("{KEY_FILE_MAGIC}: the secret must be 64 hex digits (32 bytes)")
        })?);
    if raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(not_a_key(&format!(
            "{KEY_FILE_MAGIC}: the secret is printable text, not random bytes"
        )));
    }
    let mut seen = [false; 256];
    raw.iter().for_each(|b| seen[usize::from(*b)] = true);
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT_BYTES {
        return Err(not_a_key(&format!(
            "{KEY_FILE_MAGIC}: the secret repeats too few byte values to be random"
        )));
    }
    Secret::new(raw.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 distinct, non-text bytes derived from `seed`.
    fn secret_bytes(seed: u8) -> [u8; SECRET_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn missing_and_good_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, encode_key_file("k2", &secret_bytes(7), &[])).unwrap();
        let good1 = dir.path().join("good1");
        std::fs::write(&good1, encode_key_file("k1", &secret_bytes(8), &["x"])).unwrap();

        let err = load_ring(&[("k1".into(), dir.path().join("absent"))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("k1") && err.contains("absent"), "{err}");

        assert!(load_ring(&[]).is_err());
        let ring = load_ring(&[("k2".into(), good), ("k1".into(), good1)]).unwrap();
        assert_eq!(ring.active().0.as_str(), "k2");
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn a_passphrase_or_raw_bytes_are_refused_with_how_to_make_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            (
                "passphrase",
                b"correct horse battery staple thurrock 2025\n".to_vec(),
            ),
            ("short", b"tooshort-secret-value\n".to_vec()),
            ("raw32", secret_bytes(3).to_vec()),
            ("raw48", [0x9cu8; 48].to_vec()),
        ];
        for (name, content) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).unwrap();
            let err = load_ring(&[("k1".into(), path)]).unwrap_err().to_string();
            assert!(err.contains("k1") && err.contains(name), "{name}: {err}");
            assert!(err.contains("lacnet keygen"), "{name}: says how: {err}");
            assert!(err.contains("not a lacnet key file"), "{name}: {err}");
            assert!(
                !err.contains("horse") && !err.contains("tooshort"),
                "the content leaked: {err}"
            );
        }
    }

    #[test]
    fn a_hex_encoded_passphrase_or_a_repetitive_secret_is_refused() {
        let text: [u8; SECRET_BYTES] = *b"my council passphrase, 32 chars!";
        let err =
            decode_key_file("k1", encode_key_file("k1", &text, &[]).into_bytes()).unwrap_err();
        assert!(
            err.contains("printable text") && err.contains("lacnet keygen"),
            "{err}"
        );
        let zeros = [0u8; SECRET_BYTES];
        let err =
            decode_key_file("k1", encode_key_file("k1", &zeros, &[]).into_bytes()).unwrap_err();
        assert!(err.contains("too few byte values"), "{err}");
        let err = decode_key_file("k1", b"lacnet-key v2\nid k1\nsecret 00\n".to_vec()).unwrap_err();
        assert!(err.contains("unsupported key file version"), "{err}");
    }

    #[test]
    fn versioned_key_files_are_read_and_checked() {
        let bytes = secret_bytes(0);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("# test key\nlacnet-key v1\nid k9\nsecret {hex}\n");
        assert_eq!(text, encode_key_file("k9", &bytes, &["test key"]));
        let raw = decode_key_file("k9", text.clone().into_bytes()).unwrap();
        let direct = Secret::new(bytes.to_vec()).unwrap();
        let fp = |s: &Secret| lacnet_core::pseudonym::Pseudonymiser::new(s).fingerprint();
        assert_eq!(fp(&raw), fp(&direct), "the hex decodes to the 32 bytes");
        let err = decode_key_file("k1", text.into_bytes()).unwrap_err();
        assert!(err.contains("\"k9\"") && !err.contains(&hex), "{err}");
        let err =
            decode_key_file("k9", b"lacnet-key v1\nid k9\nsecret abc\n".to_vec()).unwrap_err();
        assert!(err.contains("64 hex"), "{err}");
    }
}
