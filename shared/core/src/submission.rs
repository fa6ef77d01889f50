//! A site's submission for one period, and its canonical content digest.
//!
//! The digest lets the hub recognise a re-sent revision (idempotent uploads,
//! as in Janus) and lets a council check that what the hub stored is exactly
//! what its preview showed. It covers everything that gives a submission its
//! meaning: site, period, policy and every published cell. It leaves out the
//! revision number and the generation time, so re-computing unchanged
//! aggregates yields the same digest and no new revision.

use crate::disclosure::{Count, DisclosurePolicy, Published};
use crate::metrics::catalogue;
use crate::period::{Granularity, Period};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Domain tag so a digest can never be confused with any other SHA-256 in lacnet.
const DIGEST_DOMAIN: &str = "lacnet.submission.v1";

/// Lower-case hex SHA-256 of the canonical form of a submission's content.
pub fn digest(
    site_code: &str,
    period: Period,
    policy: &DisclosurePolicy,
    published: &Published,
) -> String {
    let mut canonical = String::with_capacity(2048);
    // Spelled out here, not taken from `Granularity::id`: this string is part
    // of the digest, so renaming an id must not change every digest.
    let granularity = match period.granularity() {
        Granularity::Month => "month",
        Granularity::Quarter => "quarter",
        Granularity::FinancialYear => "financial_year",
        Granularity::ProgrammeToDate => "programme_to_date",
    };
    // Writing to a String cannot fail.
    let _ = writeln!(canonical, "{DIGEST_DOMAIN}");
    let _ = writeln!(canonical, "site={site_code}");
    let _ = writeln!(canonical, "period={granularity}:{period}");
    let _ = writeln!(
        canonical,
        "policy={}:{}:{}",
        policy.threshold, policy.rounding_base, policy.secondary_suppression
    );
    for (def, count) in catalogue().metrics().iter().zip(published.counts.iter()) {
        match count {
            Count::Value(v) => {
                let _ = writeln!(canonical, "{}={v}", def.id);
            }
            Count::Suppressed => {
                let _ = writeln!(canonical, "{}=suppressed", def.id);
            }
            // A figure the period kind does not carry adds nothing, so a
            // release carrying every figure digests as it always has.
            Count::NotReleased => {}
        }
    }
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// Lower-case hex of bytes (kept here for callers that use this path).
pub use crate::hex::encode as hex;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::METRIC_COUNT;

    fn table(v: u64) -> Published {
        Published {
            counts: [Count::Value(v); METRIC_COUNT],
        }
    }

    #[test]
    fn digest_changes_with_every_part_of_the_content() {
        let p = Period::parse("2025-Q1").unwrap();
        let policy = DisclosurePolicy::default();
        let base = digest("E06000034", p, &policy, &table(10));
        assert_eq!(base.len(), 64);
        assert_eq!(base, digest("E06000034", p, &policy, &table(10)));
        assert_ne!(base, digest("E06000015", p, &policy, &table(10)));
        assert_ne!(base, digest("E06000034", p.next(), &policy, &table(10)));
        assert_ne!(
            base,
            digest(
                "E06000034",
                p,
                &DisclosurePolicy {
                    threshold: 10,
                    ..policy
                },
                &table(10)
            )
        );
        assert_ne!(base, digest("E06000034", p, &policy, &table(15)));
        let mut suppressed = table(10);
        suppressed.counts[5] = Count::Suppressed;
        assert_ne!(base, digest("E06000034", p, &policy, &suppressed));
        let mut zero = table(10);
        zero.counts[5] = Count::Value(0);
        assert_ne!(
            digest("E06000034", p, &policy, &suppressed),
            digest("E06000034", p, &policy, &zero)
        );
    }
}
