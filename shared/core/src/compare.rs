//! Cross-site comparisons built at the hub from published tables.
//!
//! TODO(helper).
