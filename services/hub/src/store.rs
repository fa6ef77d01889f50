//! The only module that touches sled: the current release of every site and
//! period, and the append-only audit log.
//!
//! The hub keeps only what it publishes. When a revision supersedes another,
//! the new revision is inserted in `submissions` and then the old one
//! deleted, both durable with the group's one flush, so a person erased at
//! the site is gone from the hub once the next release lands; the old
//! release's digest and dates stay in the audit log (written first, so
//! nothing is deleted unrecorded). A crash between the two leaves both, and
//! open deletes the older (sled recovers its log in order, so never the
//! deletion without the insert). A late, older revision is refused without
//! being stored (SUPERSEDED).
//!
//! sled is log-structured: a removed value's bytes stay in its log until
//! the segment happens to be cleaned (see `lacnet_store::sled_quirks`). So
//! the cells of each release are not in sled but in a pack file under
//! `releases/`, one per group of writes, written and synced before the sled
//! entries that name it; once a removal is durable its cells are zeroed in
//! place, and a pack with nothing live left is deleted. On open, files and
//! ranges no entry names (a crash between the two) are deleted or zeroed.
//!
//! Trees and files:
//! - `submissions`: `site | granularity | period ordinal | revision` (big-endian)
//!   → JSON record without its cells, with where they are (pack, offset,
//!   length); one entry per site and period.
//! - `releases/pack-<id>.cells`: the cells (JSON) of the releases one group
//!   wrote, side by side; `releases/<hex of a key>.json`: the cells of one
//!   release, as older hubs wrote them (still read, and deleted once superseded).
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
//! Every write is a named job on `lacnet-store`'s one writer thread (the
//! door the site agent uses too), metered by name: submissions, audit
//! entries, withdrawals, backups and flushes. Because one thread decides
//! and writes, "is this newer than the current one?" and the write are
//! atomic under any number of concurrent submitters, and a submission is
//! acknowledged only once its group's pack and sled's flush are on disk.
//! Reports read only the current releases, so those are also held in
//! memory (rebuilt from `submissions` on open) and a report never touches
//! the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use lacnet_core::disclosure::{Count, DisclosurePolicy, Published};
use lacnet_core::metrics::METRIC_COUNT;
use lacnet_core::period::Period;
use lacnet_store::backup::{BackupError, Spec as BackupSpec, Summary as BackupSummary};
use lacnet_store::{CommitError, Committer, Durability, Observer};
use serde::{Deserialize, Serialize};

use crate::HubError;
use crate::clock::Clock;

/// What a backup holds: every tree above.
pub const BACKUP_SPEC: BackupSpec<'static> = BackupSpec {
    service: "lacnet-hub",
    trees: &["submissions", "audit"],
    files_dir: Some(RELEASES_DIR),
};

/// The directory (in the data dir) of the files holding each release's cells.
pub const RELEASES_DIR: &str = "releases";

/// How a pack file's name ends (`pack-<id as 16 hex digits>.cells`).
const PACK_SUFFIX: &str = ".cells";

/// Groups append to the newest pack until it holds this many bytes: an
/// append costs one `fdatasync`, a new file two syncs and an inode.
const PACK_BYTES: u64 = 8 * 1024 * 1024;

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

/// The hub's storage. Reads are served here from any thread; every write is
/// a named job on the store's one writer thread (see [`Writer`]).
pub struct Store {
    submissions: sled::Tree,
    audit: sled::Tree,
    cache: Arc<RwLock<LatestIndex>>,
    /// See the `meta` tree above.
    store_id: String,
    /// The data directory.
    dir: PathBuf,
    /// `dir/releases`.
    releases: PathBuf,
    /// The one door for writes, shared with the site agent.
    committer: Committer<Writer>,
    /// What "now" is for the entries the store writes itself.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where a release's cells are on disk: a range of a pack file. An entry
/// without one (written by an older hub) has a file of its own,
/// `releases/<hex of its key>.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct CellsAt {
    pack: u64,
    offset: u64,
    len: u64,
}

/// A `submissions` value: the record without its cells, and where they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    sub: StoredSubmission,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cells_at: Option<CellsAt>,
}

/// A submission to record, with what the writer thread needs of it
/// prepared before it gets there: its cells as they go into a pack, and
/// its table as reports read it.
struct Encoded {
    sub: StoredSubmission,
    cells: Vec<u8>,
    latest: Latest,
}

impl Encoded {
    fn new(sub: StoredSubmission) -> Result<Encoded, HubError> {
        // About a dozen bytes a cell (`{"Value":120},`): one allocation.
        let mut cells = Vec::with_capacity(16 * sub.counts.len() + 2);
        serde_json::to_writer(&mut cells, &sub.counts).map_err(corrupt)?;
        Ok(Encoded {
            cells,
            latest: to_latest(&sub)?,
            sub,
        })
    }
}

/// Cells to remove from disk once the removal of their entry is durable.
#[derive(Debug)]
enum Doomed {
    /// A range of a pack: zeroed, or the whole pack deleted when nothing in it is live.
    Packed(CellsAt),
    /// A file of its own (an older hub's).
    File(PathBuf),
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

fn published(counts: &[Count]) -> Result<Published, HubError> {
    let counts: [Count; METRIC_COUNT] = counts.try_into().map_err(|_| {
        corrupt(format!(
            "stored submission has {} cells, expected {METRIC_COUNT}",
            counts.len()
        ))
    })?;
    Ok(Published { counts })
}

/// The store's id from `meta`, made if the tree has none (durable with the
/// job's flush).
fn store_id(meta: &sled::Tree, clock: &dyn Clock) -> Result<String, HubError> {
    if let Some(id) = meta.get(b"store_id")? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    use std::hash::BuildHasher;
    // Random enough to tell two data directories apart; not a secret
    // (`RandomState` is seeded per process, so a mock clock changes nothing).
    let nanos = clock.now_nanos();
    let id = format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()))
    );
    meta.insert(b"store_id", id.as_bytes())?;
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

