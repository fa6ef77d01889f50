//! Aggregation of pseudonymised records into a period's true counts.
//!
//! TODO(helper).
