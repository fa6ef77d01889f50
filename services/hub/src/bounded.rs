//! Limits on every string a caller sends the hub, checked before the string
//! is logged, stored or echoed in a status.
//!
//! A caller controls the length of every `string` field up to the gRPC
//! message limit (4 MiB). Echoing such a field into an error message copies
//! it into the status, the log line and the audit record: a 3 MiB metric id
//! sent ten times once added 31 MB of log and 50–79 MB of stored audit data.
//! So each field has a length limit and an alphabet, both checked first, and
//! a refusal names the field and the rule but never repeats more than a short
//! excerpt of the value. [`excerpt`] is the one way to quote caller text in
//! a log or the audit log, as defence in depth for messages built elsewhere.

use crate::HubError;

/// Longest metric id accepted (catalogue ids such as
/// `outcome.alternative_to_day_services` are well under this).
pub const MAX_METRIC_ID_LEN: usize = 64;
/// An ONS site code is exactly 9 characters (`E06000034`); a little slack
/// lets a near-miss be reported as "not an ONS code" rather than "too long".
pub const MAX_SITE_CODE_LEN: usize = 16;
/// A submission digest is lower-case hex SHA-256: 64 characters.
pub const DIGEST_LEN: usize = 64;
/// Longest reason written to a log line or an audit record, in characters.
pub const MAX_REASON_CHARS: usize = 512;
/// Characters of a refused value quoted back in an error.
const EXCERPT_CHARS: usize = 24;

/// Which characters a field may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// Metric ids: `a-z`, `0-9`, `_` and `.`.
    MetricId,
    /// Site codes: ASCII letters and digits.
    SiteCode,
    /// Digests: lower-case hex.
    LowerHex,
}

impl Alphabet {
    fn allows(self, c: char) -> bool {
        match self {
            Alphabet::MetricId => {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
            }
            Alphabet::SiteCode => c.is_ascii_alphanumeric(),
            Alphabet::LowerHex => c.is_ascii_digit() || ('a'..='f').contains(&c),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Alphabet::MetricId => "a-z, 0-9, '_' and '.'",
            Alphabet::SiteCode => "ASCII letters and digits",
            Alphabet::LowerHex => "lower-case hex digits",
        }
    }
}

/// Checks that `value` at `field` is at most `max` bytes of `alphabet`.
///
/// The length is checked before anything reads the characters, and the error
/// never contains more than a short, escaped excerpt of `value`.
pub fn check(field: &str, value: &str, max: usize, alphabet: Alphabet) -> Result<(), HubError> {
    match fault(value, max, alphabet) {
        None => Ok(()),
        Some(reason) => Err(HubError::invalid(field, reason)),
    }
}

/// What [`check`] would refuse in `value`, if anything: for callers that
/// check many values and name the field only when one is refused.
pub fn fault(value: &str, max: usize, alphabet: Alphabet) -> Option<String> {
    if value.len() > max {
        return Some(format!(
            "is {} bytes long; at most {max} are allowed (starts {})",
            value.len(),
            excerpt(value)
        ));
    }
    // Every alphabet is ASCII, so a byte outside it (any byte of a
    // multi-byte character included) is a refusal; only then are the
    // characters read, to name the first bad one.
    if value.bytes().all(|b| alphabet.allows(char::from(b))) {
        return None;
    }
    let bad = value.chars().find(|c| !alphabet.allows(*c))?;
    Some(format!(
        "contains {bad:?}; only {} are allowed (value {})",
        alphabet.describe(),
        excerpt(value)
    ))
}

/// A short, escaped, quoted prefix of caller text, safe for logs and errors:
/// at most [`EXCERPT_CHARS`] characters, control characters escaped, and a
/// note of the full length when it was cut.
pub fn excerpt(value: &str) -> String {
    let head: String = value.chars().take(EXCERPT_CHARS).collect();
    if head.len() == value.len() {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({} bytes)", value.len())
    }
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters for a log line or an
/// audit record, so no message (whoever built it) can grow either without bound.
pub fn bounded_reason(reason: &str) -> String {
    let mut chars = reason.char_indices();
    match chars.nth(MAX_REASON_CHARS) {
        None => reason.to_owned(),
        Some((cut, _)) => format!("{}… (cut from {} bytes)", &reason[..cut], reason.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_refused_without_being_echoed() {
        let huge = "a".repeat(3 * 1024 * 1024);
        let e = check("metric", &huge, MAX_METRIC_ID_LEN, Alphabet::MetricId)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metric") && e.contains("3145728 bytes"), "{e}");
        assert!(e.len() < 200, "{} bytes", e.len());
    }

    #[test]
    fn alphabets_are_enforced_and_quoted_safely() {
        assert!(check("m", "outcome.crisis_avoided", 64, Alphabet::MetricId).is_ok());
        let e = check("m", "bad\nline\u{1b}[31m", 64, Alphabet::MetricId)
            .unwrap_err()
            .to_string();
        // A newline or an escape code never reaches a log line raw.
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e}");
        assert!(check("d", &"ab".repeat(32), DIGEST_LEN, Alphabet::LowerHex).is_ok());
        assert!(check("d", "ABCD", DIGEST_LEN, Alphabet::LowerHex).is_err());
        assert!(check("s", "E06000034", MAX_SITE_CODE_LEN, Alphabet::SiteCode).is_ok());
        assert!(check("s", "E06 000034", MAX_SITE_CODE_LEN, Alphabet::SiteCode).is_err());
    }

    /// `check_strings` lets a catalogue id through unread: each must pass.
    #[test]
    fn every_catalogue_id_is_a_bounded_metric_id() {
        for def in lacnet_core::metrics::catalogue().metrics() {
            assert_eq!(
                fault(&def.id, MAX_METRIC_ID_LEN, Alphabet::MetricId),
                None,
                "{}",
                def.id
            );
        }
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let short = "fine";
        assert_eq!(bounded_reason(short), short);
        let long = "é".repeat(10_000);
        let cut = bounded_reason(&long);
        assert!(cut.chars().count() < MAX_REASON_CHARS + 40, "{}", cut.len());
        assert!(cut.contains("cut from 20000 bytes"), "{cut}");
    }
}