/// The file of pack `id`.
fn pack_file(releases: &Path, id: u64) -> PathBuf {
    releases.join(format!("pack-{id:016x}{PACK_SUFFIX}"))
}

/// The id of a pack file's name.
fn pack_id(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("pack-")?.strip_suffix(PACK_SUFFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

/// The file of a release stored (by an older hub) in a file of its own.
fn own_file(releases: &Path, key: &[u8]) -> PathBuf {
    releases.join(format!("{}.json", lacnet_core::hex::encode(key)))
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed into
/// place, and the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Reads an entry's cells from its pack or its own file.
fn read_cells(releases: &Path, key: &[u8], entry: &Entry) -> Result<Vec<Count>, HubError> {
    let bytes = match entry.cells_at {
        Some(at) => {
            use std::os::unix::fs::FileExt;
            let path = pack_file(releases, at.pack);
            let len = usize::try_from(at.len).map_err(corrupt)?;
            let mut buf = vec![0; len];
            std::fs::File::open(&path)
                .and_then(|f| f.read_exact_at(&mut buf, at.offset))
                .map_err(|e| {
                    corrupt(format!(
                        "the cells of a stored release ({}): {e}",
                        path.display()
                    ))
                })?;
            buf
        }
        None => {
            let path = own_file(releases, key);
            std::fs::read(&path).map_err(|e| {
                corrupt(format!(
                    "the cells of a stored release ({}): {e}",
                    path.display()
                ))
            })?
        }
    };
    serde_json::from_slice(&bytes).map_err(corrupt)
}

/// What one group of jobs stages before its persist step makes it durable.
#[derive(Default)]
struct Group {
    /// The pack of the cells of this group's new releases, if it has any.
    pack: Option<u64>,
    /// Where in that pack they start (its length before the group).
    base: u64,
    cells: Vec<u8>,
    /// Every `submissions` change of the group, in order: an insert
    /// (`Some`) or a removal. Not a `sled::Batch`: applying one rolls
    /// sled's log buffer twice, two more log writes per group than its
    /// flush, and the group's flush makes them durable together anyway.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The current entry of each site and period the group changed
    /// (`None`: removed), so later jobs of the group decide on it.
    staged: HashMap<Vec<u8>, Option<(Vec<u8>, Entry)>>,
    /// Cache changes, in order: the new latest table, or `None` for a removal.
    cache: Vec<(Period, String, Option<Arc<Latest>>)>,
    doomed: Vec<Doomed>,
}

/// The write side, owned by the writer thread: every job gets `&mut Writer`.
///
/// A group of submissions is made durable with one data sync and one sled
/// flush, not two fsyncs per submission: the cells of all its new releases
/// are appended to the newest pack file (a new one, synced with its
/// directory, when it is full), which is synced before the sled entries
/// naming them are written, and then sled flushes once. So no crash
/// leaves an entry naming cells that are not on disk. The cells of a
/// removed release are zeroed in their pack (and a pack with nothing live
/// deleted) once the removal is durable.
pub struct Writer {
    db: sled::Db,
    submissions: sled::Tree,
    audit: sled::Tree,
    releases: PathBuf,
    cache: Arc<RwLock<LatestIndex>>,
    next_pack: u64,
    /// Live releases in each pack.
    live: HashMap<u64, usize>,
    /// The pack groups append to, and its length.
    open_pack: Option<(u64, std::fs::File, u64)>,
    group: Group,
    /// Removed by applied writes, not yet known to be durable.
    doomed: Vec<Doomed>,
    /// Why a job that nobody waits for (an audit entry) failed: the next
    /// persist step fails the store with it.
    poisoned: Option<String>,
}

impl Writer {
    /// The current release of one site and period, with its key: as this
    /// group left it, else as sled holds it. The in-memory index holds
    /// every current release of the groups before this one, so a period it
    /// lacks (a first release, the common case) costs no read of sled.
    fn current(
        &self,
        pkey: &[u8],
        period: Period,
        site: &str,
    ) -> Result<Option<(Vec<u8>, Entry)>, HubError> {
        if let Some(staged) = self.group.staged.get(pkey) {
            return Ok(staged.clone());
        }
        let indexed = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&period)
                .is_some_and(|sites| sites.contains_key(site))
        };
        if !indexed {
            return Ok(None);
        }
        // One entry per prefix; the last is the newest should a crash ever leave two.
        match self.submissions.scan_prefix(pkey).next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                let entry: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
                Ok(Some((key.to_vec(), entry)))
            }
            None => Ok(None),
        }
    }

    /// The first job of every open: gives the store an id if it has none,
    /// then brings an older or interrupted store up to date (see
    /// [`purge_superseded`] and [`move_cells_to_files`]). Each step is
    /// idempotent, so a kill part-way through is finished by the next open.
    fn repair(&mut self, clock: &dyn Clock) -> Result<String, HubError> {
        let store_id = store_id(&self.db.open_tree("meta")?, clock)?;
        purge_superseded(&self.db, &self.submissions, &self.audit, clock.now_unix())?;
        move_cells_to_files(&self.submissions, &self.releases)?;
        // The index of older stores: the submissions tree now says it all.
        self.db.drop_tree("latest")?;
        Ok(store_id)
    }

    /// The second job of every open, once the repairs are durable: brings
    /// `releases/` in line with the entries and rebuilds the in-memory index
    /// of current releases from them.
    fn index(&mut self) -> Result<(), HubError> {
        let (live, next_pack) = sweep_release_files(&self.submissions, &self.releases)?;
        let mut index: LatestIndex = HashMap::new();
        for item in self.submissions.iter() {
            let (key, value) = item?;
            let mut entry: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
            entry.sub.counts = read_cells(&self.releases, &key, &entry)?;
            let latest = to_latest(&entry.sub)?;
            index
                .entry(entry.sub.period)
                .or_default()
                .insert(entry.sub.site_code, Arc::new(latest));
        }
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.live = live;
        self.next_pack = next_pack;
        Ok(())
    }

    fn doom(&mut self, key: &[u8], entry: &Entry) {
        self.group.doomed.push(match entry.cells_at {
            Some(at) => Doomed::Packed(at),
            None => Doomed::File(own_file(&self.releases, key)),
        });
    }

    /// Appends to the audit log (durable with the group's flush).
    fn audit(&mut self, event: &AuditEvent) -> Result<(), HubError> {
        let line = serde_json::to_vec(event).map_err(corrupt)?;
        let id = self.db.generate_id()?;
        self.audit.insert(id.to_be_bytes(), line)?;
        Ok(())
    }

    /// See [`Store::record`]. Everything fallible happens before the group
    /// is touched, so a failed job stages nothing.
    fn record(&mut self, new: Encoded) -> Result<Receipt, HubError> {
        let Encoded {
            mut sub,
            cells,
            mut latest,
        } = new;
        let pkey = period_key(&sub.site_code, sub.period);
        let current = self.current(&pkey, sub.period, &sub.site_code)?;
        if let Some((_, cur)) = &current {
            let cur = &cur.sub;
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
        latest.revised = sub.revised;
        let rkey = revision_key(&sub.site_code, sub.period, sub.revision);
        let (pack, base) = match (self.group.pack, &self.open_pack) {
            (Some(pack), _) => (pack, self.group.base),
            (None, Some((id, _, len))) if *len < PACK_BYTES => (*id, *len),
            (None, _) => (self.next_pack, 0),
        };
        let at = CellsAt {
            pack,
            offset: base + self.group.cells.len() as u64,
            len: cells.len() as u64,
        };
        let receipt = Receipt {
            outcome: StoreOutcome::New,
            current_revision: sub.revision,
            current_digest: sub.digest.clone(),
            received_at_unix: sub.received_at_unix,
        };
        let (period, site) = (sub.period, sub.site_code.clone());
        // The cells are in the pack, not in the entry.
        sub.counts = Vec::new();
        let entry = Entry {
            sub,
            cells_at: Some(at),
        };
        let value = serde_json::to_vec(&entry).map_err(corrupt)?;
        if let Some((_, old)) = &current {
            // Audited first, so nothing is deleted unrecorded.
            let reason = format!("superseded by revision {}", receipt.current_revision);
            self.audit(&AuditEvent::removal(
                &old.sub,
                "deleted",
                reason,
                receipt.received_at_unix,
            ))?;
        }
        self.group.pack = Some(pack);
        self.group.base = base;
        self.group.cells.extend_from_slice(&cells);
        // The new entry before the removal of the old: a crash between the
        // two leaves both, never neither.
        self.group.writes.push((rkey.clone(), Some(value)));
        if let Some((old_key, old)) = &current {
            self.group.writes.push((old_key.clone(), None));
            self.doom(old_key, old);
        }
        self.group.staged.insert(pkey, Some((rkey, entry)));
        self.group
            .cache
            .push((period, site, Some(Arc::new(latest))));
        Ok(receipt)
    }

    /// See [`Store::withdraw_series`].
    fn withdraw_series(
        &mut self,
        site: &str,
        keep: impl Fn(Period) -> bool,
        reason: &str,
        now: i64,
    ) -> Result<usize, HubError> {
        let mut gone = Vec::new();
        for item in self.submissions.scan_prefix(site.as_bytes()) {
            let (key, value) = item?;
            let entry: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
            if entry.sub.site_code == site && !keep(entry.sub.period) {
                gone.push((key.to_vec(), entry));
            }
        }
        for (_, old) in &gone {
            self.audit(&AuditEvent::removal(
                &old.sub,
                "withdrawn",
                reason.to_owned(),
                now,
            ))?;
        }
        for (key, old) in &gone {
            self.group.writes.push((key.clone(), None));
            self.doom(key, old);
            self.group
                .staged
                .insert(period_key(site, old.sub.period), None);
            self.group
                .cache
                .push((old.sub.period, site.to_owned(), None));
        }
        Ok(gone.len())
    }

    /// The persist step of a group: the pack (synced) before the entries
    /// that name it, then the in-memory index. sled's flush follows.
    fn persist(&mut self) -> Result<(), HubError> {
        if let Some(reason) = &self.poisoned {
            return Err(HubError::Unavailable(reason.clone()));
        }
        let group = std::mem::take(&mut self.group);
        // Cells this group wrote: never counted live, so not uncounted when doomed.
        let fresh = |at: &CellsAt| Some(at.pack) == group.pack && at.offset >= group.base;
        if let Some(pack) = group.pack {
            self.write_pack(pack, group.base, &group.cells)?;
            let live = group
                .staged
                .values()
                .flatten()
                .filter(|(_, e)| e.cells_at.as_ref().is_some_and(fresh))
                .count();
            *self.live.entry(pack).or_default() += live;
        }
        if group.cache.is_empty() {
            return Ok(());
        }
        for (key, value) in group.writes {
            match value {
                Some(value) => self.submissions.insert(key, value)?,
                None => self.submissions.remove(key)?,
            };
        }
        for doomed in &group.doomed {
            if let Doomed::Packed(at) = doomed
                && !fresh(at)
                && let Some(n) = self.live.get_mut(&at.pack)
            {
                *n = n.saturating_sub(1);
            }
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        for (period, site, latest) in group.cache {
            match latest {
                Some(latest) => {
                    cache.entry(period).or_default().insert(site, latest);
                }
                None => {
                    if let Some(sites) = cache.get_mut(&period) {
                        sites.remove(&site);
                        if sites.is_empty() {
                            cache.remove(&period);
                        }
                    }
                }
            }
        }
        drop(cache);
        self.doomed.extend(group.doomed);
        Ok(())
    }

    /// Makes a group's `cells` durable at `base` in `pack`: appended to the
    /// open pack (one data sync), or a new pack file.
    fn write_pack(&mut self, pack: u64, base: u64, cells: &[u8]) -> Result<(), HubError> {
        use std::os::unix::fs::FileExt;
        let path = pack_file(&self.releases, pack);
        match &mut self.open_pack {
            Some((id, file, len)) if *id == pack && *len == base => {
                file.write_all_at(cells, base)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error(&path, e))?;
                *len += cells.len() as u64;
            }
            _ => {
                write_durably(&path, cells)?;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                self.open_pack = Some((pack, file, cells.len() as u64));
                self.next_pack = pack + 1;
            }
        }
        Ok(())
    }

    /// After a durable flush: removes the cells whose entries are gone.
    /// Not synced: a crash before the kernel writes it back is repaired by
    /// the sweep on the next open.
    fn settle(&mut self) {
        for doomed in std::mem::take(&mut self.doomed) {
            let done = match doomed {
                Doomed::File(path) => remove_if_present(&path),
                Doomed::Packed(at) if self.live.get(&at.pack).is_none_or(|n| *n == 0) => {
                    self.live.remove(&at.pack);
                    if self
                        .open_pack
                        .as_ref()
                        .is_some_and(|(id, ..)| *id == at.pack)
                    {
                        self.open_pack = None;
                    }
                    remove_if_present(&pack_file(&self.releases, at.pack))
                }
                Doomed::Packed(at) => zero(&pack_file(&self.releases, at.pack), at.offset, at.len),
            };
            if let Err(e) = done {
                tracing::error!(error = %e, "removing a superseded release's cells failed (the next start retries)");
            }
        }
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Overwrites `len` bytes of `path` at `offset` with zeros, in place.
fn zero(path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = match std::fs::OpenOptions::new().write(true).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    f.write_all_at(&vec![0; len], offset)
}

fn commit_error(e: CommitError) -> HubError {
    HubError::Unavailable(e.to_string())
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the writer thread,
    /// whose first jobs bring an older or interrupted store up to date and
    /// rebuild the in-memory index of current releases.
    /// Times it stamps (audit entries of deletions) come from the system clock.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, HubError> {
        Store::open_with(dir, cache_bytes, None, Arc::new(lacnet_clock::SystemClock))
    }

    /// [`Store::open`], with an observer told of every named write
    /// (metrics) and the clock that stamps what the store writes itself.
    pub fn open_with(
        dir: &Path,
        cache_bytes: u64,
        observer: Option<Observer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, HubError> {
        std::fs::create_dir_all(dir).map_err(|source| HubError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let db = lacnet_store::open_sled(
            &sled::Config::new().path(dir).cache_capacity(cache_bytes),
            lacnet_store::OPEN_LOCK_WAIT,
        )?;
        let releases = dir.join(RELEASES_DIR);
        std::fs::create_dir_all(&releases).map_err(|e| io_error(&releases, e))?;
        let submissions = db.open_tree("submissions")?;
        let audit = db.open_tree("audit")?;
        let cache = Arc::new(RwLock::new(HashMap::new()));
        let writer = Writer {
            db: db.clone(),
            submissions: submissions.clone(),
            audit: audit.clone(),
            releases: releases.clone(),
            cache: cache.clone(),
            next_pack: 0,
            live: HashMap::new(),
            // A new process starts a new pack: the last one's tail may be torn.
            open_pack: None,
            group: Group::default(),
            doomed: Vec::new(),
            poisoned: None,
        };
        let committer = Committer::start_with_hooks(
            "hub-store",
            db,
            writer,
            lacnet_store::DEFAULT_MAX_GROUP,
            observer,
            Some(Box::new(|w: &mut Writer, _sync| {
                w.persist().map_err(|e| e.to_string())
            })),
            Some(Box::new(Writer::settle)),
        )
        .map_err(|source| HubError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        // Open-time repairs are jobs like any other write. Two of them: the
        // sweep deletes cells that no entry names, so it must see the
        // repaired entries durable, not merely applied.
        let repair_clock = clock.clone();
        let store_id = committer
            .run_blocking("open-repair", Durability::Flush, move |w| {
                w.repair(repair_clock.as_ref())
            })
            .map_err(commit_error)??;
        committer
            .run_blocking("open-index", Durability::Flush, Writer::index)
            .map_err(commit_error)??;
        Ok(Store {
            submissions,
            audit,
            cache,
            store_id,
            dir: dir.to_owned(),
            releases,
            committer,
            clock,
        })
    }

    /// Runs a named write job on the writer thread and answers once it is
    /// durable (`durability`). A job that fails other than on its input
    /// leaves memory and disk in doubt, so it fails the store: the hub then
    /// restarts and reads what is on disk.
    async fn write<R: Send + 'static>(
        &self,
        name: &'static str,
        durability: Durability,
        f: impl FnOnce(&mut Writer) -> Result<R, HubError> + Send + 'static,
    ) -> Result<R, HubError> {
        let out = self
            .committer
            .run(name, durability, f)
            .await
            .map_err(commit_error)?;
        self.failed_unless_input(name, out)
    }

    fn failed_unless_input<R>(
        &self,
        name: &'static str,
        out: Result<R, HubError>,
    ) -> Result<R, HubError> {
        match out {
            Err(e) if !matches!(e, HubError::Conflict(_)) => {
                self.committer.fail(&format!("{name}: {e}"));
                Err(e)
            }
            other => other,
        }
    }

    /// Stores a validated submission and answers once it is durable;
    /// concurrent submitters share one pack file and one flush (group
    /// commit). The same content as the current release (under any revision
    /// number) is a duplicate, acknowledged without a write; a higher
    /// revision with other content replaces the current release (insert
    /// the new, delete the old, after auditing the old one's digest and
    /// dates); a lower one is SUPERSEDED and not stored. The current
    /// revision with other content is a [`HubError::Conflict`].
    ///
    /// `audit` is the submission's own audit entry, written in the same job
    /// with the outcome filled in (unless the submission is a conflict,
    /// which its caller audits as refused).
    pub async fn record(
        &self,
        sub: StoredSubmission,
        audit: AuditEvent,
    ) -> Result<Receipt, HubError> {
        // Encoded here, on the caller's thread, so the one writer thread
        // spends its time deciding and writing.
        let new = Encoded::new(sub)?;
        self.write("submit", Durability::Flush, move |w| {
            let receipt = w.record(new)?;
            w.audit(&AuditEvent {
                outcome: receipt.outcome.name().into(),
                ..audit
            })?;
            Ok(receipt)
        })
        .await
    }

    /// Deletes `site`'s releases whose period kind `keep` refuses (the
    /// registry changed the site's series), auditing each as withdrawn.
    /// Returns how many were withdrawn. Blocks: for start-up.
    pub fn withdraw_series(
        &self,
        site: &str,
        keep: impl Fn(Period) -> bool + Send + 'static,
        reason: &str,
    ) -> Result<usize, HubError> {
        let (site, reason) = (site.to_owned(), reason.to_owned());
        let now = self.clock.now_unix();
        let out = self
            .committer
            .run_blocking("withdraw", Durability::Flush, move |w| {
                w.withdraw_series(&site, keep, &reason, now)
            })
            .map_err(commit_error)?;
        self.failed_unless_input("withdraw", out)
    }

    /// Appends to the audit log without waiting for the writer: the entry
    /// is written in arrival order and becomes durable with the next flush
    /// (every submission's). A failure to write it fails the store.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), HubError> {
        self.committer
            .enqueue("audit", Durability::Deferred, move |w: &mut Writer| {
                w.audit(&event).map_err(|e| {
                    let reason = format!("audit: {e}");
                    w.poisoned.get_or_insert(reason.clone());
                    reason
                })
            })
            .await
            .map_err(commit_error)
    }

    /// Every stored revision number for one site and period, ascending: at
    /// most one, the current release.
    pub fn revisions(&self, site: &str, period: Period) -> Result<Vec<u64>, HubError> {
        let prefix = period_key(site, period);
        self.submissions
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, _) = item?;
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
        let key = revision_key(site, period, revision);
        let Some(value) = self.submissions.get(&key)? else {
            return Ok(None);
        };
        let mut entry: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
        entry.sub.counts = read_cells(&self.releases, &key, &entry)?;
        Ok(Some(entry.sub))
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

    /// The whole audit log, oldest first, with every entry queued before
    /// the call. Blocks until the writer has run them.
    pub fn audit_log(&self) -> Result<Vec<AuditEvent>, HubError> {
        self.committer
            .run_blocking("barrier", Durability::Deferred, |_| ())
            .map_err(commit_error)?;
        self.audit
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }

    /// Writes a consistent backup into `dest` (new or empty) while the hub
    /// serves. It runs as a job on the writer thread, so no write interleaves
    /// (submissions wait meanwhile); it first makes the group so far durable
    /// and removes the cells it made obsolete, so the copy holds no release
    /// that is already gone. Blocks: call it off the async runtime.
    pub fn backup(&self, dest: &Path) -> Result<BackupSummary, BackupError> {
        let (dir, dest) = (self.dir.clone(), dest.to_owned());
        self.committer
            .run_blocking("backup", Durability::Flush, move |w| {
                w.persist().map_err(|e| BackupError::Store(e.to_string()))?;
                w.db.flush()?;
                w.settle();
                lacnet_store::backup::write(&w.db, &BACKUP_SPEC, &dir, &dest)
            })
            .map_err(|e| BackupError::Store(e.to_string()))?
    }

    /// Makes everything written so far durable. Concurrent callers share one
    /// flush (group commit) on the writer thread.
    pub async fn flush(&self) -> Result<(), HubError> {
        self.write("flush", Durability::Flush, |_| Ok(())).await
    }

    /// Whether the disk has failed (a flush returned an I/O error or hung).
    pub fn health(&self) -> lacnet_store::Health {
        self.committer.health()
    }

    /// Finishes pending writes with a last flush and stops the writer thread.
    pub fn close(&self) {
        self.committer.close();
    }
}

/// Deletes every revision but the newest of each site and period, auditing
/// each, and marks the kept one revised. Stores written before the hub kept
/// only its current releases have them, and so may a store whose hub
/// stopped between inserting a new revision and deleting the old one.
/// Cells the deleted entries name are left to [`sweep_release_files`].
fn purge_superseded(
    db: &sled::Db,
    submissions: &sled::Tree,
    audit: &sled::Tree,
    now: i64,
) -> Result<(), HubError> {
    let mut newest: HashMap<Vec<u8>, (Vec<u8>, Entry)> = HashMap::new();
    let mut older = Vec::new();
    for item in submissions.iter() {
        let (key, value) = item?;
        let stored: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
        let pkey = key[..key.len().saturating_sub(8)].to_vec();
        // Keys come in ascending revision order within a prefix.
        if let Some(prev) = newest.insert(pkey, (key.to_vec(), stored)) {
            older.push(prev);
        }
    }
    if older.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (key, old) in &older {
        let pkey = &key[..key.len() - 8];
        let Some((nkey, newer)) = newest.get_mut(pkey) else {
            continue;
        };
        let reason = format!(
            "superseded by revision {} (deleted when the hub opened its store)",
            newer.sub.revision
        );
        let line = serde_json::to_vec(&AuditEvent::removal(&old.sub, "deleted", reason, now))
            .map_err(corrupt)?;
        audit.insert(db.generate_id()?.to_be_bytes(), line)?;
        batch.remove(key.as_slice());
        if !newer.sub.revised {
            newer.sub.revised = true;
            batch.insert(nkey.as_slice(), serde_json::to_vec(newer).map_err(corrupt)?);
        }
    }
    submissions.apply_batch(batch)?;
    tracing::info!(
        deleted = older.len(),
        "deleted superseded revisions (kept by an older hub, or left by a stop mid-write)"
    );
    Ok(())
}

/// Moves the cells of entries written by an older hub (inside the sled
/// value) into files of their own.
fn move_cells_to_files(submissions: &sled::Tree, releases: &Path) -> Result<(), HubError> {
    for item in submissions.iter() {
        let (key, value) = item?;
        let mut stored: StoredSubmission = serde_json::from_slice(&value).map_err(corrupt)?;
        if stored.counts.is_empty() {
            continue;
        }
        let cells = serde_json::to_vec(&stored.counts).map_err(corrupt)?;
        write_durably(&own_file(releases, &key), &cells)?;
        stored.counts.clear();
        submissions.insert(key, serde_json::to_vec(&stored).map_err(corrupt)?)?;
    }
    Ok(())
}

/// Brings `releases/` in line with the entries after a crash: deletes
/// unfinished `.tmp` files, files and packs no entry names, and zeroes the
/// ranges of live packs that no entry names (cells removed just before a
/// crash). Returns the live releases per pack and the next pack's id.
fn sweep_release_files(
    submissions: &sled::Tree,
    releases: &Path,
) -> Result<(HashMap<u64, usize>, u64), HubError> {
    let mut ranges: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for item in submissions.iter() {
        let (_, value) = item?;
        let entry: Entry = serde_json::from_slice(&value).map_err(corrupt)?;
        if let Some(at) = entry.cells_at {
            ranges
                .entry(at.pack)
                .or_default()
                .push((at.offset, at.offset + at.len));
        }
    }
    let mut next_pack = 0;
    let dir = std::fs::read_dir(releases).map_err(|e| io_error(releases, e))?;
    for item in dir {
        let path = item.map_err(|e| io_error(releases, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(id) = pack_id(name) {
            next_pack = next_pack.max(id + 1);
            match ranges.get_mut(&id) {
                Some(live) => zero_gaps(&path, live)?,
                None => std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?,
            }
            continue;
        }
        let named = name
            .strip_suffix(".json")
            .and_then(|h| {
                (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .map(|key| submissions.contains_key(key))
            .transpose()?
            .unwrap_or(false);
        if !named {
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        }
    }
    let live = ranges.into_iter().map(|(id, r)| (id, r.len())).collect();
    Ok((live, next_pack))
}

/// Zeroes every byte of the pack at `path` outside the `live` ranges that
/// still holds data.
fn zero_gaps(path: &Path, live: &mut [(u64, u64)]) -> Result<(), HubError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    live.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0u64;
    for &(start, end) in live.iter() {
        if start > at {
            gaps.push((at, start));
        }
        at = at.max(end);
    }
    gaps.push((at, bytes.len() as u64));
    for (start, end) in gaps {
        let range = bytes
            .get(start as usize..(end as usize).min(bytes.len()))
            .unwrap_or(&[]);
        if range.iter().any(|b| *b != 0) {
            zero(path, start, end - start).map_err(|e| io_error(path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

    fn audit() -> AuditEvent {
        AuditEvent {
            at_unix: 3,
            event: "submit".into(),
            peer: "site:E06000034".into(),
            site: None,
            period: None,
            revision: None,
            outcome: String::new(),
            reason: None,
            digest: None,
            generated_at_unix: None,
            received_at_unix: None,
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

    #[tokio::test]
    async fn only_the_current_release_is_kept_and_late_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let p = Period::parse("2024-Q1").unwrap();
        assert_eq!(
            store.record(sub(2, 10), audit()).await.unwrap().outcome,
            StoreOutcome::New
        );
        assert!(
            !store
                .submission("E06000034", p, 2)
                .unwrap()
                .unwrap()
                .revised
        );
        assert_eq!(
            store.record(sub(2, 10), audit()).await.unwrap().outcome,
            StoreOutcome::Duplicate
        );
        // Same content, another revision number: a duplicate too.
        assert_eq!(
            store.record(sub(3, 10), audit()).await.unwrap().outcome,
            StoreOutcome::Duplicate
        );
        let late = store.record(sub(1, 5), audit()).await.unwrap();
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
            store.record(sub(2, 15), audit()).await,
            Err(HubError::Conflict(_))
        ));
        assert_eq!(
            store.record(sub(4, 20), audit()).await.unwrap().outcome,
            StoreOutcome::New
        );
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

    #[tokio::test]
    async fn superseded_revisions_of_an_older_store_are_purged_on_open() {
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
        let log = store.audit_log().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].outcome.as_str(), log[0].revision),
            ("deleted", Some(1))
        );
        assert_eq!(log[0].digest.as_deref(), Some("digest-5"));
        drop(store);
        let db = lacnet_store::open_sled(
            &sled::Config::new().path(dir.path()),
            lacnet_store::OPEN_LOCK_WAIT,
        )
        .unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"latest"));
    }

    #[tokio::test]
    async fn withdrawing_a_series_deletes_only_its_periods() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let month = Period::parse("2024-01").unwrap();
        let mut m = sub(1, 7);
        m.period = month;
        store.record(m, audit()).await.unwrap();
        store.record(sub(1, 10), audit()).await.unwrap();
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

    #[tokio::test]
    async fn audit_log_is_ordered_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        for i in 0..3 {
            store
                .audit(AuditEvent {
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
                .await
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

    /// Many tasks submit at once (new periods and revisions of shared ones):
    /// every acknowledged release is there after a reopen, and only the
    /// current release of each period has cells on disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submitters_all_acknowledged_releases_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let periods: Vec<Period> =
            std::iter::successors(Some(Period::parse("2020-Q1").unwrap()), |p| Some(p.next()))
                .take(8)
                .collect();
        let acked = {
            let store = Arc::new(Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap());
            let mut tasks = Vec::new();
            for task in 0..32u64 {
                let (store, periods) = (store.clone(), periods.clone());
                tasks.push(tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for (i, period) in periods.iter().enumerate() {
                        // Four tasks share each site, so they race on its periods.
                        let mut s = sub(1 + task % 4, 1000 * task + i as u64);
                        s.site_code = format!("E0600{:04}", task / 4);
                        s.period = *period;
                        let r = store.record(s.clone(), audit()).await.unwrap();
                        if r.outcome == StoreOutcome::New {
                            acked.push((s.site_code, s.period, s.revision));
                        }
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for t in tasks {
                acked.extend(t.await.unwrap());
            }
            store.close();
            acked
        };
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let mut newest: HashMap<(String, Period), u64> = HashMap::new();
        for (site, period, rev) in &acked {
            let n = newest.entry((site.clone(), *period)).or_default();
            *n = (*n).max(*rev);
        }
        assert_eq!(newest.len(), 8 * 8, "every site and period was stored");
        for ((site, period), rev) in &newest {
            assert_eq!(store.revisions(site, *period).unwrap(), vec![*rev]);
            let stored = store.submission(site, *period, *rev).unwrap().unwrap();
            assert_eq!(stored.counts.len(), METRIC_COUNT);
        }
        // Each release's cells are a distinct JSON array; a superseded one's
        // bytes are zeroed, so the packs hold exactly the current ones.
        let mut on_disk = 0;
        for f in std::fs::read_dir(dir.path().join(RELEASES_DIR)).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            on_disk += bytes.windows(2).filter(|w| w == b"[{").count();
        }
        assert_eq!(on_disk, newest.len());
        let submits = store
            .audit_log()
            .unwrap()
            .iter()
            .filter(|e| e.outcome == "new")
            .count();
        assert_eq!(
            submits,
            acked.len(),
            "every acknowledged submission is audited"
        );
    }

    /// What a crash can leave in `releases/` (a pack no entry names, an
    /// unfinished `.tmp`, removed cells not yet zeroed) is cleaned on open,
    /// and the current release still reads back.
    #[tokio::test]
    async fn open_sweeps_what_a_crash_left_in_the_release_files() {
        let dir = tempfile::tempdir().unwrap();
        let releases = dir.path().join(RELEASES_DIR);
        let p = Period::parse("2024-Q1").unwrap();
        {
            let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
            store.record(sub(1, 10), audit()).await.unwrap();
            store.record(sub(2, 20), audit()).await.unwrap();
        }
        let packs: Vec<PathBuf> = std::fs::read_dir(&releases)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        assert_eq!(packs.len(), 1, "both groups appended to one pack");
        let pack = &packs[0];
        let bytes = std::fs::read(pack).unwrap();
        let first_cells = serde_json::to_vec(&sub(1, 10).counts).unwrap();
        assert!(
            bytes[..first_cells.len()].iter().all(|b| *b == 0),
            "the superseded release's cells are zeroed"
        );
        // As if the process died before zeroing, and mid-way through new packs.
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(pack)
            .unwrap()
            .write_all_at(&first_cells, 0)
            .unwrap();
        std::fs::write(pack_file(&releases, 99), b"[orphan]").unwrap();
        std::fs::write(releases.join("pack-0000000000000100.tmp"), b"[torn").unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        let left: Vec<PathBuf> = std::fs::read_dir(&releases)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        assert_eq!(&left, &packs, "the orphan pack and the .tmp are gone");
        let bytes = std::fs::read(pack).unwrap();
        assert!(bytes[..first_cells.len()].iter().all(|b| *b == 0));
        let current = store.submission("E06000034", p, 2).unwrap().unwrap();
        assert_eq!(current.counts, sub(2, 20).counts);
        // New writes go to a new pack, after the highest id seen.
        let mut other = sub(1, 30);
        other.period = Period::parse("2024-Q2").unwrap();
        store.record(other, audit()).await.unwrap();
        assert!(pack_file(&releases, 100).exists());
    }

    /// Where [`open_child`] finds the store it opens.
    const OPEN_CHILD_DIR: &str = "LACNET_TEST_OPEN_CHILD_DIR";

    /// Not a test of its own (ignored, so CI skips it): the child process
    /// that [`a_kill_during_the_open_repairs_is_finished_by_the_next_open`]
    /// starts and kills. It opens the store named by `OPEN_CHILD_DIR`.
    #[test]
    #[ignore = "the child process of a SIGKILL test, started by it"]
    fn open_child() {
        if let Some(dir) = std::env::var_os(OPEN_CHILD_DIR) {
            Store::open(Path::new(&dir), crate::DEFAULT_CACHE_BYTES)
                .unwrap()
                .close();
        }
    }

    /// What a hub before packs and before it kept one revision left:
    /// `sites` site codes for one period, three revisions each, every
    /// revision's cells inside its sled value, and a `latest` tree.
    fn older_store(dir: &Path, sites: usize) {
        let db = sled::open(dir).unwrap();
        let t = db.open_tree("submissions").unwrap();
        let p = Period::parse("2024-Q1").unwrap();
        for i in 0..sites {
            for rev in 1..=3 {
                let mut s = sub(rev, i as u64 * 10 + rev);
                s.site_code = format!("E06{i:06}");
                let mut json = serde_json::to_value(&s).unwrap();
                json.as_object_mut().unwrap().remove("revised");
                let key = revision_key(&s.site_code, p, rev);
                t.insert(key, serde_json::to_vec(&json).unwrap()).unwrap();
            }
        }
        db.open_tree("latest").unwrap().insert(b"x", b"y").unwrap();
        db.flush().unwrap();
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    /// Opens `dir` in a child process and SIGKILLs it after `after` (or
    /// lets it finish when `None`). True if the kill landed before the end.
    fn open_in_child(dir: &Path, after: Option<std::time::Duration>) -> bool {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::open_child", "--ignored"])
            .args(["--test-threads=1", "--quiet"])
            .env(OPEN_CHILD_DIR, dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let Some(after) = after else {
            assert!(child.wait().unwrap().success(), "the child's open failed");
            return false;
        };
        std::thread::sleep(after);
        let finished = child.try_wait().unwrap().is_some();
        // SIGKILL: no destructor, no flush, no chance to tidy up.
        child.kill().unwrap();
        child.wait().unwrap();
        !finished
    }

    /// How far a killed open got, read from the raw sled trees: entries
    /// left (one per release once purged), cells still inside sled values,
    /// and deletions audited.
    fn progress(dir: &Path) -> (usize, usize, usize) {
        let db =
            lacnet_store::open_sled(&sled::Config::new().path(dir), lacnet_store::OPEN_LOCK_WAIT)
                .unwrap();
        let t = db.open_tree("submissions").unwrap();
        let (mut entries, mut inline) = (0, 0);
        for item in t.iter() {
            let (_, v) = item.unwrap();
            let s: StoredSubmission = serde_json::from_slice(&v).unwrap();
            entries += 1;
            inline += usize::from(!s.counts.is_empty());
        }
        let audited = db.open_tree("audit").unwrap().len();
        (entries, inline, audited)
    }

    /// A hub killed while its open repairs an older store (purging
    /// superseded revisions, moving cells out of sled) must leave a store
    /// the next open finishes: the newest revision of every release with
    /// its own cells, nothing older, and every deletion in the audit log.
    #[test]
    fn a_kill_during_the_open_repairs_is_finished_by_the_next_open() {
        const SITES: usize = 300;
        let base = tempfile::tempdir().unwrap();
        let fixture = base.path().join("fixture");
        older_store(&fixture, SITES);
        // How long an uninterrupted open takes here, so the kills land inside it.
        let timing = base.path().join("timing");
        copy_dir(&fixture, &timing);
        let started = std::time::Instant::now();
        open_in_child(&timing, None);
        let whole = started.elapsed();
        let p = Period::parse("2024-Q1").unwrap();
        let mut cut_short = 0;
        for (trial, fraction) in [0.2, 0.35, 0.5, 0.65, 0.8].into_iter().enumerate() {
            let dir = base.path().join(format!("trial-{trial}"));
            copy_dir(&fixture, &dir);
            if open_in_child(&dir, Some(whole.mul_f64(fraction))) {
                // Neither untouched (killed before the repairs began) nor done.
                let untouched = (SITES * 3, SITES * 3, 0);
                let done = (SITES, 0, SITES * 2);
                let at = progress(&dir);
                cut_short += usize::from(at != untouched && at != done);
            }
            let store = Store::open(&dir, crate::DEFAULT_CACHE_BYTES).unwrap();
            for i in 0..SITES {
                let site = format!("E06{i:06}");
                assert_eq!(store.revisions(&site, p).unwrap(), vec![3], "trial {trial}");
                let kept = store.submission(&site, p, 3).unwrap().unwrap();
                assert!(kept.revised, "trial {trial}: {site}");
                assert_eq!(
                    kept.counts,
                    vec![Count::Value(i as u64 * 10 + 3); METRIC_COUNT]
                );
            }
            assert_eq!(store.with_latest(|l| l[&p].len()), SITES);
            // At least once: a kill between an audit entry and its deletion
            // makes the next open audit that deletion again.
            let mut deleted = HashSet::new();
            for e in store.audit_log().unwrap() {
                assert_eq!(e.outcome, "deleted", "trial {trial}");
                deleted.insert((e.site.unwrap(), e.revision.unwrap()));
            }
            assert_eq!(deleted.len(), SITES * 2, "trial {trial}");
            store.close();
            drop(store);
            let (entries, inline, _) = progress(&dir);
            assert_eq!((entries, inline), (SITES, 0), "trial {trial}");
        }
        assert!(
            cut_short > 0,
            "no kill landed inside the repairs (an uninterrupted open took {whole:?})"
        );
    }
}
