//! Harness for the whole-network tests in `tests/tests/`: the real hub and
//! real site agents, in-process, each on 127.0.0.1:0 over mTLS with
//! certificates made in the test and sled in temp dirs.
//!
//! ```text
//! council client ──mTLS (council CA)──▶ site agent ──mTLS (network CA)──▶ hub ◀── analyst
//! ```
//!
//! Besides starting and stopping services, it holds the *independent*
//! reference model the tests check the network against: [`CaseRecord`] (what
//! a council sends), [`true_counts`] (the period's true counts, worked out
//! here from the records with plain string dates and sets, not with
//! `lacnet_core::aggregate`), [`hand_protect`] (the default disclosure rule
//! for one cell, written out by hand), and the byte scanner the privacy
//! checks use ([`Needles`]).

pub use crate::process;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use lacnet_core::disclosure::{Count, Published};
use lacnet_core::metrics::{Aggregates, METRIC_COUNT, catalogue};
use lacnet_core::vocab::{IntroductionSource, Outcome, PrimaryNeed};
use lacnet_hub::{HubOptions, Registry};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;
use lacnet_site_agent::AgentOptions;
use lacnet_tls::dev::{DevCa, bundle};
use lacnet_tls::{Peer, PemBundle};
use sha2::{Digest, Sha256};

/// ONS code of Thurrock.
pub const THURROCK: &str = "E06000034";
/// ONS code of Derby.
pub const DERBY: &str = "E06000015";
/// Thurrock's adult population in the test registry.
pub const THURROCK_ADULTS: u64 = 134_700;
/// Derby's adult population in the test registry.
pub const DERBY_ADULTS: u64 = 205_000;
/// Unit cost of an alternative to day services in the test registry (pence).
pub const DAY_SERVICES_PENCE: u64 = 40_000;
/// Unit cost of reduced GP/A&E use in the test registry (pence).
pub const GP_PENCE: u64 = 4_000;
pub use crate::{AGENT_NAME, HUB_NAME, POLL_LIMIT};

/// The registry the tests run the hub with: two sites, the network policy
/// (7 / 5 / secondary suppression), two unit costs and the other outcomes
/// excluded from costing.
pub fn registry_toml() -> String {
    format!(
        r#"
[policy]
threshold = 7
rounding_base = 5
secondary_suppression = true

[[sites]]
code = "{DERBY}"
name = "Derby"
adult_population = {DERBY_ADULTS}
granularity = "quarter"

[[sites]]
code = "{THURROCK}"
name = "Thurrock"
adult_population = {THURROCK_ADULTS}
granularity = "quarter"

[[unit_costs]]
outcome = "alternative_to_day_services"
pence = {DAY_SERVICES_PENCE}
source = "test figure"

[[unit_costs]]
outcome = "reduced_gp_ae_use"
pence = {GP_PENCE}
source = "test figure"

[[unit_cost_exclusions]]
outcome = "crisis_avoided"
reason = "no agreed figure"

[[unit_cost_exclusions]]
outcome = "community_connection"
reason = "not cashable"

[[unit_cost_exclusions]]
outcome = "volunteering"
reason = "not cashable"

[[unit_cost_exclusions]]
outcome = "tenancy_sustained"
reason = "no agreed figure"

[[unit_cost_exclusions]]
outcome = "social_care_referral_avoided"
reason = "no agreed figure"

[[unit_cost_exclusions]]
outcome = "training_employment"
reason = "not cashable"

[[unit_cost_exclusions]]
outcome = "carer_supported"
reason = "no agreed figure"
"#
    )
}

/// The network's PKI: one network CA for the hub, site and analyst
/// certificates. Each council has its own CA (see [`CouncilPki`]).
pub struct NetworkPki {
    /// The network CA.
    pub ca: DevCa,
    /// The hub's server bundle.
    pub hub: PemBundle,
    /// An analyst's client bundle.
    pub analyst: PemBundle,
}

impl NetworkPki {
    /// A fresh network CA with a hub and an analyst certificate.
    pub fn new() -> NetworkPki {
        let ca = DevCa::new("lacnet e2e network CA").unwrap();
        let hub = bundle(&ca, &ca.issue_server(&[HUB_NAME]).unwrap());
        let analyst = bundle(&ca, &ca.issue(&Peer::Analyst("alice".into()), &[]).unwrap());
        NetworkPki { ca, hub, analyst }
    }

