//! `lacnet keygen`: a new pseudonymisation (HMAC) key for a site agent, in the
//! versioned key-file format the agent reads (`lacnet_core::keyfile`:
//! `lacnet-key v1`, 32 random bytes as hex), written with mode 0600 so only
//! its owner can read it.

use std::io::Write;
use std::path::{Path, PathBuf};

use lacnet_core::keyfile::{SECRET_BYTES, encode_key_file};
use lacnet_core::pseudonym::{KeyId, Pseudonymiser, Secret};
use rand::RngCore;

use crate::Outcome;
use crate::error::CliError;

/// `lacnet keygen`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Key id, e.g. k2025 (what the agent's --key-file id=path names it).
    #[arg(long)]
    pub id: String,
    /// The key file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `lacnet keygen`: writes the key and says how to start the agent with it.
pub fn command(args: &KeygenArgs) -> Result<Outcome, CliError> {
    let k = write_key(&args.id, &args.out, args.force)?;
    let out = args.out.display();
    println!("wrote key {} to {out} (mode 0600)", k.id);
    println!(
        "fingerprint {} (safe to share; `lacnet status` shows it for the active key)",
        k.fingerprint
    );
    println!("start the agent with --key-file {}={out}", k.id);
    Ok(Outcome::Done)
}

/// What was written: the id and the fingerprint, which is safe to share (two
/// parties compare fingerprints to check they hash alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key id.
    pub id: String,
    /// The key's fingerprint, as the agent's status shows it.
    pub fingerprint: String,
}

/// Writes a fresh key `id` to `path`; refuses to overwrite unless `force`.
pub fn write_key(id: &str, path: &Path, force: bool) -> Result<NewKey, CliError> {
    KeyId::new(id).map_err(|source| CliError::KeyId {
        id: id.to_owned(),
        source,
    })?;
    let mut raw = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rng().fill_bytes(&mut *raw);
    let secret = Secret::new(raw.to_vec())?;
    let fingerprint = Pseudonymiser::new(&secret).fingerprint();
    let start = format!(
        "readable only by the site agent. Start the agent with --key-file {id}=<this file>."
    );
    let text = zeroize::Zeroizing::new(encode_key_file(
        id,
        &raw,
        &[
            "lacnet pseudonymisation key (HMAC-SHA256). SECRET: keep it inside the council,",
            &start,
        ],
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::io("cannot create the directory", dir, e))?;
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            CliError::io("cannot create the key file", path, e)
        }
    })?;
    // An existing file opened with --force keeps its old mode: tighten it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| CliError::io("cannot set the key file's mode", path, e))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io("cannot write the key file", path, e))?;
    Ok(NewKey {
        id: id.to_owned(),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_reads_what_keygen_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k1");
        let key = write_key("k1", &path, false).unwrap();
        let ring = lacnet_site_agent::keys::load_ring(&[("k1".into(), path.clone())]).unwrap();
        assert_eq!(ring.active().1.fingerprint(), key.fingerprint);
        assert!(
            matches!(write_key("k1", &path, false), Err(CliError::KeyExists { path: p }) if p == path),
            "no silent overwrite"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            write_key("bad id!", &dir.path().join("x"), false),
            Err(CliError::KeyId { id, .. }) if id == "bad id!"
        ));
    }
}
