//! Which pseudonymisation keys stored records were written with, and which
//! were retired, so the agent refuses a key ring that cannot read its store.

use super::*;

impl Store {
    /// Key ids that records have been written with, and not retired since.
    pub fn keys_written(&self) -> Result<Vec<String>, AgentError> {
        self.inner
            .trees
            .meta
            .scan_prefix(META_KEY_PREFIX)
            .keys()
            .map(|k| {
                let k = k?;
                Ok(String::from_utf8_lossy(&k[META_KEY_PREFIX.len()..]).into_owned())
            })
            .collect()
    }

    /// How many stored records carry pseudonyms made with `key_id` (a full scan).
    pub fn records_using_key(&self, key_id: &str) -> Result<u64, AgentError> {
        let mut n = 0;
        for r in self.records() {
            if r?.key_id.as_str() == key_id {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Marks `key_id` retired (it no longer needs to be in the ring).
    pub fn retire_key(&self, key_id: &str, now_unix: i64) -> Result<(), AgentError> {
        let key_id = key_id.to_owned();
        self.write_blocking("retire_key", move |w| {
            let mut b = Batch::default();
            b.remove(format!("{META_KEY_PREFIX}{key_id}").as_bytes());
            b.insert(
                format!("{META_RETIRED_PREFIX}{key_id}").as_bytes(),
                &now_unix.to_be_bytes()[..],
            );
            w.trees.meta.apply_batch(b)?;
            Ok(())
        })
    }
}
