//! `lacnet-core`: the domain of lacnet, with no I/O.
//!
//! Data flows through these modules in order:
//!
//! 1. [`validate`] turns a council's raw record into a [`validate::ValidRecord`]
//!    or a list of field violations.
//! 2. [`pseudonym`] replaces its identifiers with keyed hashes, giving a
//!    [`record::PseudonymRecord`]: the only form a site stores.
//! 3. [`aggregate`] counts a period's records into [`metrics::Aggregates`].
//! 4. [`release`] says which figures each kind of period carries, and
//!    [`disclosure`] suppresses and rounds them into a [`disclosure::Published`]
//!    table, the only thing that leaves a site ([`submission`] packs and digests it).
//! 5. [`compare`] turns many sites' published tables into cross-site comparisons at the hub.

#![warn(missing_docs)]

pub mod aggregate;
pub mod compare;
pub mod date;
pub mod disclosure;
pub mod exact;
pub mod hex;
pub mod keyfile;
pub mod linked;
pub mod metrics;
pub mod period;
pub mod pseudonym;
pub mod record;
pub mod relations;
pub mod release;
pub mod structural;
pub mod submission;
pub mod validate;
pub mod vocab;

pub use date::Date;
pub use disclosure::{Count, DisclosurePolicy, Published};
pub use period::{Granularity, Period};
