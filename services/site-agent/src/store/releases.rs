//! The releases' side of the store: the outbox, dead letters, the last
//! submission and its true counts per period, what the hub acknowledged,
//! periods lost to the hub and releases overruled, and the push status.

use super::*;

/// A release at the hub, as the agent knows it: its revision and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRelease {
    /// The hub's current revision.
    pub revision: u64,
    /// Its digest (empty when the hub did not say).
    pub digest: String,
}

impl HubRelease {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = self.revision.to_be_bytes().to_vec();
        v.extend_from_slice(self.digest.as_bytes());
        v
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<HubRelease, AgentError> {
        let revision = be_u64(
            bytes
                .get(..8)
                .ok_or_else(|| AgentError::Corrupt("a stored hub release".into()))?,
        )?;
        Ok(HubRelease {
            revision,
            digest: String::from_utf8_lossy(&bytes[8..]).into_owned(),
        })
    }
}

/// A period whose newest release at the hub this agent does not hold: the
/// agent was restored from an older backup, or lost its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMark {
    /// What the hub holds.
    pub hub: HubRelease,
    /// The agent's last revision of the period, if it has one.
    pub agent_revision: Option<u64>,
}

impl LostMark {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = self.agent_revision.unwrap_or(0).to_be_bytes().to_vec();
        v.extend(self.hub.encode());
        v
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<LostMark, AgentError> {
        let bad = || AgentError::Corrupt("a stored lost-period mark".into());
        let agent = be_u64(bytes.get(..8).ok_or_else(bad)?)?;
        Ok(LostMark {
            agent_revision: (agent != 0).then_some(agent),
            hub: HubRelease::decode(bytes.get(8..).ok_or_else(bad)?)?,
        })
    }
}

/// Every `prefix<period>` key of `meta` with its value, decoded by `f`.
pub(super) fn scan_periods<T>(
    meta: &Tree,
    prefix: &str,
    f: impl Fn(&[u8]) -> Result<T, AgentError>,
) -> Result<BTreeMap<Period, T>, AgentError> {
    meta.scan_prefix(prefix)
        .map(|kv| {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let period = Period::parse(&name)
                .map_err(|e| AgentError::Corrupt(format!("a period under {prefix}: {e}")))?;
            Ok((period, f(&v)?))
        })
        .collect()
}

/// A dead-lettered submission: the hub refused it for good.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Outbox sequence number it had.
    pub seq: u64,
    /// Why the hub refused it.
    pub reason: String,
    /// The submission.
    pub submission: pb::Submission,
}

pub(super) fn published_truth(meta: &Tree, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
    let Some(v) = meta.get(format!("{META_TRUTH_PREFIX}{period}"))? else {
        return Ok(None);
    };
    if v.len() % 8 != 0 {
        return Err(AgentError::Corrupt(format!(
            "the true counts behind {period}'s last release"
        )));
    }
    Ok(Some(
        v.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    ))
}

pub(super) fn last_submission(
    meta: &Tree,
    period: Period,
) -> Result<Option<pb::Submission>, AgentError> {
    match meta.get(format!("{META_LAST_PREFIX}{period}"))? {
        Some(v) => Ok(Some(decode_submission(&v)?)),
        None => Ok(None),
    }
}

/// The value under `prefix<period>`, decoded by `decode`.
fn get_at<T>(
    meta: &Tree,
    prefix: &str,
    period: Period,
    decode: impl Fn(&[u8]) -> Result<T, AgentError>,
) -> Result<Option<T>, AgentError> {
    meta.get(format!("{prefix}{period}"))?
        .map(|v| decode(&v))
        .transpose()
}

/// Writes `value` under `prefix<period>`.
fn put_at(meta: &Tree, prefix: &str, period: Period, value: Vec<u8>) -> Result<(), AgentError> {
    meta.insert(format!("{prefix}{period}").as_bytes(), value)?;
    Ok(())
}

impl Store {
    /// The last submission enqueued for a period.
    pub fn last_submission(&self, period: Period) -> Result<Option<pb::Submission>, AgentError> {
        last_submission(&self.inner.trees.meta, period)
    }