    /// The client bundle a site agent pushes to the hub with.
    pub fn site(&self, code: &str) -> PemBundle {
        bundle(
            &self.ca,
            &self.ca.issue(&Peer::Site(code.into()), &[]).unwrap(),
        )
    }
}

impl Default for NetworkPki {
    fn default() -> Self {
        NetworkPki::new()
    }
}

/// One council's own PKI: its CA, the agent's server bundle and the bundle
/// the council's case system calls the agent with.
pub struct CouncilPki {
    /// The agent's server certificate and the council CA its callers chain to.
    pub agent: PemBundle,
    /// The council case system's client bundle (pushes records).
    pub council: PemBundle,
    /// The council operator's client bundle (status, preview, erasure).
    pub operator: PemBundle,
}

impl CouncilPki {
    /// A fresh council CA named after `council`.
    pub fn new(council: &str) -> CouncilPki {
        let ca = DevCa::new(&format!("{council} council CA")).unwrap();
        CouncilPki {
            agent: bundle(&ca, &ca.issue_server(&[AGENT_NAME]).unwrap()),
            council: bundle(&ca, &ca.issue(&Peer::Council(council.into()), &[]).unwrap()),
            operator: bundle(
                &ca,
                &ca.issue(&Peer::Operator(council.into()), &[]).unwrap(),
            ),
        }
    }
}

pub use crate::{LogCapture, TestAgent, TestHub, poll, wait_serving};

/// Starting the hub the way these tests do.
// Only this crate's tests await it, never across a spawn: no Send bound needed.
#[allow(async_fn_in_trait)]
pub trait StartHub {
    /// Opens the hub on `data_dir` with the registry at `registry` and serves
    /// it; returns once health says SERVING.
    async fn start(pki: &NetworkPki, data_dir: &Path, registry: &Path) -> TestHub;
}

impl StartHub for TestHub {
    async fn start(pki: &NetworkPki, data_dir: &Path, registry: &Path) -> TestHub {
        let registry = Registry::load(registry).unwrap();
        let options = HubOptions::new(data_dir, registry, pki.hub.clone());
        TestHub::serve(options, &pki.analyst, HUB_NAME).await
    }
}

/// Starting an agent the way these tests do.
#[allow(async_fn_in_trait)]
pub trait StartAgent {
    /// Opens the agent and serves it; returns once health says SERVING.
    async fn start(council: &CouncilPki, options: AgentOptions) -> TestAgent;
}

impl StartAgent for TestAgent {
    async fn start(council: &CouncilPki, options: AgentOptions) -> TestAgent {
        TestAgent::serve(options, &council.council).await
    }
}

/// Writes a council's HMAC key `id` of 32 fresh random bytes to `path`, in
/// the format `lacnet keygen` writes, and returns the bytes.
pub fn random_key_file(path: &Path, id: &str) -> Vec<u8> {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let text = lacnet_site_agent::keys::encode_key_file(id, &key, &["test key"]);
    std::fs::write(path, text).unwrap();
    key.to_vec()
}

/// A valid NHS number from a 9-digit prefix (or the next prefix that has one).
pub fn nhs(prefix: u64) -> String {
    lacnet_core::validate::synthetic_nhs_number(prefix)
}

/// One introduction as a council sends it, kept by the test as ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    /// The council's case id.
    pub case: String,
    /// The NHS number, when the council has one.
    pub nhs: Option<String>,
    /// YYYY-MM-DD.
    pub introduced_on: String,
    /// YYYY-MM-DD, when closed.
    pub closed_on: Option<String>,
    /// 1 or 2.
    pub level: i32,
    /// Age in years at introduction.
    pub age: u32,
    /// Proto `PrimaryNeed` number.
    pub need: i32,
    /// Proto `IntroductionSource` number.
    pub source: i32,
    /// Proto `Outcome` numbers.
    pub outcomes: Vec<i32>,
    /// ONS ward code.
    pub ward: String,
}

impl CaseRecord {
    /// Who the record is about: the NHS number when present, else the case id.
    pub fn person(&self) -> String {
        match &self.nhs {
            Some(n) => format!("nhs:{n}"),
            None => format!("case:{}", self.case),
        }
    }

    /// The wire record.
    pub fn to_proto(&self) -> site::Record {
        site::Record {
            local_case_id: self.case.clone(),
            nhs_number: self.nhs.clone().unwrap_or_default(),
            introduced_on: self.introduced_on.clone(),
            closed_on: self.closed_on.clone().unwrap_or_default(),
            support_level: self.level,
            age: Some(site::record::Age::AgeYears(self.age)),
            primary_need: self.need,
            introduction_source: self.source,
            outcomes: self.outcomes.clone(),
            ward_code: self.ward.clone(),
            ..Default::default()
        }
    }
}

