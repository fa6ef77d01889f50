//! Loading the pseudonymisation key ring from files, as a mounted Kubernetes
//! Secret provides them. The first file is the newest key (it writes new
//! pseudonyms); the others only match records written before a rotation.
//!
//! A key file is either the versioned text format `lacnet keygen` writes:
//!
//! ```text
//! # comment lines are ignored
//! lacnet-key v1
//! id k2025
//! secret <64 lowercase hex digits: 32 random bytes>
//! ```
//!
//! whose `id` must match the id the file is given under, or (the original
//! format) 32 or more raw secret bytes, one trailing newline ignored.
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

/// Reads a key file's bytes: the versioned text format when it starts with
/// [`KEY_FILE_MAGIC`] (after comments), raw secret bytes otherwise.
pub fn decode_key_file(id: &str, bytes: Vec<u8>) -> Result<Secret, String> {
    let text = std::str::from_utf8(&bytes).ok();
    let mut lines = text
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if lines.next() != Some(KEY_FILE_MAGIC) {
        return Secret::from_file_contents(bytes).map_err(|e| e.to_string());
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
    let decoded: Option<Vec<u8>> = (hex.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let raw =
        decoded.ok_or_else(|| format!("{KEY_FILE_MAGIC}: the secret must be 64 hex digits"))?;
    Secret::new(raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_short_and_good_keys() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, b"tooshort-secret-value\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, [7u8; 40]).unwrap();

        let err = load_ring(&[("k1".into(), dir.path().join("absent"))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("k1") && err.contains("absent"), "{err}");

        let err = load_ring(&[("k1".into(), short.clone())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        assert!(!err.contains("tooshort"), "the secret leaked: {err}");

        assert!(load_ring(&[]).is_err());
        let ring = load_ring(&[("k2".into(), good.clone()), ("k1".into(), good)]).unwrap();
        assert_eq!(ring.active().0.as_str(), "k2");
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn versioned_key_files_are_read_and_checked() {
        let hex: String = (0..32u8).map(|b| format!("{b:02x}")).collect();
        let text = format!("# test key\nlacnet-key v1\nid k9\nsecret {hex}\n");
        let raw = decode_key_file("k9", text.clone().into_bytes()).unwrap();
        let direct = Secret::new((0..32u8).collect()).unwrap();
        let fp = |s: &Secret| lacnet_core::pseudonym::Pseudonymiser::new(s).fingerprint();
        assert_eq!(fp(&raw), fp(&direct), "the hex decodes to the 32 bytes");
        let err = decode_key_file("k1", text.into_bytes()).unwrap_err();
        assert!(err.contains("\"k9\"") && !err.contains(&hex), "{err}");
        let err =
            decode_key_file("k9", b"lacnet-key v1\nid k9\nsecret abc\n".to_vec()).unwrap_err();
        assert!(err.contains("64 hex"), "{err}");
    }
}
