//! The only module that touches sled: every revision of every submission, the
//! index of each site's latest revision per period, and the append-only audit log.
//!
//! Trees:
//! - `submissions`: `site | granularity | period ordinal | revision` (big-endian,
//!   so a prefix scan lists one site-period's revisions in order) → JSON record.
//! - `latest`: `site | granularity | period ordinal` → big-endian revision.
//! - `audit`: a monotonic id from `generate_id` (big-endian) → one JSON line.
//!
//! Reports read only the latest revisions, so those are also held in memory
//! (rebuilt from `latest` on open) and a report never touches the disk.
//! Writes to one site and period are serialised by a striped lock, so the
//! "is this newer than the latest?" decision and the index update are atomic
//! under many concurrent submitters; different sites write in parallel.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
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
    trees: &["submissions", "latest", "audit"],
    files_dir: None,
};

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
    /// Published counts in catalogue order.
    pub counts: Vec<Count>,
    /// When the site computed it (Unix seconds).
    pub generated_at_unix: i64,
    /// When the hub received it (Unix seconds).
    pub received_at_unix: i64,
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
    /// When the hub received it.
    pub received_at_unix: i64,
}

/// What storing a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored and now the latest revision.
    New,
    /// The same content was already stored; nothing written.
    Duplicate,
    /// Stored for the record; a newer revision stays current.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// What happened.
    pub outcome: StoreOutcome,
    /// The revision reports use for this site and period afterwards.
    pub current_revision: u64,
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
    /// `new`, `duplicate`, `superseded`, `served` (a report), `refused`, or `error`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
}

/// Latest tables by period, then by site code.
pub type LatestIndex = HashMap<Period, HashMap<String, Arc<Latest>>>;