/// Age band and age group ids for an age, written out from the brief's bands.
fn band_of(age: u32) -> (&'static str, Option<&'static str>) {
    match age {
        0..=17 => ("under_18", None),
        18..=24 => ("18_24", Some("18_64")),
        25..=34 => ("25_34", Some("18_64")),
        35..=44 => ("35_44", Some("18_64")),
        45..=54 => ("45_54", Some("18_64")),
        55..=64 => ("55_64", Some("18_64")),
        65..=74 => ("65_74", Some("65_plus")),
        75..=84 => ("75_84", Some("65_plus")),
        _ => ("85_plus", Some("65_plus")),
    }
}

/// The true counts of `records` for the period `[start, end]` (ISO dates),
/// worked out independently of `lacnet_core::aggregate`:
/// an introduction is active if introduced by the end and not closed before
/// the start, new if introduced within the period; people are distinct
/// persons (NHS number, else case id); an outcome counts the people who
/// achieved it in the period, and these records carry undated outcomes,
/// which count as achieved on the introduction day. Every count is also
/// kept per support level (`level_N.*`). The records here are all less than
/// 12 months old, so none has gone quiet (`cases_stale` stays 0).
pub fn true_counts(records: &[CaseRecord], start: &str, end: &str) -> Aggregates {
    let mut by_id: BTreeMap<String, u64> = BTreeMap::new();
    let mut bump = |id: String| *by_id.entry(id).or_default() += 1;
    // Keyed by "" (every level) and "level_N." (one level).
    let mut active: BTreeMap<(String, String), BTreeSet<i32>> = BTreeMap::new();
    let mut new_people: BTreeSet<(String, String)> = BTreeSet::new();
    for r in records {
        let level = format!("level_{}.", r.level);
        let closed = r.closed_on.as_deref();
        if closed.is_some_and(|c| start <= c && c <= end) {
            bump("closures".into());
            bump(format!("{level}closures"));
        }
        if r.introduced_on.as_str() > end || closed.is_some_and(|c| c < start) {
            continue;
        }
        let achieved = if start <= r.introduced_on.as_str() {
            r.outcomes.clone()
        } else {
            Vec::new()
        };
        for l in [String::new(), level.clone()] {
            active
                .entry((l, r.person()))
                .or_default()
                .extend(achieved.iter().copied());
        }
        if r.introduced_on.as_str() >= start {
            for l in [String::new(), level.clone()] {
                new_people.insert((l, r.person()));
            }
            bump("introductions_new".into());
            bump(format!("support_level.level_{}", r.level));
            let (band, group) = band_of(r.age);
            bump(format!("age_band.{band}"));
            if let Some(g) = group {
                bump(format!("age_group.{g}"));
            }
            bump(format!("{level}age_group.{}", group.unwrap_or("under_18")));
            let need = PrimaryNeed::from_code(r.need).unwrap().id();
            bump(format!("primary_need.{need}"));
            bump(format!("{level}primary_need.{need}"));
            let source = IntroductionSource::from_code(r.source).unwrap().id();
            bump(format!("source.{source}"));
            bump(format!("{level}source.{source}"));
        }
    }
    for ((l, _), outcomes) in &active {
        bump(format!("{l}people_active"));
        for o in outcomes {
            bump(format!(
                "{l}outcome.{}",
                Outcome::from_code(*o).unwrap().id()
            ));
        }
    }
    for (l, _) in &new_people {
        bump(format!("{l}people_new"));
    }
    let mut agg = Aggregates::default();
    for (id, v) in by_id {
        let i = catalogue()
            .index_of(&id)
            .unwrap_or_else(|| panic!("the catalogue has no metric {id}"));
        agg.counts[i] = v;
    }
    agg
}

/// The default network rule for one cell, by hand (primary suppression and
/// rounding; secondary suppression may withhold more): 0..=7 is suppressed
/// (zero is a small count); anything else is rounded to the nearest 5 (base
/// 5 is odd, so there is no half way) and suppressed if that lands at 7 or
/// below. `None` means suppressed.
pub fn hand_protect(true_value: u64) -> Option<u64> {
    if true_value <= 7 {
        return None;
    }
    let rounded = (true_value + 2) / 5 * 5;
    (rounded > 7).then_some(rounded)
}

