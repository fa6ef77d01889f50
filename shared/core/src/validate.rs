//! Validation of records as councils send them.
//!
//! TODO(helper).
