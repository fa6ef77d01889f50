//! Disclosure control: what makes aggregates safe to leave a site.
//!
//! TODO(helper): primary suppression, rounding, secondary suppression, check_policy.

use crate::metrics::{Aggregates, METRIC_COUNT, TableSpec};
use serde::{Deserialize, Serialize};

/// A published count: a (rounded) value, or withheld. `Value(0)` is a true zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Count {
    /// A value after rounding.
    Value(u64),
    /// Withheld by disclosure control. Never read as zero.
    Suppressed,
}

/// The site's (or network's) disclosure rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DisclosurePolicy {
    /// Counts from 1 to this are suppressed; 0 turns primary suppression off.
    pub threshold: u32,
    /// Other counts are rounded to the nearest multiple; 1 means no rounding.
    pub rounding_base: u32,
    /// Whether complementary suppression protects suppressed cells in tables.
    pub secondary_suppression: bool,
}

impl Default for DisclosurePolicy {
    fn default() -> Self {
        DisclosurePolicy { threshold: 7, rounding_base: 5, secondary_suppression: true }
    }
}

/// One site's published table for one period, indexed like the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Published counts by catalogue index.
    pub counts: [Count; METRIC_COUNT],
}

/// Protects `aggregates` under `policy` using the catalogue's tables.
pub fn apply(aggregates: &Aggregates, policy: &DisclosurePolicy) -> Published {
    let _ = (aggregates, policy);
    todo!()
}

/// Protects arbitrary cells related by `tables`.
pub fn protect(values: &[u64], tables: &[TableSpec], policy: &DisclosurePolicy) -> Vec<Count> {
    let _ = (values, tables, policy);
    todo!()
}