    /// The true counts behind the last release enqueued for a period.
    pub fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
        published_truth(&self.inner.trees.meta, period)
    }

    /// Every period with a last submission, and that submission.
    pub fn last_submissions(&self) -> Result<Vec<pb::Submission>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_LAST_PREFIX)
            .values()
            .map(|v| decode_submission(&v?))
            .collect()
    }

    /// The oldest outbox entry.
    pub fn outbox_first(&self) -> Result<Option<(u64, pb::Submission)>, AgentError> {
        match self.inner.trees.outbox.first()? {
            Some((k, v)) => Ok(Some((be_u64(&k)?, decode_submission(&v)?))),
            None => Ok(None),
        }
    }

    /// Entries waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.inner.trees.outbox.len()
    }

    /// Every outbox entry, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, pb::Submission)>, AgentError> {
        self.inner
            .trees
            .outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((be_u64(&k)?, decode_submission(&v)?))
            })
            .collect()
    }

    /// Removes an entry the hub has acknowledged (as `release` of
    /// `period`), and notes the push.
    pub async fn outbox_remove(
        &self,
        seq: u64,
        period: Option<Period>,
        release: HubRelease,
        now_unix: i64,
    ) -> Result<(), AgentError> {
        self.write("outbox_ack", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, period, None)?;
            if let Some(p) = period {
                w.set_acked(p, &release)?;
            }
            w.set_push_result(Some(now_unix), "")
        })
        .await
    }

    /// Drops an outbox entry unsent (its period is held back).
    pub async fn outbox_drop(&self, seq: u64, period: Period) -> Result<(), AgentError> {
        self.write("outbox_ack", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, Some(period), None)
        })
        .await
    }

    /// The lost mark of `period`, if any.
    pub fn lost(&self, period: Period) -> Result<Option<LostMark>, AgentError> {
        get_at(
            &self.inner.trees.meta,
            META_LOST_PREFIX,
            period,
            LostMark::decode,
        )
    }

    /// The last release of each period the hub acknowledged.
    pub fn acked(&self) -> Result<BTreeMap<Period, HubRelease>, AgentError> {
        scan_periods(
            &self.inner.trees.meta,
            META_ACKED_PREFIX,
            HubRelease::decode,
        )
    }

    /// Moves an entry the hub refused for good to the dead-letter tree, and notes why.
    pub async fn dead_letter(
        &self,
        seq: u64,
        period: Option<Period>,
        submission: &pb::Submission,
        reason: &str,
    ) -> Result<(), AgentError> {
        let mut entry = Vec::with_capacity(4 + reason.len() + 512);
        entry.extend_from_slice(&(reason.len() as u32).to_le_bytes());
        entry.extend_from_slice(reason.as_bytes());
        submission
            .encode(&mut entry)
            .map_err(|e| AgentError::Corrupt(e.to_string()))?;
        let reason = reason.to_owned();
        self.write("outbox_dead_letter", Durability::Flush, move |w| {
            w.remove_from_outbox(seq, period, Some(entry))?;
            w.set_push_result(None, &reason)
        })
        .await
    }

    /// Every dead-lettered submission.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, AgentError> {
        self.inner
            .trees
            .dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let bad = || AgentError::Corrupt("a dead letter".into());
                let len =
                    u32::from_le_bytes(v.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?)
                        as usize;
                let reason = v.get(4..4 + len).ok_or_else(bad)?;
                Ok(DeadLetter {
                    seq: be_u64(&k)?,
                    reason: String::from_utf8_lossy(reason).into_owned(),
                    submission: decode_submission(v.get(4 + len..).ok_or_else(bad)?)?,
                })
            })
            .collect()
    }

    /// How many submissions are dead-lettered.
    pub fn dead_len(&self) -> usize {
        self.inner.trees.dead.len()
    }

    /// Periods the hub holds newer releases of than this agent.
    pub fn lost_periods(&self) -> Result<BTreeMap<Period, LostMark>, AgentError> {
        scan_periods(&self.inner.trees.meta, META_LOST_PREFIX, LostMark::decode)
    }

    /// The hub releases the operator let re-imported records overrule.
    pub fn overruled(&self) -> Result<BTreeMap<Period, HubRelease>, AgentError> {
        scan_periods(
            &self.inner.trees.meta,
            META_OVERRULED_PREFIX,
            HubRelease::decode,
        )
    }

    /// Periods with a submission waiting in the outbox.
    pub fn queued_periods(&self) -> Result<BTreeSet<Period>, AgentError> {
        Ok(
            scan_periods(&self.inner.trees.meta, META_QUEUED_PREFIX, |_| Ok(()))?
                .into_keys()
                .collect(),
        )
    }

    /// Records a failed push attempt's error.
    pub async fn set_push_error(&self, error: &str) -> Result<(), AgentError> {
        let error = error.to_owned();
        self.write("push_error", Durability::Deferred, move |w| {
            w.set_push_result(None, &error)
        })
        .await
    }

    /// (last successful push, seconds since the epoch or 0; last error or empty).
    pub fn push_status(&self) -> Result<(i64, String), AgentError> {
        let meta = &self.inner.trees.meta;
        let last = match meta.get(META_LAST_PUSH)? {
            Some(v) => be_u64(&v)? as i64,
            None => 0,
        };
        let err = match meta.get(META_LAST_PUSH_ERROR)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => String::new(),
        };
        Ok((last, err))
    }
}

