//! Scheduled backups for a service: the `--backup-*` flags
//! ([`crate::flags::ServerFlags`]) turned into a [`Schedule`], run beside the
//! server with [`lacnet_store::schedule::run`], each outcome logged and
//! counted in [`BackupMetrics`].

use std::future::Future;

use lacnet_store::control::BackupFn;
use lacnet_store::schedule::{self, Schedule};

use crate::flags::ServerFlags;
use crate::metrics::BackupMetrics;

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
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                metrics.succeeded(t.summary.bytes, now);
                tracing::info!(backup = %t.summary, pruned = t.pruned, "scheduled backup written");
            }
            Err(e) => {
                metrics.failed();
                tracing::error!(error = %e, "scheduled backup failed; the last good one stays (see lacnet_backup_age_seconds)");
            }
        }
    };
    schedule::run(schedule, backup, report, stop).await;
}