/// A wire count as a domain count.
pub fn count_of(c: Option<&pb::Count>) -> Count {
    match c.and_then(|c| c.kind) {
        Some(pb::count::Kind::Value(v)) => Count::Value(v),
        Some(pb::count::Kind::Suppressed(_)) => Count::Suppressed,
        Some(pb::count::Kind::NotReleased(_)) => Count::NotReleased,
        None => panic!("a count with neither a value nor a marker"),
    }
}

/// Rebuilds each site's published table for a period from a NetworkSummary.
pub fn published_by_site(
    summary: &lacnet_proto::hub::v1::NetworkSummaryResponse,
) -> HashMap<String, Published> {
    let mut out: HashMap<String, Published> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for snap in &summary.metrics {
        let id = &snap.metric.as_ref().unwrap().id;
        let i = catalogue().index_of(id).unwrap();
        for row in &snap.comparison.as_ref().unwrap().sites {
            // A figure the period kind does not carry is not in the summary.
            let table = out.entry(row.site_code.clone()).or_insert(Published {
                counts: [Count::NotReleased; METRIC_COUNT],
            });
            table.counts[i] = count_of(row.value.as_ref());
            *seen.entry(row.site_code.clone()).or_default() += 1;
        }
    }
    let carried = summary
        .period
        .as_ref()
        .and_then(|p| lacnet_proto::convert::period_from_proto(Some(p), "period").ok())
        .map(|p| {
            lacnet_core::release::carried(p.granularity())
                .iter()
                .filter(|c| **c)
                .count()
        })
        .unwrap_or(METRIC_COUNT);
    for (site, n) in seen {
        assert_eq!(
            n, carried,
            "{site}: not every metric the period carries is in the summary"
        );
    }
    out
}

/// Byte strings that must not appear somewhere, each with a label for the
/// failure message. Searched with a 4-byte prefix index, so scanning a few
/// MB of sled files for a few thousand needles stays fast in a debug build.
#[derive(Default)]
pub struct Needles {
    by_prefix: HashMap<[u8; 4], Vec<(Vec<u8>, String)>>,
    count: usize,
}

/// Lowercase hex (the workspace's one encoder).
pub use lacnet_core::hex::encode as hex;

impl Needles {
    /// Adds one needle (at least 4 bytes).
    pub fn add(&mut self, bytes: impl Into<Vec<u8>>, label: impl Into<String>) {
        let bytes = bytes.into();
        assert!(bytes.len() >= 4, "needles must be at least 4 bytes");
        let key = [bytes[0], bytes[1], bytes[2], bytes[3]];
        self.by_prefix
            .entry(key)
            .or_default()
            .push((bytes, label.into()));
        self.count += 1;
    }

    /// Adds an identifier, and its unkeyed SHA-256 as lowercase hex,
    /// uppercase hex and raw bytes (what a careless "hash it" would store).
    pub fn add_identifier(&mut self, kind: &str, raw: &str) {
        self.add(raw.as_bytes(), format!("raw {kind} {raw}"));
        let digest = Sha256::digest(raw.as_bytes());
        let h = hex(&digest);
        self.add(h.as_bytes(), format!("sha256 hex of {kind} {raw}"));
        self.add(
            h.to_ascii_uppercase().into_bytes(),
            format!("SHA256 HEX of {kind} {raw}"),
        );
        self.add(digest.to_vec(), format!("raw sha256 of {kind} {raw}"));
    }

    /// How many needles there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Labels of every needle found in `data`.
    pub fn find_in(&self, data: &[u8]) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for pos in 0..data.len().saturating_sub(3) {
            let key = [data[pos], data[pos + 1], data[pos + 2], data[pos + 3]];
            if let Some(candidates) = self.by_prefix.get(&key) {
                for (needle, label) in candidates {
                    if data[pos..].starts_with(needle) {
                        found.insert(label.clone());
                    }
                }
            }
        }
        found
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let t = entry.file_type().unwrap();
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// What a directory scan saw.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// `file: needle label` for every hit.
    pub hits: Vec<String>,
}

/// Reads every file under `dir` and reports each needle found in it.
pub fn scan_dir(dir: &Path, needles: &Needles) -> ScanReport {
    let mut report = ScanReport::default();
    for path in files_under(dir) {
        let data = std::fs::read(&path).unwrap();
        report.files += 1;
        report.bytes += data.len() as u64;
        for label in needles.find_in(&data) {
            report.hits.push(format!("{}: {label}", path.display()));
        }
    }
    report
}
