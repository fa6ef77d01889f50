//! Dirty marks: the periods whose counts changed since they were last
//! decided, each with the generation of the change, so a round clears only
//! the marks it saw.

use super::*;

impl Store {
    /// Marks one period dirty outside an ingest (the scheduled recomputation).
    pub async fn mark_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        self.write("mark_dirty", Durability::Deferred, move |w| {
            w.trees.meta.insert(
                format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
                &generation.to_be_bytes()[..],
            )?;
            Ok(())
        })
        .await
    }

    /// Periods waiting for re-aggregation, with their generation.
    pub fn dirty_periods(&self) -> Result<Vec<(Period, u64)>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_DIRTY_PREFIX)
            .map(|kv| {
                let (k, v) = kv?;
                let name = String::from_utf8_lossy(&k[META_DIRTY_PREFIX.len()..]).into_owned();
                let period = Period::parse(&name)
                    .map_err(|e| AgentError::Corrupt(format!("a dirty period: {e}")))?;
                Ok((period, be_u64(&v)?))
            })
            .collect()
    }
}

impl Writer {
    /// Marks a period for re-aggregation.
    pub fn mark_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        self.trees.meta.insert(
            format!("{META_DIRTY_PREFIX}{period}").as_bytes(),
            &generation.to_be_bytes()[..],
        )?;
        Ok(())
    }

    /// Clears a dirty mark, unless it was set again (a newer generation) meanwhile.
    pub fn clear_dirty(&self, period: Period, generation: u64) -> Result<(), AgentError> {
        let key = format!("{META_DIRTY_PREFIX}{period}");
        if self.trees.meta.get(key.as_bytes())?.as_deref() == Some(&generation.to_be_bytes()[..]) {
            self.trees.meta.remove(key.as_bytes())?;
        }
        Ok(())
    }
}
