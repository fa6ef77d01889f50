//! The only module that touches sled: the current release of every site and
//! period, and the append-only audit log.
//!
//! The hub keeps only what it publishes. When a revision supersedes another,
//! one sled batch on `submissions` inserts the new revision and deletes the
//! old one, so a person erased at the site is gone from the hub once the next
//! release lands; the old release's digest and dates stay in the audit log
//! (written first, so nothing is deleted unrecorded). A late, older revision
//! is refused without being stored (SUPERSEDED).
//!
//! sled is log-structured: a removed value's bytes stay in its log until the
//! segment happens to be cleaned. So the cells of each release are not in
//! sled but in a file of their own under `releases/`, named after the
//! release's key, written (synced, renamed) before the sled entry that names
//! it, and deleted once the batch that removed its entry is flushed. On open,
//! any file no entry names (a crash between the two) is deleted.
//!
//! Trees and files:
//! - `submissions`: `site | granularity | period ordinal | revision` (big-endian)
//!   → JSON record without its cells; one entry per site and period.
//! - `releases/<hex of that key>.json`: the release's cells.
//! - `audit`: a monotonic id from `generate_id` (big-endian) → one JSON line.
//! - `meta`: `store_id` → a random id made when the tree is first created.
//!   Not in backups, on purpose: a restored or new data directory gets a
//!   new id, which tells the agents (through receipts and `ListReleases`)
//!   that the hub may have lost releases, so they compare at once.
//!
//! (Stores written before this kept every revision, with its cells, and a
//! `latest` index tree; [`Store::open`] deletes the superseded revisions,
//! auditing each, moves the cells into files and drops `latest`.)
//!
//! Reports read only the current releases, so those are also held in memory
//! (rebuilt from `submissions` on open) and a report never touches the disk.
//! Writes to one site and period are serialised by a striped lock, so the
//! "is this newer than the current one?" decision and the write are atomic
//! under many concurrent submitters; different sites write in parallel.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::METRIC_COUNT;
use lacnet_core::period::Period;
use lacnet_store::backup::{BackupError, Spec as BackupSpec, Summary as BackupSummary};
use serde::{Deserialize, Serialize};

use crate::HubError;

/// What a backup holds: every tree above.
pub const BACKUP_SPEC: BackupSpec<'static> = BackupSpec {
    service: "lacnet-hub",
    trees: &["submissions", "audit"],
    files_dir: Some(RELEASES_DIR),
};

/// The directory (in the data dir) of the files holding each release's cells.
pub const RELEASES_DIR: &str = "releases";

/// Stripes of the per-(site, period) write lock.
const STRIPES: usize = 64;

/// One revision of one site's submission for one period, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubmission {
    /// ONS code of the site.
    pub site_code: String,
    /// The reporting period.
    pub period: Period,
    /// The site's revision number.
    pub revision: u64,
    /// Content digest (lower-case hex SHA-256).
    pub digest: String,
    /// The policy the site applied.
    pub policy: DisclosurePolicy,
    /// Published counts in catalogue order (in sled, empty: the counts are
    /// in the release's file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
    /// When the site computed it (Unix seconds).
    pub generated_at_unix: i64,
    /// When the hub received it (Unix seconds).
    pub received_at_unix: i64,
    /// Whether an earlier release of this site and period was published
    /// (and has since been deleted): reports say "revised", nothing more.
    #[serde(default)]
    pub revised: bool,
}

/// A site's current (latest revision) table for one period, held in memory for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// The current revision.
    pub revision: u64,
    /// Its digest.
    pub digest: String,
    /// The policy the site applied.
    pub policy: DisclosurePolicy,
    /// The published counts.
    pub published: Published,
    /// When the hub received it (reports show its day only).
    pub received_at_unix: i64,
    /// Whether it replaced an earlier release.
    pub revised: bool,
}

/// What storing a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored and now the latest revision.
    New,
    /// The same content was already stored; nothing written.
    Duplicate,
    /// Older than the current revision: refused, nothing stored.
    Superseded,
}

impl StoreOutcome {
    /// Closed-set name for metrics and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            StoreOutcome::New => "new",
            StoreOutcome::Duplicate => "duplicate",
            StoreOutcome::Superseded => "superseded",
        }
    }
}