impl Writer {
    /// Removes an outbox entry (and its period's queue mark), moving it to
    /// the dead-letter tree when `dead` holds its dead-letter bytes.
    pub fn remove_from_outbox(
        &self,
        seq: u64,
        period: Option<Period>,
        dead: Option<Vec<u8>>,
    ) -> Result<(), AgentError> {
        let key = seq.to_be_bytes();
        self.trees.outbox.remove(&key[..])?;
        if let Some(p) = period {
            let q = format!("{META_QUEUED_PREFIX}{p}");
            if self.trees.meta.get(q.as_bytes())?.as_deref() == Some(&key[..]) {
                self.trees.meta.remove(q.as_bytes())?;
            }
        }
        if let Some(entry) = dead {
            self.trees.dead.insert(&key[..], entry)?;
        }
        Ok(())
    }

    /// Every lost period, with its mark.
    pub fn lost_periods(&self) -> Result<BTreeMap<Period, LostMark>, AgentError> {
        scan_periods(&self.trees.meta, META_LOST_PREFIX, LostMark::decode)
    }

    /// The lost mark of `period`, if the hub holds a newer release of it.
    pub fn lost(&self, period: Period) -> Result<Option<LostMark>, AgentError> {
        get_at(&self.trees.meta, META_LOST_PREFIX, period, LostMark::decode)
    }

    /// Marks `period` lost: the publisher holds it back.
    pub fn mark_lost(&self, period: Period, mark: &LostMark) -> Result<(), AgentError> {
        put_at(&self.trees.meta, META_LOST_PREFIX, period, mark.encode())
    }

    /// Clears `period`'s lost mark, if any.
    pub fn clear_lost(&self, period: Period) -> Result<(), AgentError> {
        self.trees
            .meta
            .remove(format!("{META_LOST_PREFIX}{period}").as_bytes())?;
        Ok(())
    }

    /// The hub release of `period` that re-imported records may overrule.
    pub fn overruled(&self, period: Period) -> Result<Option<HubRelease>, AgentError> {
        get_at(
            &self.trees.meta,
            META_OVERRULED_PREFIX,
            period,
            HubRelease::decode,
        )
    }

    /// Lets the agent's records overrule the hub's `release` of `period`.
    pub fn overrule(&self, period: Period, release: &HubRelease) -> Result<(), AgentError> {
        put_at(
            &self.trees.meta,
            META_OVERRULED_PREFIX,
            period,
            release.encode(),
        )
    }

