//! The site's series (months or quarters), recorded when the data directory
//! is first used and changed only by `reset-series`.

use super::*;

impl Store {
    /// The series (granularity) recorded in the data directory, if any yet.
    pub fn recorded_granularity(&self) -> Result<Option<Granularity>, AgentError> {
        match self.inner.trees.meta.get(META_GRANULARITY)? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    AgentError::Corrupt("the recorded series is not month or quarter".into())
                }),
        }
    }

    /// Records `granularity` as the data directory's series and forgets the
    /// published state of every period of another kind: its last
    /// submission (so the preview and the outbox no longer know it), its
    /// dirty and queue marks, and its outbox entries. Durable on return.
    /// Returns how many periods of the old series were forgotten.
    pub fn set_series(&self, granularity: Granularity) -> Result<usize, AgentError> {
        self.write_blocking("set_series", move |w| {
            let other = |p: Period| p.granularity() != granularity;
            let mut meta = Batch::default();
            let mut forgotten = 0;
            for prefix in [
                META_LAST_PREFIX,
                META_QUEUED_PREFIX,
                META_DIRTY_PREFIX,
                META_LOST_PREFIX,
                META_OVERRULED_PREFIX,
                META_ACKED_PREFIX,
            ] {
                for k in w.trees.meta.scan_prefix(prefix).keys() {
                    let k = k?;
                    let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    if Period::parse(&name).is_ok_and(other) {
                        forgotten += usize::from(prefix == META_LAST_PREFIX);
                        meta.remove(k);
                    }
                }
            }
            let mut outbox = Batch::default();
            for entry in w.trees.outbox.iter() {
                let (k, v) = entry?;
                let period = pb::Submission::decode(v.as_ref())
                    .ok()
                    .and_then(|s| period_from_proto(s.period.as_ref(), "period").ok());
                if period.is_some_and(other) {
                    outbox.remove(k);
                }
            }
            meta.insert(META_GRANULARITY, granularity.id().as_bytes());
            w.trees.outbox.apply_batch(outbox)?;
            w.trees.meta.apply_batch(meta)?;
            Ok(forgotten)
        })
    }
}