/// The result of [`Store::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// What happened.
    pub outcome: StoreOutcome,
    /// The revision reports use for this site and period afterwards.
    pub current_revision: u64,
    /// The digest of that revision.
    pub current_digest: String,
    /// When the hub first received this content.
    pub received_at_unix: i64,
}

/// One audit log entry: a submission, a report served, or a refusal of any request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (Unix seconds).
    pub at_unix: i64,
    /// The RPC, e.g. `submit`, `compare_metric`.
    pub event: String,
    /// Who called (`site:E06000034`, `analyst:alice`, or `unknown`).
    pub peer: String,
    /// The site the request concerned, if any.
    pub site: Option<String>,
    /// The period, if any (`2025-Q1`).
    pub period: Option<String>,
    /// The revision, if any.
    pub revision: Option<u64>,
    /// `new`, `duplicate`, `superseded`, `served` (a report), `refused`,
    /// `error`, `deleted` (a release superseded by a newer one) or
    /// `withdrawn` (a release of a series the registry no longer names).
    pub outcome: String,
    /// Why it was refused, deleted or withdrawn.
    pub reason: Option<String>,
    /// The digest of a deleted or withdrawn release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the site generated a deleted or withdrawn release (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at_unix: Option<i64>,
    /// When the hub received a deleted or withdrawn release (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_unix: Option<i64>,
}

impl AuditEvent {
    /// The audit entry for deleting the stored release `old` (`outcome` is
    /// `deleted` or `withdrawn`): its digest and dates outlive it here.
    pub fn removal(old: &StoredSubmission, outcome: &str, reason: String, at_unix: i64) -> Self {
        AuditEvent {
            at_unix,
            event: "store".into(),
            peer: "hub".into(),
            site: Some(old.site_code.clone()),
            period: Some(old.period.to_string()),
            revision: Some(old.revision),
            outcome: outcome.into(),
            reason: Some(reason),
            digest: Some(old.digest.clone()),
            generated_at_unix: Some(old.generated_at_unix),
            received_at_unix: Some(old.received_at_unix),
        }
    }
}

/// Latest tables by period, then by site code.
pub type LatestIndex = HashMap<Period, HashMap<String, Arc<Latest>>>;

/// The hub's storage.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    submissions: sled::Tree,
    audit: sled::Tree,
    cache: RwLock<LatestIndex>,
    /// See the `meta` tree above.
    store_id: String,
    stripes: Vec<Mutex<()>>,
    /// The data directory.
    dir: PathBuf,
    /// `dir/releases`.
    releases: PathBuf,
    /// Release files whose entries are removed, deleted at the next flush.
    doomed: Mutex<Vec<PathBuf>>,
    /// Held while release files are deleted, and by a backup while it
    /// copies them, so a backup never lists a file that then vanishes.
    files: Mutex<()>,
    /// Group commit through the writer thread shared with the site agent.
    committer: lacnet_store::Committer<()>,
}

fn corrupt(what: impl std::fmt::Display) -> HubError {
    HubError::Corrupt(what.to_string())
}

/// `site | granularity | ordinal`: 9 + 1 + 8 bytes (site codes are validated ONS codes).
fn period_key(site: &str, period: Period) -> Vec<u8> {
    let mut key = Vec::with_capacity(site.len() + 17);
    key.extend_from_slice(site.as_bytes());
    key.push(period.granularity().code() as u8);
    // Years are 1..=9999, so the ordinal is never negative.
    key.extend_from_slice(&(period.ordinal().max(0) as u64).to_be_bytes());
    key
}