    /// Notes `release` as the last of `period` the hub acknowledged.
    pub fn set_acked(&self, period: Period, release: &HubRelease) -> Result<(), AgentError> {
        put_at(
            &self.trees.meta,
            META_ACKED_PREFIX,
            period,
            release.encode(),
        )
    }

    /// Forgets `period`'s last submission (not its true counts, which the
    /// release gate keeps comparing with), so its next recomputation is
    /// published even if it equals a release that never reached the hub.
    pub fn forget_last(&self, period: Period) -> Result<(), AgentError> {
        self.trees
            .meta
            .remove(format!("{META_LAST_PREFIX}{period}").as_bytes())?;
        Ok(())
    }

    /// Whether a newly computed release of `period` (with `digest`, when
    /// it was protected) must be held back because the hub holds a newer
    /// release than this agent. A release equal to the hub's (the agent has
    /// its records back) clears the mark and may go: the hub answers
    /// DUPLICATE. Anything else waits for the re-import.
    pub fn held_by_loss(&self, period: Period, digest: Option<&str>) -> Result<bool, AgentError> {
        let Some(mark) = self.lost(period)? else {
            return Ok(false);
        };
        if digest.is_some_and(|d| !mark.hub.digest.is_empty() && d == mark.hub.digest) {
            self.clear_lost(period)?;
            tracing::info!(%period, "the records again give the hub's release of a lost period: no longer held");
            return Ok(false);
        }
        tracing::warn!(%period, hub_revision = mark.hub.revision, "held back: the hub holds a newer release of this period than this agent (re-import the latest full export)");
        Ok(true)
    }

    pub(super) fn set_push_result(
        &self,
        ok_at_unix: Option<i64>,
        error: &str,
    ) -> Result<(), AgentError> {
        if let Some(t) = ok_at_unix {
            self.trees
                .meta
                .insert(META_LAST_PUSH, &t.to_be_bytes()[..])?;
        }
        self.trees
            .meta
            .insert(META_LAST_PUSH_ERROR, error.as_bytes())?;
        Ok(())
    }

    /// The last submission enqueued for a period.
    pub fn last_submission(&self, period: Period) -> Result<Option<pb::Submission>, AgentError> {
        last_submission(&self.trees.meta, period)
    }

    /// The true counts behind the last release enqueued for a period.
    pub fn published_truth(&self, period: Period) -> Result<Option<Vec<u64>>, AgentError> {
        published_truth(&self.trees.meta, period)
    }

    /// Enqueues a new revision for `period` (with the true counts behind it,
    /// kept for the next release's comparison) and clears the period's dirty mark
    /// (if still at `generation`). An older revision of the same period still
    /// waiting in the outbox is dropped: the hub only needs the latest. The
    /// writes are ordered so a crash between them leaves at worst a period
    /// marked dirty (recomputed) or an outbox entry without its queue mark
    /// (sent once more, idempotently).
    pub fn enqueue(
        &self,
        period: Period,
        submission: &pb::Submission,
        truth: Option<&[u64]>,
        generation: u64,
    ) -> Result<u64, AgentError> {
        let seq = self.db.generate_id()?;
        // `None` re-issues the same content (a new number), whose truth is kept.
        if let Some(truth) = truth {
            let bytes: Vec<u8> = truth.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.trees.meta.insert(
                format!("{META_TRUTH_PREFIX}{period}").as_bytes(),
                bytes.as_slice(),
            )?;
        }
        let bytes = submission.encode_to_vec();
        let last_key = format!("{META_LAST_PREFIX}{period}");
        let queued_key = format!("{META_QUEUED_PREFIX}{period}");
        let m = &self.trees.meta;
        let o = &self.trees.outbox;
        let older = m.get(queued_key.as_bytes())?;
        o.insert(&seq.to_be_bytes()[..], bytes.as_slice())?;
        m.insert(queued_key.as_bytes(), &seq.to_be_bytes()[..])?;
        m.insert(last_key.as_bytes(), bytes.as_slice())?;
        if let Some(old) = older {
            o.remove(old)?;
        }
        self.clear_dirty(period, generation)?;
        Ok(seq)
    }
}
