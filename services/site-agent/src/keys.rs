//! Loading the pseudonymisation key ring from files, as a mounted Kubernetes
//! Secret provides them. The first file is the newest key (it writes new
//! pseudonyms); the others only match records written before a rotation.
//!
//! A key file has one format, the versioned text that `lacnet keygen`
//! writes: [`lacnet_core::keyfile`] defines it (re-exported here), so the
//! CLI makes keys without linking the agent. Its `id` must match the id the
//! file is given under; a passphrase, raw bytes or a weak secret is refused.
//!
//! The key fingerprint (the agent's status, `lacnet keygen`'s output) is kept.
//! It is an HMAC, under its own HKDF-derived key, of a fixed message: with a
//! secret of 32 random bytes, guessing the secret from it costs 2^256 trials,
//! the same as from any pseudonym. What made it dangerous was a weak key, and
//! the key file format no longer accepts one. A random key id would not serve
//! its purpose, which is that two parties holding the same secret (a council
//! and its backup site, or a linkage partner) can check that they hash alike
//! without revealing the key.
//!
//! Errors name the key id, the file and the reason; never the file's content.

use std::path::PathBuf;

pub use lacnet_core::keyfile::{
    KEY_FILE_MAGIC, KeyFileError, MIN_DISTINCT_BYTES, SECRET_BYTES, decode_key_file,
    encode_key_file,
};
use lacnet_core::pseudonym::{KeyId, KeyRing};

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
        let secret = decode_key_file(id, bytes).map_err(|e| fail(e.to_string()))?;
        keys.push((key_id, secret));
    }
    KeyRing::new(keys).map_err(|e| AgentError::KeyRing(e.to_string()))
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
}
