//! Test harness: a network CA and certificates made in the test, the real hub
//! on 127.0.0.1:0 over mTLS with sled in a temp dir, and valid submissions
//! built with lacnet-core exactly as a site agent builds them.

#![allow(dead_code)]

use std::path::Path;

use lacnet_core::disclosure::{self, Count, DisclosurePolicy, Published};
use lacnet_core::metrics::{self, Aggregates};
use lacnet_core::period::Period;
use lacnet_core::submission;
use lacnet_core::vocab::{
    AgeBand, AgeGroup, IntroductionSource, Outcome, PrimaryNeed, SupportLevel,
};
use lacnet_hub::{HubOptions, Registry};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{cells, period_to_proto, policy_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_tls::dev::{DevCa, IssuedCert, bundle};
use lacnet_tls::{Peer, PemBundle};

pub const THURROCK: &str = "E06000034";
pub const DERBY: &str = "E06000015";
pub const SWANSEA: &str = "W06000011";
pub const CUMBRIA: &str = "E10000006";
/// A well-formed ONS code that is not in the registry.
pub const UNLISTED: &str = "E06000999";

/// Every certificate the tests need.
pub struct Pki {
    pub ca: DevCa,
    pub server: IssuedCert,
    pub thurrock: PemBundle,
    pub derby: PemBundle,
    pub swansea: PemBundle,
    pub cumbria: PemBundle,
    pub unlisted: PemBundle,
    pub analyst: PemBundle,
    pub council: PemBundle,
    /// Chains to the network CA but carries no lacnet identity.
    pub anonymous: PemBundle,
    /// A Thurrock site certificate from another CA (trusting the real CA for the server).
    pub rogue: PemBundle,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca = DevCa::new("lacnet test network CA").unwrap();
        let server = ca.issue_server(&["hub.lacnet"]).unwrap();
        let leaf = |peer: Peer| bundle(&ca, &ca.issue(&peer, &[]).unwrap());
        let other = DevCa::new("another CA").unwrap();
        let rogue_cert = other.issue(&Peer::Site(THURROCK.into()), &[]).unwrap();
        let rogue = PemBundle {
            ca: ca.ca_pem().into_bytes(),
            ..bundle(&other, &rogue_cert)
        };
        Pki {
            thurrock: leaf(Peer::Site(THURROCK.into())),
            derby: leaf(Peer::Site(DERBY.into())),
            swansea: leaf(Peer::Site(SWANSEA.into())),
            cumbria: leaf(Peer::Site(CUMBRIA.into())),
            unlisted: leaf(Peer::Site(UNLISTED.into())),
            analyst: leaf(Peer::Analyst("alice".into())),
            council: leaf(Peer::Council("thurrock".into())),
            anonymous: bundle(&ca, &ca.issue_server(&["somebody"]).unwrap()),
            rogue,
            server,
            ca,
        }
    }

    pub fn server_bundle(&self) -> PemBundle {
        bundle(&self.ca, &self.server)
    }
}

/// The registry shipped with the hub.
pub fn shipped_registry() -> Registry {
    Registry::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../services/hub/registry.toml"
    )))
    .unwrap()
}

pub use crate::TestHub;

/// Starting the hub the way these tests do: the shipped registry and the
/// test PKI, with `tweak` applied to the options.
pub trait StartHub {
    /// Opens the hub on `dir` and serves it on 127.0.0.1:0; returns once health says SERVING.
    async fn start(pki: &Pki, dir: &Path, tweak: impl FnOnce(&mut HubOptions)) -> TestHub;
}

impl StartHub for TestHub {
    async fn start(pki: &Pki, dir: &Path, tweak: impl FnOnce(&mut HubOptions)) -> TestHub {
        let mut options = HubOptions::new(dir, shipped_registry(), pki.server_bundle());
        tweak(&mut options);
        TestHub::serve(options, &pki.analyst, "localhost").await
    }
}

