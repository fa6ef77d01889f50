//! Backup and restore of the hub's data directory (its sled trees and the
//! release files beside them), for `lacnet-hub backup` and `restore`.
//!
//! The front end is `lacnet-server`'s ([`lacnet_server::backups`]), the same
//! for every service: a running hub takes the snapshot itself
//! ([`crate::Hub::backup`]) when asked on its control socket, and only if no
//! hub answers is the data directory opened here ([`offline`]). The format is
//! [`lacnet_store::backup`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lacnet_server::backups::{Offline, unopened};
use lacnet_store::backup::{BackupError, Summary};
use lacnet_store::control::BackupFn;

use crate::Hub;
use crate::store::{BACKUP_SPEC, Store};

/// What the control socket runs: a backup of the running `hub`.
pub fn control_fn(hub: Hub) -> BackupFn {
    Arc::new(move |dest: PathBuf| {
        let hub = hub.clone();
        Box::pin(async move { hub.backup(dest).await })
    })
}

/// A backup with no hub running, of the hub's store in `data_dir`.
pub fn offline(data_dir: &Path, cache_bytes: u64) -> Offline {
    let dir = data_dir.to_path_buf();
    Box::new(move |dest| {
        let store = Store::open(&dir, cache_bytes).map_err(unopened)?;
        store.backup(&dest)
    })
}

/// Restores the backup in `src` into `data_dir`, which must be new or empty.
pub fn restore(src: &Path, data_dir: &Path) -> Result<Summary, BackupError> {
    lacnet_store::backup::restore(src, &BACKUP_SPEC, data_dir)
}
