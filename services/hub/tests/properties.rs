//! Property tests of submission decoding and validation at the hub, with
//! proptest standing in for a coverage-guided fuzzer (no nightly toolchain
//! here). Two inputs: arbitrary bytes on the wire, decoded as the hub decodes
//! a `SubmitRequest`; and well-formed but hostile submissions (any strings,
//! periods, revisions, policies and cells, some built honestly and then
//! tampered with). Properties: the hub never panics; every refusal of a
//! field names it (`submission.…`) with a reason; what it accepts
//! round-trips (the stored form says what the wire said); and every
//! honestly built submission is accepted.
//!
//! `PROPTEST_CASES` sets the number of cases (CI runs a bounded number;
//! README's "Testing" section gives the long run).

use lacnet_core::disclosure::{self, Count, DisclosurePolicy, Published};
use lacnet_core::metrics::{self, Aggregates, METRIC_COUNT};
use lacnet_core::vocab::{
    AgeBand, AgeGroup, IntroductionSource, Outcome, PrimaryNeed, SupportLevel,
};
use lacnet_core::{Granularity, Period, submission};
use lacnet_hub::submissions::{Described, check_submission};
use lacnet_hub::{HubError, Registry};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{cells, period_to_proto, policy_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_tls::Peer;
use proptest::prelude::*;
use prost::Message;

const THURROCK: &str = "E06000034";
/// 2026-11-30T00:00:00Z in milliseconds: the hub's "now" in these tests.
const NOW_MS: u64 = 1_795_996_800_000;

fn registry() -> Registry {
    Registry::parse(
        r#"
[policy]
threshold = 7
rounding_base = 5
secondary_suppression = true

[[sites]]
code = "E06000034"
name = "Thurrock"
granularity = "quarter"
adult_population = 134700

[[sites]]
code = "E06000015"
name = "Derby"
granularity = "quarter"
adult_population = 205000
valid_until = "2020-12-31"
"#,
    )
    .unwrap()
}

fn thurrock() -> Peer {
    Peer::Site(THURROCK.into())
}

/// Checks one submission and the properties every outcome must have.
fn check(registry: &Registry, sub: &pb::Submission) -> Result<(), TestCaseError> {
    let mut described = Described::default();
    match check_submission(registry, &thurrock(), sub, NOW_MS, &mut described) {
        Ok(stored) => {
            // Accepted input round-trips: what is stored is what was sent,
            // less any figure its period kind does not carry.
            prop_assert_eq!(&stored.site_code, &sub.site_code);
            prop_assert_eq!(Some(period_to_proto(stored.period)), sub.period);
            prop_assert_eq!(stored.revision, sub.revision);
            prop_assert_eq!(&stored.digest, &sub.digest);
            prop_assert_eq!(Some(policy_to_proto(&stored.policy)), sub.policy);
            let published = Published {
                counts: <[Count; METRIC_COUNT]>::try_from(stored.counts.clone()).unwrap(),
            };
            let sent = lacnet_hub::submissions::published_of(sub).unwrap();
            let sent = lacnet_hub::submissions::to_release_plan(sent, stored.period).unwrap();
            let mut sent = cells(&sent);
            let mut back = cells(&published);
            sent.sort_by(|a, b| a.metric.cmp(&b.metric));
            back.sort_by(|a, b| a.metric.cmp(&b.metric));
            prop_assert_eq!(back, sent);
            prop_assert_eq!(described.site.as_deref(), Some(THURROCK));
        }
        Err(HubError::InvalidArgument { field, reason }) => {
            prop_assert!(
                field == "submission" || field.starts_with("submission."),
                "field {:?} does not name a submission field",
                field
            );
            prop_assert!(!reason.trim().is_empty(), "no reason for {}", field);
            // What the audit log keeps is bounded, whatever was sent.
            prop_assert!(described.site.as_ref().is_none_or(|s| s.len() <= 16));
        }
        Err(HubError::PolicyViolation(v)) => prop_assert!(!v.is_empty()),
        Err(HubError::PermissionDenied(m)) => prop_assert!(!m.is_empty()),
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    Ok(())
}

/// An honest submission of `agg` for `period` (as an agent builds it).
fn honest(agg: &Aggregates, period: Period, revision: u64) -> pb::Submission {
    let policy = DisclosurePolicy::default();
    let carried = lacnet_core::release::carried(period.granularity());
    let published = disclosure::release_alone(agg, &carried, &policy);
    pb::Submission {
        packed: None,
        structural_zeros: Vec::new(),
        site_code: THURROCK.into(),
        period: Some(period_to_proto(period)),
        revision,
        digest: submission::digest(THURROCK, period, &policy, &published),
        policy: Some(policy_to_proto(&policy)),
        cells: cells(&published),
        generated_at_unix: 1_700_000_000,
    }
}

/// Consistent true counts, as an agent could count them: `n` new
/// introductions of `new` people (all level 1, aged 45-54, mental health,
/// self-referred), `active` people in all, `closed` closures, and outcomes
/// of at most the people active.
fn aggregates() -> impl Strategy<Value = Aggregates> {
    (
        0u64..3_000,
        0u64..3_000,
        0u64..3_000,
        0u64..3_000,
        proptest::collection::vec(0u64..3_000, 9),
    )
        .prop_map(|(n, new, more, closed, outcomes)| {
            let new = new.min(n);
            let active = new + more;
            let mut a = Aggregates::default();
            a.counts[metrics::PEOPLE_ACTIVE] = active;
            a.counts[metrics::PEOPLE_NEW] = new;
            a.counts[metrics::CLOSURES] = closed;
            for i in [
                metrics::INTRODUCTIONS_NEW,
                metrics::support_level(SupportLevel::Level1),
                metrics::age_band(AgeBand::From45To54),
                metrics::age_group(AgeGroup::From18To64),
                metrics::primary_need(PrimaryNeed::MentalHealth),
                metrics::source(IntroductionSource::SelfReferral),
            ] {
                a.counts[i] = n;
            }
            for (o, v) in Outcome::ALL.iter().zip(outcomes) {
                a.counts[metrics::outcome(*o)] = v.min(active);
            }
            a
        })
}

fn any_period() -> impl Strategy<Value = pb::Period> {
    (any::<i32>(), any::<u32>(), 0i32..5).prop_map(|(year, index, g)| pb::Period {
        granularity: g,
        year,
        index,
    })
}

fn plausible_period() -> impl Strategy<Value = Period> {
    (2010i32..2027, 1u32..=4).prop_map(|(y, q)| Period::new(Granularity::Quarter, y, q).unwrap())
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(THURROCK.to_owned()),
        Just("E06000015".to_owned()),
        ".{0,40}",
        "[A-Za-z0-9_.]{0,80}",
        (0usize..100_000).prop_map(|n| "E".repeat(n)),
    ]
}

fn any_count() -> impl Strategy<Value = Option<pb::Count>> {
    prop_oneof![
        Just(None),
        Just(Some(pb::Count { kind: None })),
        any::<u64>().prop_map(|v| Some(pb::Count {
            kind: Some(pb::count::Kind::Value(v))
        })),
        (0u64..40).prop_map(|v| Some(pb::Count {
            kind: Some(pb::count::Kind::Value(v))
        })),
        Just(Some(pb::Count {
            kind: Some(pb::count::Kind::Suppressed(pb::Suppressed {}))
        })),
        Just(Some(pb::Count {
            kind: Some(pb::count::Kind::NotReleased(pb::NotReleased {}))
        })),
    ]
}

/// A hostile submission: an honest one with any of its parts replaced.
fn hostile() -> impl Strategy<Value = pb::Submission> {
    (
        aggregates(),
        plausible_period(),
        1u64..NOW_MS,
        proptest::option::of(any_string()),
        proptest::option::of(proptest::option::of(any_period())),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any_string()),
        proptest::option::of((any::<u32>(), any::<u32>(), any::<bool>())),
        proptest::option::of(proptest::collection::vec(
            (any_string(), any_count()),
            0..60,
        )),
        proptest::option::of((0usize..METRIC_COUNT, any_count())),
        any::<bool>(),
        // Sent packed, as agents do, maybe with hostile counts or catalogue.
        proptest::option::of((
            proptest::option::of(proptest::collection::vec(any::<u64>(), 0..200)),
            proptest::option::of(any_string()),
        )),
    )
        .prop_map(
            |(
                agg,
                period,
                rev,
                site,
                per,
                revision,
                digest,
                policy,
                cells_,
                one,
                redigest,
                pack,
            )| {
                let mut s = honest(&agg, period, rev);
                if let Some(site) = site {
                    s.site_code = site;
                }
                if let Some(p) = per {
                    s.period = p;
                }
                if let Some(r) = revision {
                    s.revision = r;
                }
                if let Some(d) = digest {
                    s.digest = d;
                }
                if let Some((threshold, rounding_base, secondary_suppression)) = policy {
                    s.policy = Some(pb::DisclosurePolicy {
                        threshold,
                        rounding_base,
                        secondary_suppression,
                    });
                }
                if let Some(list) = cells_ {
                    s.cells = list
                        .into_iter()
                        .map(|(metric, count)| pb::Cell { metric, count })
                        .collect();
                }
                if let Some((i, count)) = one {
                    if let Some(cell) = s.cells.get_mut(i) {
                        cell.count = count;
                    }
                }
                if let Some((counts, catalogue)) = pack {
                    s = lacnet_proto::convert::with_packed_cells(s);
                    if let Some(packed) = s.packed.as_mut() {
                        if let Some(counts) = counts {
                            packed.counts = counts;
                        }
                        if let Some(catalogue) = catalogue {
                            packed.catalogue = catalogue;
                        }
                    }
                }
                if redigest {
                    // Re-sign what was tampered with, so checks past the digest run too.
                    if let (Ok(p), Ok(published)) = (
                        lacnet_proto::convert::period_from_proto(s.period.as_ref(), "p"),
                        lacnet_hub::submissions::published_of(&s),
                    ) {
                        if let Ok(policy) =
                            lacnet_proto::convert::policy_from_proto(s.policy.as_ref(), "p")
                        {
                            s.digest = submission::digest(&s.site_code, p, &policy, &published);
                        }
                    }
                }
                s
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes, decoded as the hub decodes a request, then checked.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let registry = registry();
        if let Ok(req) = hub::SubmitRequest::decode(bytes.as_slice()) {
            if let Some(sub) = req.submission {
                check(&registry, &sub)?;
            }
        }
    }

    /// Bytes that start as a real submission and are then corrupted.
    #[test]
    fn corrupted_submissions_never_panic(
        agg in aggregates(),
        period in plausible_period(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let registry = registry();
        let mut bytes = hub::SubmitRequest { submission: Some(honest(&agg, period, 7)) }.encode_to_vec();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(req) = hub::SubmitRequest::decode(bytes.as_slice()) {
            if let Some(sub) = req.submission {
                check(&registry, &sub)?;
            }
        }
    }

    /// Well-formed, hostile submissions: refused with a named field, or accepted and round-tripped.
    #[test]
    fn hostile_submissions_are_refused_by_field_or_round_trip(sub in hostile()) {
        check(&registry(), &sub)?;
    }

    /// Every honestly built submission for a started period is accepted.
    #[test]
    fn honest_submissions_are_accepted(agg in aggregates(), period in plausible_period(), rev in 1u64..NOW_MS) {
        let sub = honest(&agg, period, rev);
        let mut described = Described::default();
        let stored = check_submission(&registry(), &thurrock(), &sub, NOW_MS, &mut described);
        prop_assert!(stored.is_ok(), "{:?}", stored.err());
        check(&registry(), &sub)?;
    }
}