/// Consistent true counts for one site and period. Every non-zero figure is a
/// multiple of 5 above 7 (except `day_services`/`gp`, which may be small to
/// test suppression), so the published table equals these counts when
/// `introductions` is a multiple of 5 of at least 40. Introductions are
/// spread over two support levels, two needs, two sources and four age
/// bands (two in each adult age group), so that every table has at least
/// two published parts: a table with one non-zero part would pin its
/// withheld zeros, and secondary suppression would withhold the part too.
pub fn aggregates(active: u64, introductions: u64, day_services: u64, gp: u64) -> Aggregates {
    let floor5 = |x: u64| x / 5 * 5;
    let a = floor5(introductions / 2);
    let b = introductions - a;
    let (a1, b1) = (floor5(a / 2), floor5(b / 2));
    let (a2, b2) = (a - a1, b - b1);
    let mut a_ = Aggregates::default();
    let c = &mut a_.counts;
    c[metrics::PEOPLE_ACTIVE] = active;
    c[metrics::PEOPLE_NEW] = introductions;
    c[metrics::INTRODUCTIONS_NEW] = introductions;
    let (l1, l2) = (SupportLevel::Level1, SupportLevel::Level2);
    c[metrics::support_level(l1)] = a;
    c[metrics::support_level(l2)] = b;
    c[metrics::age_band(AgeBand::From45To54)] = a1;
    c[metrics::age_band(AgeBand::From25To34)] = b1;
    c[metrics::age_band(AgeBand::From65To74)] = a2;
    c[metrics::age_band(AgeBand::From75To84)] = b2;
    c[metrics::age_group(AgeGroup::From18To64)] = a1 + b1;
    c[metrics::age_group(AgeGroup::From65)] = a2 + b2;
    c[metrics::primary_need(PrimaryNeed::MentalHealth)] = a1 + b1;
    c[metrics::primary_need(PrimaryNeed::OlderPeopleFrailty)] = a2 + b2;
    c[metrics::source(IntroductionSource::SelfReferral)] = a1 + b1;
    c[metrics::source(IntroductionSource::GpHealth)] = a2 + b2;
    // The same introductions in the support-level cross-tabs.
    for (level, (first, second)) in [(l1, (a1, a2)), (l2, (b1, b2))] {
        c[metrics::level_people_new(level)] = first + second;
        c[metrics::level_age_group(level, AgeGroup::From18To64)] = first;
        c[metrics::level_age_group(level, AgeGroup::From65)] = second;
        c[metrics::level_primary_need(level, PrimaryNeed::MentalHealth)] = first;
        c[metrics::level_primary_need(level, PrimaryNeed::OlderPeopleFrailty)] = second;
        c[metrics::level_source(level, IntroductionSource::SelfReferral)] = first;
        c[metrics::level_source(level, IntroductionSource::GpHealth)] = second;
    }
    c[metrics::level_people_active(l1)] = active - b;
    c[metrics::level_people_active(l2)] = b;
    c[metrics::outcome(Outcome::AlternativeToDayServices)] = day_services;
    c[metrics::outcome(Outcome::ReducedGpAeUse)] = gp;
    a_
}

/// A wire submission of an already protected table, with a correct digest.
pub fn submission_of(
    site: &str,
    period: &str,
    revision: u64,
    published: &Published,
    policy: DisclosurePolicy,
) -> pb::Submission {
    let p = Period::parse(period).unwrap();
    pb::Submission {
        packed: None,
        structural_zeros: Vec::new(),
        site_code: site.into(),
        period: Some(period_to_proto(p)),
        revision,
        digest: submission::digest(site, p, &policy, published),
        policy: Some(policy_to_proto(&policy)),
        cells: cells(published),
        generated_at_unix: 1_700_000_000,
    }
}

/// A valid submission as a site agent builds it: aggregates → disclosure control → digest.
/// It carries what its kind of period carries (`lacnet_core::release`).
pub fn submission(site: &str, period: &str, revision: u64, agg: &Aggregates) -> pb::Submission {
    let policy = DisclosurePolicy::default();
    let carried = lacnet_core::release::carried(Period::parse(period).unwrap().granularity());
    submission_of(
        site,
        period,
        revision,
        &disclosure::release_alone(agg, &carried, &policy),
        policy,
    )
}

pub fn value(c: &Option<pb::Count>) -> Option<u64> {
    match c.as_ref().and_then(|c| c.kind) {
        Some(pb::count::Kind::Value(v)) => Some(v),
        _ => None,
    }
}

pub fn is_suppressed(c: &Option<pb::Count>) -> bool {
    matches!(
        c.as_ref().and_then(|c| c.kind),
        Some(pb::count::Kind::Suppressed(_))
    )
}

pub fn count(v: u64) -> Count {
    Count::Value(v)
}

pub fn quarter(s: &str) -> Option<pb::Period> {
    Some(period_to_proto(Period::parse(s).unwrap()))
}

pub fn compare_request(metric: &str, from: &str, to: &str) -> hub::CompareMetricRequest {
    hub::CompareMetricRequest {
        metric: metric.into(),
        from: quarter(from),
        to: quarter(to),
    }
}