/// The hub's storage.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    submissions: sled::Tree,
    latest: sled::Tree,
    audit: sled::Tree,
    cache: RwLock<LatestIndex>,
    stripes: Vec<Mutex<()>>,
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
        .map_err(|_| corrupt("latest index value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
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

fn to_latest(s: &StoredSubmission) -> Result<Latest, HubError> {
    Ok(Latest {
        revision: s.revision,
        digest: s.digest.clone(),
        policy: s.policy,
        published: published(&s.counts)?,
        received_at_unix: s.received_at_unix,
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
        let store = Store {
            submissions: db.open_tree("submissions")?,
            latest: db.open_tree("latest")?,
            audit: db.open_tree("audit")?,
            db,
            cache: RwLock::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            committer,
        };
        let mut cache: LatestIndex = HashMap::new();
        for entry in store.latest.iter() {
            let (key, value) = entry?;
            let revision = read_u64(&value)?;
            let mut full = key.to_vec();
            full.extend_from_slice(&revision.to_be_bytes());
            let stored = store
                .get(&full)?
                .ok_or_else(|| corrupt("latest index names a revision that is not stored"))?;
            let latest = to_latest(&stored)?;
            cache
                .entry(stored.period)
                .or_default()
                .insert(stored.site_code, Arc::new(latest));
        }
        *store.cache.write().unwrap_or_else(|e| e.into_inner()) = cache;
        Ok(store)
    }

    fn get(&self, key: &[u8]) -> Result<Option<StoredSubmission>, HubError> {
        self.submissions
            .get(key)?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    fn stripe(&self, site: &str, period: Period) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (site, period).hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    /// Stores a validated submission: a duplicate is acknowledged without a
    /// write, a newer revision becomes the latest, an older one is kept but
    /// never overwrites the latest. The same revision with other content is a
    /// [`HubError::Conflict`]. Not durable until [`Store::flush`].
    pub fn record(&self, sub: StoredSubmission) -> Result<Receipt, HubError> {
        let latest_value = to_latest(&sub)?;
        let pkey = period_key(&sub.site_code, sub.period);
        let rkey = revision_key(&sub.site_code, sub.period, sub.revision);
        let _guard = self
            .stripe(&sub.site_code, sub.period)
            .lock()
            .unwrap_or_else(|e| e.into_inner());

        let current = match self.latest.get(&pkey)? {
            Some(v) => {
                let rev = read_u64(&v)?;
                let key = revision_key(&sub.site_code, sub.period, rev);
                Some(
                    self.get(&key)?
                        .ok_or_else(|| corrupt("latest index names a missing revision"))?,
                )
            }
            None => None,
        };
        if let Some(existing) = self.get(&rkey)? {
            if existing.digest == sub.digest {
                let behind = current
                    .as_ref()
                    .is_none_or(|c| c.revision < existing.revision);
                if behind {
                    // Stored but never indexed (a crash between the two writes): index it now.
                    self.set_latest(&pkey, &existing)?;
                }
                return Ok(Receipt {
                    outcome: StoreOutcome::Duplicate,
                    current_revision: current
                        .map_or(existing.revision, |c| c.revision.max(existing.revision)),
                    received_at_unix: existing.received_at_unix,
                });
            }
            return Err(HubError::Conflict(format!(
                "revision {} for {} {} is already stored with different content (digest {}); \
                 send changed aggregates as a higher revision",
                sub.revision, sub.site_code, sub.period, existing.digest
            )));
        }
        if let Some(cur) = &current {
            if cur.digest == sub.digest {
                // Same content under another revision number: nothing new to store.
                return Ok(Receipt {
                    outcome: StoreOutcome::Duplicate,
                    current_revision: cur.revision,
                    received_at_unix: cur.received_at_unix,
                });
            }
        }
        let value = serde_json::to_vec(&sub).map_err(corrupt)?;
        let is_new = current.as_ref().is_none_or(|c| sub.revision > c.revision);
        if is_new {
            // Plain inserts, not a sled transaction: sled 0.34 transactions can
            // deadlock against concurrent flushes. The revision is written before
            // the index, so a crash in between leaves an unindexed revision that
            // a retry repairs (see the duplicate branch above).
            self.submissions.insert(rkey, value)?;
            self.latest.insert(pkey, &sub.revision.to_be_bytes())?;
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(sub.period)
                .or_default()
                .insert(sub.site_code.clone(), Arc::new(latest_value));
            Ok(Receipt {
                outcome: StoreOutcome::New,
                current_revision: sub.revision,
                received_at_unix: sub.received_at_unix,
            })
        } else {
            self.submissions.insert(rkey, value)?;
            Ok(Receipt {
                outcome: StoreOutcome::Superseded,
                current_revision: current.map_or(sub.revision, |c| c.revision),
                received_at_unix: sub.received_at_unix,
            })
        }
    }

    /// Points the latest index (on disk and in memory) at `sub`.
    fn set_latest(&self, pkey: &[u8], sub: &StoredSubmission) -> Result<(), HubError> {
        let latest = to_latest(sub)?;
        self.latest.insert(pkey, &sub.revision.to_be_bytes())?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sub.period)
            .or_default()
            .insert(sub.site_code.clone(), Arc::new(latest));
        Ok(())
    }

    /// Every stored revision number for one site and period, ascending.
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
        lacnet_store::backup::write(&self.db, &BACKUP_SPEC, Path::new("."), dest)
    }

    /// Makes everything written so far durable. Concurrent callers share one
    /// fsync (group commit): the flush runs on the store's writer thread
    /// (`lacnet_store::Committer`), which takes every caller waiting when it
    /// starts. One flush at a time, never `flush_async`: sled 0.34's
    /// `flush_async` from many tasks at once can fill sled's own I/O pool
    /// with waiting flushes and deadlock.
    pub async fn flush(&self) -> Result<(), HubError> {
        self.committer
            .run("flush", lacnet_store::Durability::Flush, |_: &mut ()| ())
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))
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
    fn revisions_duplicates_and_late_arrivals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(store.record(sub(2, 10)).unwrap().outcome, StoreOutcome::New);
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
        assert_eq!(current(&store), Some(2));
        assert!(matches!(
            store.record(sub(2, 15)),
            Err(HubError::Conflict(_))
        ));
        assert_eq!(store.record(sub(4, 20)).unwrap().outcome, StoreOutcome::New);
        let p = Period::parse("2024-Q1").unwrap();
        assert_eq!(store.revisions("E06000034", p).unwrap(), vec![1, 2, 4]);
        drop(store);
        let store = Store::open(dir.path(), crate::DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(current(&store), Some(4));
        assert_eq!(store.revisions("E06000034", p).unwrap(), vec![1, 2, 4]);
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
