//! Loading the pseudonymisation key ring from files, as a mounted Kubernetes
//! Secret provides them. The first file is the newest key (it writes new
//! pseudonyms); the others only match records written before a rotation.
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
        let secret = Secret::from_file_contents(bytes).map_err(|e| fail(e.to_string()))?;
        keys.push((key_id, secret));
    }
    KeyRing::new(keys).map_err(|e| AgentError::KeyRing(e.to_string()))
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
}
