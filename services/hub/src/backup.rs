//! Backup and restore of the hub's data directory (its sled trees), for
//! `lacnet-hub backup` and `restore`.
//!
//! A running hub holds sled's lock, so it takes the snapshot itself
//! ([`crate::Hub::backup`]) when asked on its control socket
//! ([`lacnet_store::control`]). The `backup` command asks there first; only
//! if no hub answers does it open the data directory itself. The format is
//! [`lacnet_store::backup`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lacnet_store::backup::{BackupError, Summary};
use lacnet_store::control::BackupFn;

use crate::Hub;
use crate::store::{BACKUP_SPEC, Store};

/// The control socket's name inside the data directory, unless configured.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket for a data directory when none is configured.
pub fn default_socket(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// What the control socket runs: a backup of the running `hub`.
pub fn control_fn(hub: Hub) -> BackupFn {
    Arc::new(move |dest: PathBuf| {
        let hub = hub.clone();
        Box::pin(async move { hub.backup(dest).await })
    })
}

/// Where a backup came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// By the running hub.
    Online,
    /// From the data directory, with no hub running.
    Offline,
}

/// Backs up into `dest`: through the running hub's control `socket` if one
/// answers, otherwise by opening `data_dir` directly (which fails while
/// another process holds it).
pub async fn backup(
    socket: &Path,
    data_dir: &Path,
    cache_bytes: u64,
    dest: &Path,
) -> Result<(Taken, String), BackupError> {
    if let Some(summary) = lacnet_store::control::request_backup(socket, dest).await? {
        return Ok((Taken::Online, summary));
    }
    let (data_dir, dest) = (data_dir.to_path_buf(), dest.to_path_buf());
    let summary = tokio::task::spawn_blocking(move || -> Result<Summary, BackupError> {
        let store = Store::open(&data_dir, cache_bytes).map_err(|e| {
            BackupError::Store(format!(
                "no hub answered on the control socket, and opening the data directory failed: {e}"
            ))
        })?;
        store.backup(&dest)
    })
    .await
    .map_err(|e| BackupError::Store(format!("the backup task failed: {e}")))??;
    Ok((Taken::Offline, summary.to_string()))
}

/// Restores the backup in `src` into `data_dir`, which must be new or empty.
pub fn restore(src: &Path, data_dir: &Path) -> Result<Summary, BackupError> {
    lacnet_store::backup::restore(src, &BACKUP_SPEC, data_dir)
}
