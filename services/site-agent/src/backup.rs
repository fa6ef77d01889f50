//! Backup and restore of the agent's data directory (the sled trees and the
//! `segments/` files), for `lacnet-site-agent backup` and `restore`.
//!
//! The front end is `lacnet-server`'s ([`lacnet_server::backups`]), the same
//! for every service: a running agent takes the snapshot itself, as a job on
//! its writer thread ([`Store::backup`]), when asked on its control socket,
//! and only if no agent answers is the data directory opened here
//! ([`offline`]). The format is [`lacnet_store::backup`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lacnet_store::control::BackupFn;

use crate::Store;

/// What the control socket runs: a backup on `store`'s writer thread.
pub fn control_fn(store: Store) -> BackupFn {
    Arc::new(move |dest: PathBuf| {
        let store = store.clone();
        Box::pin(async move { store.backup(dest).await })
    })
}

/// A backup with no agent running, of the store in `data_dir`: taken on the
/// store's writer thread, which is then closed again.
pub fn offline(data_dir: &Path, cache_bytes: u64) -> lacnet_server::backups::Offline {
    let data_dir = data_dir.to_path_buf();
    Box::new(move |dest| {
        let store =
            Store::open(&data_dir, cache_bytes, None).map_err(lacnet_server::backups::unopened)?;
        let out = store.backup_blocking(dest);
        store.close();
        out
    })
}
