//! Keyed pseudonymisation (HMAC-SHA256 with HKDF-derived purpose keys).
//!
//! TODO(helper).