fn revision_key(site: &str, period: Period, revision: u64) -> Vec<u8> {
    let mut key = period_key(site, period);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

fn read_u64(bytes: &[u8]) -> Result<u64, HubError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt("a stored revision number is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

fn io_error(path: &Path, source: std::io::Error) -> HubError {
    HubError::DataDir {
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn published(counts: &[Count]) -> Result<Published, HubError> {
    let counts: [Count; METRIC_COUNT] = counts.try_into().map_err(|_| {
        corrupt(format!(
            "stored submission has {} cells, expected {METRIC_COUNT}",
            counts.len()
        ))
    })?;
    Ok(Published { counts })
}

/// The store's id from `meta`, made (and flushed) if the tree has none.
fn store_id(meta: &sled::Tree) -> Result<String, HubError> {
    if let Some(id) = meta.get(b"store_id")? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    use std::hash::BuildHasher;
    // Random enough to tell two data directories apart; not a secret.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()))
    );
    meta.insert(b"store_id", id.as_bytes())?;
    meta.flush()?;
    Ok(id)
}

/// One current release, as `ListReleases` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSummary {
    /// The period.
    pub period: Period,
    /// The current revision.
    pub revision: u64,
    /// Its digest.
    pub digest: String,
}

fn to_latest(s: &StoredSubmission) -> Result<Latest, HubError> {
    Ok(Latest {
        revision: s.revision,
        digest: s.digest.clone(),
        policy: s.policy,
        published: published(&s.counts)?,
        received_at_unix: s.received_at_unix,
        revised: s.revised,
    })
}

impl Store {
    /// Opens (or creates) the database in `dir` and rebuilds the in-memory latest index.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, HubError> {
        std::fs::create_dir_all(dir).map_err(|source| HubError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let db = lacnet_store::open_sled(
            &sled::Config::new().path(dir).cache_capacity(cache_bytes),
            lacnet_store::OPEN_LOCK_WAIT,
        )?;
        let committer = lacnet_store::Committer::start(
            "hub-store",
            db.clone(),
            (),
            lacnet_store::DEFAULT_MAX_GROUP,
            None,
        )
        .map_err(|source| HubError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let releases = dir.join(RELEASES_DIR);
        std::fs::create_dir_all(&releases).map_err(|e| io_error(&releases, e))?;
        let store_id = store_id(&db.open_tree("meta")?)?;
        let store = Store {
            store_id,
            submissions: db.open_tree("submissions")?,
            audit: db.open_tree("audit")?,
            db,
            cache: RwLock::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            dir: dir.to_owned(),
            releases,
            doomed: Mutex::new(Vec::new()),
            files: Mutex::new(()),
            committer,
        };
        store.purge_superseded()?;
        store.move_cells_to_files()?;
        // The index of older stores: the submissions tree now says it all.
        store.db.drop_tree("latest")?;
        store.db.flush()?;
        store.sweep_release_files()?;
        let mut cache: LatestIndex = HashMap::new();
        for entry in store.submissions.iter() {
            let (key, value) = entry?;
            let stored = store.decode(&key, &value)?;
            let latest = to_latest(&stored)?;
            cache
                .entry(stored.period)
                .or_default()
                .insert(stored.site_code, Arc::new(latest));
        }
        *store.cache.write().unwrap_or_else(|e| e.into_inner()) = cache;
        Ok(store)
    }

    /// Deletes every revision but the newest of each site and period (left
    /// by stores written before the hub kept only its current releases),
    /// auditing each, and marks the kept one revised.
    fn purge_superseded(&self) -> Result<(), HubError> {
        let mut newest: HashMap<Vec<u8>, (Vec<u8>, StoredSubmission)> = HashMap::new();
        let mut older = Vec::new();
        for entry in self.submissions.iter() {
            let (key, value) = entry?;
            let stored: StoredSubmission = serde_json::from_slice(&value).map_err(corrupt)?;
            let pkey = key[..key.len().saturating_sub(8)].to_vec();
            // Keys come in ascending revision order within a prefix.
            if let Some(prev) = newest.insert(pkey, (key.to_vec(), stored)) {
                older.push(prev);
            }
        }
        if older.is_empty() {
            return Ok(());
        }
        let now = now_unix();
        let mut batch = sled::Batch::default();
        for (key, old) in &older {
            let pkey = &key[..key.len() - 8];
            let reason = "superseded (deleted when the hub started keeping only current releases)"
                .to_owned();
            self.audit(&AuditEvent::removal(old, "deleted", reason, now))?;
            batch.remove(key.as_slice());
            if let Some((nkey, newer)) = newest.get_mut(pkey) {
                if !newer.revised {
                    newer.revised = true;
                    batch.insert(nkey.as_slice(), serde_json::to_vec(newer).map_err(corrupt)?);
                }
            }
        }
        self.submissions.apply_batch(batch)?;
        tracing::info!(
            deleted = older.len(),
            "deleted superseded revisions kept by an older hub"
        );
        Ok(())
    }

    /// Moves the cells of entries written by an older hub (inside the sled
    /// value) into release files.
    fn move_cells_to_files(&self) -> Result<(), HubError> {
        for entry in self.submissions.iter() {
            let (key, value) = entry?;
            let mut stored: StoredSubmission = serde_json::from_slice(&value).map_err(corrupt)?;
            if stored.counts.is_empty() {
                continue;
            }
            self.write_cells(&key, &stored.counts)?;
            stored.counts.clear();
            self.submissions
                .insert(key, serde_json::to_vec(&stored).map_err(corrupt)?)?;
        }
        Ok(())
    }

    /// Deletes release files (and unfinished `.tmp` ones) that no entry names.
    fn sweep_release_files(&self) -> Result<(), HubError> {
        let dir = std::fs::read_dir(&self.releases).map_err(|e| io_error(&self.releases, e))?;
        for entry in dir {
            let path = entry.map_err(|e| io_error(&self.releases, e))?.path();
            let named = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|h| {
                    (0..h.len() / 2)
                        .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .map(|key| self.submissions.contains_key(key))
                .transpose()?
                .unwrap_or(false);
            if !named {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }

    /// The file holding the cells of the release stored under `key`.
    fn release_file(&self, key: &[u8]) -> PathBuf {
        self.releases.join(format!("{}.json", hex(key)))
    }

    /// Writes the cells of the release under `key` durably: a temporary
    /// file, synced, renamed into place, and the directory synced.
    fn write_cells(&self, key: &[u8], counts: &[Count]) -> Result<(), HubError> {
        use std::io::Write;
        let path = self.release_file(key);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(counts).map_err(corrupt)?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        std::fs::File::open(&self.releases)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.releases, e))
    }

    /// A stored entry with its cells (from its file, or from the value as
    /// an older hub wrote it).
    fn decode(&self, key: &[u8], value: &[u8]) -> Result<StoredSubmission, HubError> {
        let mut stored: StoredSubmission = serde_json::from_slice(value).map_err(corrupt)?;
        if stored.counts.is_empty() {
            let path = self.release_file(key);
            let bytes = std::fs::read(&path).map_err(|e| {
                corrupt(format!(
                    "the cells of a stored release ({}): {e}",
                    path.display()
                ))
            })?;
            stored.counts = serde_json::from_slice(&bytes).map_err(corrupt)?;
        }
        Ok(stored)
    }

    /// Deletes the files of releases whose removal is durable.
    fn delete_files(&self, doomed: Vec<PathBuf>) {
        if doomed.is_empty() {
            return;
        }
        // Never wait for a backup on the async path: leave them for the next flush.
        let _files = match self.files.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.doomed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(doomed);
                return;
            }
        };
        for path in doomed {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Left for the sweep on the next open.
                Err(e) => {
                    tracing::error!(error = %e, "deleting a superseded release's file failed")
                }
            }
        }
    }

    /// The current release of one site and period, with its key.
    fn current(&self, pkey: &[u8]) -> Result<Option<(sled::IVec, StoredSubmission)>, HubError> {
        // One entry per prefix; the last is the newest should a crash ever leave two.
        match self.submissions.scan_prefix(pkey).next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                let stored = serde_json::from_slice(&value).map_err(corrupt)?;
                Ok(Some((key, stored)))
            }
            None => Ok(None),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<StoredSubmission>, HubError> {
        self.submissions
            .get(key)?
            .map(|v| self.decode(key, &v))
            .transpose()
    }

    fn stripe(&self, site: &str, period: Period) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (site, period).hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    /// Stores a validated submission. The same content as the current release
    /// (under any revision number) is a duplicate, acknowledged without a
    /// write; a higher revision with other content replaces the current
    /// release (one batch: insert the new, delete the old, after auditing the
    /// old one's digest and dates); a lower one is SUPERSEDED and not stored.
    /// The current revision with other content is a [`HubError::Conflict`].
    /// Not durable until [`Store::flush`].
    pub fn record(&self, mut sub: StoredSubmission) -> Result<Receipt, HubError> {
        let pkey = period_key(&sub.site_code, sub.period);
        let rkey = revision_key(&sub.site_code, sub.period, sub.revision);
        let _guard = self
            .stripe(&sub.site_code, sub.period)
            .lock()
            .unwrap_or_else(|e| e.into_inner());

        let current = self.current(&pkey)?;
        if let Some((_, cur)) = &current {
            if cur.digest == sub.digest {
                return Ok(Receipt {
                    outcome: StoreOutcome::Duplicate,
                    current_revision: cur.revision,
                    current_digest: cur.digest.clone(),
                    received_at_unix: cur.received_at_unix,
                });
            }
            if sub.revision == cur.revision {
                return Err(HubError::Conflict(format!(
                    "revision {} for {} {} is already stored with different content (digest {}); \
                     send changed aggregates as a higher revision",
                    sub.revision, sub.site_code, sub.period, cur.digest
                )));
            }
            if sub.revision < cur.revision {
                return Ok(Receipt {
                    outcome: StoreOutcome::Superseded,
                    current_revision: cur.revision,
                    current_digest: cur.digest.clone(),
                    received_at_unix: sub.received_at_unix,
                });
            }
        }
        sub.revised = current.is_some();
        let latest_value = to_latest(&sub)?;
        self.write_cells(&rkey, &sub.counts)?;
        let meta = StoredSubmission {
            counts: Vec::new(),
            ..sub.clone()
        };
        let value = serde_json::to_vec(&meta).map_err(corrupt)?;
        let mut batch = sled::Batch::default();
        if let Some((old_key, old)) = &current {
            let reason = format!("superseded by revision {}", sub.revision);
            self.audit(&AuditEvent::removal(
                old,
                "deleted",
                reason,
                sub.received_at_unix,
            ))?;
            batch.remove(old_key);
        }
        batch.insert(rkey, value);
        // A batch on one tree is applied atomically: no reader or crash sees
        // both releases, or neither.
        self.submissions.apply_batch(batch)?;
        if let Some((old_key, _)) = &current {
            // Its file goes once the removal is durable (the next flush).
            self.doomed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.release_file(old_key));
        }
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sub.period)
            .or_default()
            .insert(sub.site_code.clone(), Arc::new(latest_value));
        Ok(Receipt {
            outcome: StoreOutcome::New,
            current_revision: sub.revision,
            current_digest: sub.digest.clone(),
            received_at_unix: sub.received_at_unix,
        })
    }

    /// Deletes `site`'s releases whose period kind `keep` refuses (the
    /// registry changed the site's series), auditing each as withdrawn.
    /// Returns how many were withdrawn.
    pub fn withdraw_series(
        &self,
        site: &str,
        keep: impl Fn(Period) -> bool,
        reason: &str,
    ) -> Result<usize, HubError> {
        let _all: Vec<_> = self
            .stripes
            .iter()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut gone = Vec::new();
        for entry in self.submissions.scan_prefix(site.as_bytes()) {
            let (key, value) = entry?;
            let stored: StoredSubmission = serde_json::from_slice(&value).map_err(corrupt)?;
            if stored.site_code == site && !keep(stored.period) {
                gone.push((key, stored));
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        let now = now_unix();
        let mut batch = sled::Batch::default();
        for (key, old) in &gone {
            self.audit(&AuditEvent::removal(
                old,
                "withdrawn",
                reason.to_owned(),
                now,
            ))?;
            batch.remove(key);
        }
        self.submissions.apply_batch(batch)?;
        self.db.flush()?;
        for (key, _) in &gone {
            let path = self.release_file(key);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(&path, e));
                }
                _ => {}
            }
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for (_, old) in &gone {
            if let Some(sites) = cache.get_mut(&old.period) {
                sites.remove(site);
                if sites.is_empty() {
                    cache.remove(&old.period);
                }
            }
        }
        Ok(gone.len())
    }

    /// Every stored revision number for one site and period, ascending: at
    /// most one, the current release.
    pub fn revisions(&self, site: &str, period: Period) -> Result<Vec<u64>, HubError> {
        let prefix = period_key(site, period);
        self.submissions
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, _) = entry?;
                read_u64(&key[prefix.len()..])
            })
            .collect()
    }

    /// One stored revision.
    pub fn submission(
        &self,
        site: &str,
        period: Period,
        revision: u64,
    ) -> Result<Option<StoredSubmission>, HubError> {
        self.get(&revision_key(site, period, revision))
    }

    /// The id of this data directory (see the `meta` tree above).
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// `site`'s current releases after `after` (all, with `None`), in period
    /// order, at most `limit`; and whether more follow. From memory.
    pub fn releases_of(
        &self,
        site: &str,
        after: Option<Period>,
        limit: usize,
    ) -> (Vec<ReleaseSummary>, bool) {
        let mut all: Vec<ReleaseSummary> = self.with_latest(|l| {
            l.iter()
                .filter(|(p, _)| after.is_none_or(|a| **p > a))
                .filter_map(|(p, sites)| {
                    sites.get(site).map(|x| ReleaseSummary {
                        period: *p,
                        revision: x.revision,
                        digest: x.digest.clone(),
                    })
                })
                .collect()
        });
        all.sort_by_key(|r| r.period);
        let more = all.len() > limit;
        all.truncate(limit);
        (all, more)
    }

    /// Runs `f` over the in-memory latest tables, under a read lock.
    pub fn with_latest<R>(&self, f: impl FnOnce(&LatestIndex) -> R) -> R {
        let guard = self.cache.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// Appends to the audit log.
    pub fn audit(&self, event: &AuditEvent) -> Result<(), HubError> {
        let id = self.db.generate_id()?;
        let line = serde_json::to_vec(event).map_err(corrupt)?;
        self.audit.insert(id.to_be_bytes(), line)?;
        Ok(())
    }

    /// The whole audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEvent>, HubError> {
        self.audit
            .iter()
            .map(|entry| {
                let (_, v) = entry?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }

    /// Writes a consistent backup into `dest` (new or empty) while the hub
    /// serves. It holds every write stripe, so no submission is half recorded
    /// (a revision stored but its `latest` entry not yet moved) in the copy;
    /// submissions wait meanwhile. The audit log is append-only and is copied
    /// as far as it has got.
    pub fn backup(&self, dest: &Path) -> Result<BackupSummary, BackupError> {
        let _all: Vec<_> = self
            .stripes
            .iter()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let _files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        lacnet_store::backup::write(&self.db, &BACKUP_SPEC, &self.dir, dest)
    }

    /// Makes everything written so far durable. Concurrent callers share one
    /// fsync (group commit): the flush runs on the store's writer thread
    /// (`lacnet_store::Committer`), which takes every caller waiting when it
    /// starts. One flush at a time, never `flush_async`: sled 0.34's
    /// `flush_async` from many tasks at once can fill sled's own I/O pool
    /// with waiting flushes and deadlock.
    ///
    /// The files of releases removed before the flush started are deleted
    /// after it (removals made meanwhile wait for the next flush).
    pub async fn flush(&self) -> Result<(), HubError> {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(|e| e.into_inner()));
        let flushed = self
            .committer
            .run("flush", lacnet_store::Durability::Flush, |_: &mut ()| ())
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()));
        match flushed {
            Ok(()) => self.delete_files(doomed),
            // Not durable: keep them for a later flush (or the sweep on open).
            Err(_) => self
                .doomed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(doomed),
        }
        flushed
    }

    /// Whether the disk has failed (a flush returned an I/O error or hung).
    pub fn health(&self) -> lacnet_store::Health {
        self.committer.health()
    }

    /// Finishes pending flushes and stops the writer thread.
    pub fn close(&self) {
        self.committer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(rev: u64, v: u64) -> StoredSubmission {
        StoredSubmission {
            site_code: "E06000034".into(),
            period: Period::parse("2024-Q1").unwrap(),
            revision: rev,
            digest: format!("digest-{v}"),
            policy: DisclosurePolicy::default(),
            counts: vec![Count::Value(v); METRIC_COUNT],
            generated_at_unix: 1,
            received_at_unix: 2,
            revised: false,
        }
    }

    fn current(store: &Store) -> Option<u64> {
        let p = Period::parse("2024-Q1").unwrap();
        store.with_latest(|l| {
            l.get(&p)
                .and_then(|m| m.get("E06000034"))
                .map(|l| l.revision)
        })
    }

    #[test]
    fn only_the_current_release_is_kept_and_late_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let p = Period::parse("2024-Q1").unwrap();
        assert_eq!(store.record(sub(2, 10)).unwrap().outcome, StoreOutcome::New);
        assert!(
            !store
                .submission("E06000034", p, 2)
                .unwrap()
                .unwrap()
                .revised
        );
        assert_eq!(
            store.record(sub(2, 10)).unwrap().outcome,
            StoreOutcome::Duplicate
        );
        // Same content, another revision number: a duplicate too.
        assert_eq!(
            store.record(sub(3, 10)).unwrap().outcome,
            StoreOutcome::Duplicate
        );
        let late = store.record(sub(1, 5)).unwrap();
        assert_eq!(
            (late.outcome, late.current_revision),
            (StoreOutcome::Superseded, 2)
        );
        assert_eq!(
            store.revisions("E06000034", p).unwrap(),
            vec![2],
            "the late one is not stored"
        );
        assert_eq!(current(&store), Some(2));
        assert!(matches!(
            store.record(sub(2, 15)),
            Err(HubError::Conflict(_))
        ));
        assert_eq!(store.record(sub(4, 20)).unwrap().outcome, StoreOutcome::New);
        assert_eq!(
            store.revisions("E06000034", p).unwrap(),
            vec![4],
            "revision 2 is deleted"
        );
        assert!(store.submission("E06000034", p, 2).unwrap().is_none());
        assert!(
            store
                .submission("E06000034", p, 4)
                .unwrap()
                .unwrap()
                .revised
        );
        let deleted: Vec<_> = store
            .audit_log()
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == "deleted")
            .collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].revision, Some(2));
        assert_eq!(deleted[0].digest.as_deref(), Some("digest-10"));
        assert_eq!(
            (deleted[0].generated_at_unix, deleted[0].received_at_unix),
            (Some(1), Some(2))
        );
        drop(store);
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(current(&store), Some(4));
        assert_eq!(store.revisions("E06000034", p).unwrap(), vec![4]);
        assert!(store.with_latest(|l| l[&p]["E06000034"].revised));
    }

    #[test]
    fn superseded_revisions_of_an_older_store_are_purged_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What an older hub left: every revision, and a `latest` tree.
            let db = sled::open(dir.path()).unwrap();
            let t = db.open_tree("submissions").unwrap();
            let p = Period::parse("2024-Q1").unwrap();
            for (rev, v) in [(1, 5), (2, 10)] {
                let mut json = serde_json::to_value(sub(rev, v)).unwrap();
                json.as_object_mut().unwrap().remove("revised");
                t.insert(
                    revision_key("E06000034", p, rev),
                    serde_json::to_vec(&json).unwrap(),
                )
                .unwrap();
            }
            db.open_tree("latest").unwrap().insert(b"x", b"y").unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let p = Period::parse("2024-Q1").unwrap();
        assert_eq!(store.revisions("E06000034", p).unwrap(), vec![2]);
        assert!(store.with_latest(|l| l[&p]["E06000034"].revised));
        assert!(
            !store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"latest")
        );
        let log = store.audit_log().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].outcome.as_str(), log[0].revision),
            ("deleted", Some(1))
        );
        assert_eq!(log[0].digest.as_deref(), Some("digest-5"));
    }

    #[test]
    fn withdrawing_a_series_deletes_only_its_periods() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let month = Period::parse("2024-01").unwrap();
        let mut m = sub(1, 7);
        m.period = month;
        store.record(m).unwrap();
        store.record(sub(1, 10)).unwrap();
        let quarterly = |p: Period| p.granularity() == lacnet_core::period::Granularity::Quarter;
        assert_eq!(
            store
                .withdraw_series("E06000034", quarterly, "test")
                .unwrap(),
            1
        );
        assert!(store.revisions("E06000034", month).unwrap().is_empty());
        assert_eq!(current(&store), Some(1));
        assert!(store.with_latest(|l| !l.contains_key(&month)));
        let log = store.audit_log().unwrap();
        assert_eq!(log.last().unwrap().outcome, "withdrawn");
        assert_eq!(
            store
                .withdraw_series("E06000034", quarterly, "test")
                .unwrap(),
            0
        );
    }

    #[test]
    fn audit_log_is_ordered_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        for i in 0..3 {
            store
                .audit(&AuditEvent {
                    at_unix: i,
                    event: "submit".into(),
                    peer: "site:E06000034".into(),
                    site: None,
                    period: None,
                    revision: Some(i as u64),
                    outcome: "refused".into(),
                    reason: None,
                    digest: None,
                    generated_at_unix: None,
                    received_at_unix: None,
                })
                .unwrap();
        }
        drop(store);
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let log = store.audit_log().unwrap();
        assert_eq!(
            log.iter().map(|e| e.at_unix).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }
}
