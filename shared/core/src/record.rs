//! The pseudonymised record: the only form of a record a site stores.
//!
//! TODO(helper).
