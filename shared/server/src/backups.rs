//! Backups of a service's data directory, the same for every service.
//!
//! - The `backup` and `restore` commands ([`BackupCommand`]). A running
//!   service holds sled's lock, so it takes the snapshot itself when asked on
//!   its control socket ([`lacnet_store::control`]); `backup` asks there
//!   first, and only if no service answers does it open the data directory
//!   through the service's own offline function. The format is
//!   [`lacnet_store::backup`]'s.
//! - Scheduled backups: the `--backup-*` flags ([`ServerFlags`]) turned into
//!   a [`Schedule`], run beside the server with [`lacnet_store::schedule::run`],
//!   each outcome logged and counted in [`BackupMetrics`].

use std::future::Future;
use std::path::{Path, PathBuf};

use lacnet_clock::{Clock, SystemClock};
use lacnet_store::backup::{BackupError, Spec, Summary};
use lacnet_store::control::BackupFn;
use lacnet_store::schedule::{self, Schedule};

use crate::flags::ServerFlags;
use crate::metrics::BackupMetrics;

/// The control socket's name inside the data directory, unless configured.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket for a data directory when none is configured.
pub fn default_socket(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Where a backup came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// By the running service, on its writer thread.
    Online,
    /// From the data directory, with no service running.
    Offline,
}

/// A backup taken with no service running: opens the data directory itself
/// (and so fails while another process holds it) and writes the backup into
/// the directory it is given. Runs on a blocking thread.
pub type Offline = Box<dyn FnOnce(PathBuf) -> Result<Summary, BackupError> + Send>;

/// Backs up into `dest`: through the running service's control `socket` if
/// one answers, otherwise with `offline`.
pub async fn backup(
    socket: &Path,
    dest: &Path,
    offline: Offline,
) -> Result<(Taken, String), BackupError> {
    if let Some(summary) = lacnet_store::control::request_backup(socket, dest).await? {
        return Ok((Taken::Online, summary));
    }
    let dest = dest.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || offline(dest))
        .await
        .map_err(|e| BackupError::Store(format!("the backup task failed: {e}")))??;
    Ok((Taken::Offline, summary.to_string()))
}

/// The error of an offline backup whose data directory would not open.
pub fn unopened(e: impl std::fmt::Display) -> BackupError {
    BackupError::Store(format!(
        "no service answered on the control socket, and opening the data directory failed: {e}"
    ))
}

/// The maintenance commands every service has. `restore` runs while the
/// service is stopped (sled locks its directory); `backup` works either way.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum BackupCommand {
    /// Write a consistent backup into a new or empty directory. A running
    /// service (found through its control socket) takes it without stopping;
    /// otherwise the data directory is opened directly.
    Backup {
        /// The directory to write the backup into (absolute; new or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into the data directory, which must be new or empty
    /// (run it with the service stopped, then start the service on it).
    Restore {
        /// The backup directory (one `backup` wrote).
        #[arg(long)]
        from: PathBuf,
    },
}

impl BackupCommand {
    /// Runs the command on the data directory and control socket of `flags`,
    /// and returns the line to print. `noun` names the service in it
    /// ("agent", "hub"); `spec` is what its backups hold; `offline` takes a
    /// backup with no service running (see [`backup`]).
    pub async fn run(
        &self,
        flags: &ServerFlags,
        noun: &str,
        spec: &Spec<'_>,
        offline: Offline,
    ) -> Result<String, BackupError> {
        match self {
            BackupCommand::Backup { to } => {
                let (taken, summary) = backup(&flags.control_socket(), to, offline).await?;
                let by = match taken {
                    Taken::Online => format!("by the running {noun}"),
                    Taken::Offline => format!("from the stopped {noun}'s data directory"),
                };
                Ok(format!("backup written {by}: {summary}"))
            }
            BackupCommand::Restore { from } => {
                let summary = lacnet_store::backup::restore(from, spec, &flags.data_dir)?;
                Ok(format!("restored: {summary}"))
            }
        }
    }

    /// What the command was doing, for its error message.
    pub fn doing(&self) -> &'static str {
        match self {
            BackupCommand::Backup { .. } => "backing up",
            BackupCommand::Restore { .. } => "restoring (is the data directory new or empty?)",
        }
    }
}

/// `--backup-every` without `--backup-dir`: nowhere to write.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--backup-every needs --backup-dir (the backups volume on Kubernetes)")]
pub struct NoBackupDir;

/// The schedule the flags ask for, if any.
pub fn schedule_of(
    flags: &ServerFlags,
    service: &'static str,
) -> Result<Option<Schedule>, NoBackupDir> {
    let Some(every) = flags.backup_every else {
        return Ok(None);
    };
    let dir = flags.backup_dir.clone().ok_or(NoBackupDir)?;
    Ok(Some(Schedule {
        dir,
        every,
        keep: usize::try_from(flags.backup_keep).unwrap_or(usize::MAX),
        service,
    }))
}

/// Backs up on `schedule` through `backup` (the control socket's own
/// function) until `stop`, logging each outcome and keeping `metrics`.
pub async fn run(
    schedule: Schedule,
    backup: BackupFn,
    metrics: BackupMetrics,
    stop: impl Future<Output = ()>,
) {
    tracing::info!(
        dir = %schedule.dir.display(),
        every_secs = schedule.every.as_secs(),
        keep = schedule.keep,
        "scheduled backups on"
    );
    let report = move |taken: &Result<schedule::Taken, lacnet_store::backup::BackupError>| {
        match taken {
            Ok(t) => {
                metrics.succeeded(t.summary.bytes, SystemClock.now_unix());
                tracing::info!(backup = %t.summary, pruned = t.pruned, "scheduled backup written");
            }
            Err(e) => {
                metrics.failed();
                tracing::error!(error = %e, "scheduled backup failed; the last good one stays (see lacnet_backup_age_seconds)");
            }
        }
    };
    schedule::run(schedule, backup, &SystemClock, report, stop).await;
}
