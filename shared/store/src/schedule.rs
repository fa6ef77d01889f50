//! Scheduled backups: the hub and the agent back themselves up every
//! `--backup-every`, through the very function their control socket runs for
//! the `backup` command ([`crate::control::BackupFn`]), into `--backup-dir`,
//! keeping the newest `--backup-keep`.
//!
//! Each backup is a new subdirectory `<service>-<UTC date>T<hhmmss>Z`, so the
//! names sort by time and an operator can tell them apart at a glance. Only
//! directories with that prefix are ever deleted: complete ones (with a
//! manifest) beyond the newest `keep`, and unfinished ones (no manifest) left
//! by a crash, once a newer backup has completed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lacnet_clock::Clock;

use crate::backup::{BackupError, MANIFEST, Summary};
use crate::control::BackupFn;

/// When and where to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The directory the backups go into (created if missing).
    pub dir: PathBuf,
    /// Time between backups; the first is taken at once.
    pub every: Duration,
    /// Complete backups kept (at least one).
    pub keep: usize,
    /// The service's name: the prefix of every backup's directory name.
    pub service: &'static str,
}

/// What one scheduled backup did.
#[derive(Debug)]
pub struct Taken {
    /// The backup written.
    pub summary: Summary,
    /// Older backups deleted to keep `keep`.
    pub pruned: usize,
}

/// `<service>-YYYY-MM-DDThhmmssZ` for a time in Unix seconds.
pub fn backup_name(service: &str, unix: i64) -> String {
    let day = lacnet_core::Date::from_unix_seconds(unix);
    let secs = unix.rem_euclid(86_400);
    format!(
        "{service}-{day}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Takes one backup, named for `now_unix`, and prunes the old ones.
pub async fn take(
    schedule: &Schedule,
    backup: &BackupFn,
    now_unix: i64,
) -> Result<Taken, BackupError> {
    std::fs::create_dir_all(&schedule.dir).map_err(|source| BackupError::Io {
        path: schedule.dir.clone(),
        what: "creating the backup directory",
        source,
    })?;
    let base = backup_name(schedule.service, now_unix);
    // Two in one second (a restart loop): the second gets a suffix.
    let mut dest = schedule.dir.join(&base);
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = schedule.dir.join(format!("{base}-{n}"));
    }
    let summary = backup(dest.clone()).await?;
    let pruned = prune(&schedule.dir, schedule.service, schedule.keep, &dest)?;
    Ok(Taken { summary, pruned })
}

/// Deletes this service's complete backups in `dir` beyond the newest
/// `keep`, and unfinished ones older than `newest` (just written). Returns
/// how many were deleted.
pub fn prune(dir: &Path, service: &str, keep: usize, newest: &Path) -> Result<usize, BackupError> {
    let prefix = format!("{service}-");
    let io = |source| BackupError::Io {
        path: dir.to_path_buf(),
        what: "listing the backup directory",
        source,
    };
    let mut complete = Vec::new();
    let mut unfinished = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if !ours || !path.is_dir() || path == newest {
            continue;
        }
        if path.join(MANIFEST).is_file() {
            complete.push(path);
        } else {
            unfinished.push(path);
        }
    }
    complete.sort();
    // The one just written counts towards `keep`.
    let surplus = (complete.len() + 1).saturating_sub(keep.max(1));
    let doomed = complete.into_iter().take(surplus).chain(unfinished);
    let mut n = 0;
    for path in doomed {
        std::fs::remove_dir_all(&path).map_err(|source| BackupError::Io {
            path: path.clone(),
            what: "deleting an old backup",
            source,
        })?;
        n += 1;
    }
    Ok(n)
}

/// Backs up on `schedule` until `stop` completes, telling `report` how each
/// went; `clock` names the backups.
pub async fn run(
    schedule: Schedule,
    backup: BackupFn,
    clock: &dyn Clock,
    report: impl Fn(&Result<Taken, BackupError>),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(schedule.every);
    // A backup that overran its slot is followed by the next one a whole
    // interval later, not by a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let taken = tokio::select! {
            () = &mut stop => return,
            t = take(&schedule, &backup, clock.now_unix()) => t,
        };
        report(&taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fake(dir: &Path, name: &str, complete: bool) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        if complete {
            std::fs::write(p.join(MANIFEST), b"x").unwrap();
        }
        p
    }

    #[test]
    fn names_sort_by_time() {
        assert_eq!(
            backup_name("lacnet-hub", 1_765_058_399),
            "lacnet-hub-2025-12-06T215959Z"
        );
        assert!(backup_name("s", 1_000) < backup_name("s", 100_000));
    }

    #[test]
    fn prune_keeps_the_newest_and_only_touches_its_own() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for i in 1..=4 {
            fake(dir, &format!("svc-2025-01-0{i}T000000Z"), true);
        }
        let crashed = fake(dir, "svc-2025-01-01T120000Z", false);
        let other = fake(dir, "other-2025-01-01T000000Z", true);
        let operator = fake(dir, "before-upgrade", true);
        let newest = fake(dir, "svc-2025-01-05T000000Z", true);
        assert_eq!(prune(dir, "svc", 3, &newest).unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "before-upgrade",
                "other-2025-01-01T000000Z",
                "svc-2025-01-03T000000Z",
                "svc-2025-01-04T000000Z",
                "svc-2025-01-05T000000Z"
            ]
        );
        assert!(!crashed.exists() && other.exists() && operator.exists());
    }

    #[tokio::test]
    async fn take_writes_through_the_backup_function_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        let backup: BackupFn = Arc::new(move |dest: PathBuf| {
            let seen = seen.clone();
            Box::pin(async move {
                std::fs::create_dir_all(&dest).unwrap();
                std::fs::write(dest.join(MANIFEST), b"m").unwrap();
                seen.lock().unwrap().push(dest.clone());
                Ok(Summary {
                    dir: dest,
                    trees: 1,
                    entries: 2,
                    files: 0,
                    bytes: 42,
                })
            })
        });
        fake(d.path(), "svc-2000-01-01T000000Z", true);
        let schedule = Schedule {
            dir: d.path().to_path_buf(),
            every: Duration::from_secs(3600),
            keep: 1,
            service: "svc",
        };
        let now = lacnet_clock::MockClock::at_date("2030-01-01").unwrap();
        let taken = take(&schedule, &backup, now.now_unix()).await.unwrap();
        assert_eq!((taken.summary.bytes, taken.pruned), (42, 1));
        // Twice in the same second: a second directory, not an overwrite.
        let again = take(&schedule, &backup, now.now_unix()).await.unwrap();
        assert_ne!(again.summary.dir, taken.summary.dir);
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
