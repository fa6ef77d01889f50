//! Test harness: certificates made in the test, key files in a temp dir, the
//! real agent served on 127.0.0.1:0 over mTLS with sled in a temp dir, and
//! record builders.

// Each test binary uses its own part of the harness.
#![allow(dead_code, unused_imports)]

pub mod process;

use std::path::{Path, PathBuf};

use lacnet_core::pseudonym::KeyRing;
use lacnet_core::{DisclosurePolicy, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{Agent, AgentOptions};
use lacnet_tls::dev::{DevCa, IssuedCert, bundle};
use lacnet_tls::{Peer, PemBundle};
use tonic::transport::Channel;

pub const THURROCK: &str = "E06000034";

/// Every certificate the tests need. One CA plays both the council CA and the
/// network CA (the agent trusts it for callers; the hub for sites).
pub struct Pki {
    pub ca: DevCa,
    pub agent_server: IssuedCert,
    pub hub_server: IssuedCert,
    /// The case system: may push records.
    pub council: PemBundle,
    /// The agent's operator: may read status, preview and erase.
    pub operator: PemBundle,
    pub site: PemBundle,
    pub analyst: PemBundle,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca = DevCa::new("lacnet test CA").unwrap();
        let leaf = |peer: Peer| bundle(&ca, &ca.issue(&peer, &[]).unwrap());
        Pki {
            agent_server: ca.issue_server(&["agent.lacnet"]).unwrap(),
            hub_server: ca.issue_server(&["hub.lacnet"]).unwrap(),
            council: leaf(Peer::Council("thurrock".into())),
            operator: leaf(Peer::Operator("sam".into())),
            site: leaf(Peer::Site(THURROCK.into())),
            analyst: leaf(Peer::Analyst("alice".into())),
            ca,
        }
    }

    pub fn agent_bundle(&self) -> PemBundle {
        bundle(&self.ca, &self.agent_server)
    }

    pub fn hub_bundle(&self) -> PemBundle {
        bundle(&self.ca, &self.hub_server)
    }

    /// Writes the PEM files a process needs into `dir`: ca.pem, agent.crt/key, site.crt/key, council.crt/key.
    pub fn write_files(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), self.ca.ca_pem()).unwrap();
        std::fs::write(dir.join("agent.crt"), &self.agent_server.cert_pem).unwrap();
        std::fs::write(dir.join("agent.key"), &self.agent_server.key_pem).unwrap();
        std::fs::write(dir.join("site.crt"), &self.site.cert).unwrap();
        std::fs::write(dir.join("site.key"), &self.site.key).unwrap();
    }
}

/// Writes key `name` (a `lacnet-key v1` file of 32 distinct bytes derived
/// from `seed`) to `dir/name` and returns its path.
pub fn key_file(dir: &Path, name: &str, seed: u8) -> PathBuf {
    let path = dir.join(name);
    let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed));
    let text = lacnet_site_agent::keys::encode_key_file(name, &bytes, &["test key"]);
    std::fs::write(&path, text).unwrap();
    path
}

/// A key ring from (id, path) pairs, newest first.
pub fn ring(keys: &[(&str, &Path)]) -> KeyRing {
    let files: Vec<(String, PathBuf)> = keys
        .iter()
        .map(|(id, p)| ((*id).to_owned(), p.to_path_buf()))
        .collect();
    lacnet_site_agent::keys::load_ring(&files).unwrap()
}

/// Exact counts (no suppression or rounding), so tests can check numbers.
pub fn exact_policy() -> DisclosurePolicy {
    DisclosurePolicy {
        threshold: 0,
        rounding_base: 1,
        secondary_suppression: false,
    }
}

/// Options for a test agent in `data` with the given ring, exact policy, quarterly.
pub fn options(pki: &Pki, data: &Path, keys: KeyRing) -> AgentOptions {
    let mut o = AgentOptions::new(data, THURROCK, keys, pki.agent_bundle());
    o.policy = exact_policy();
    o.cache_bytes = 8 * 1024 * 1024;
    o.publish_debounce = std::time::Duration::from_millis(50);
    o.max_batch = 1000;
    o
}

pub use crate::wait_serving as wait_serving_named;
pub use crate::{TestAgent, TestHub, copy_dir, wait_until};

/// Starting the agent the way these tests do: ready once a council
/// certificate sees it SERVING.
pub trait StartAgent {
    /// Opens the agent and serves it on 127.0.0.1:0; returns once health says SERVING.
    async fn start(pki: &Pki, options: AgentOptions) -> TestAgent;
}

impl StartAgent for TestAgent {
    async fn start(pki: &Pki, options: AgentOptions) -> TestAgent {
        TestAgent::serve(options, &pki.council).await
    }
}

/// Opens an agent. A stopped agent's `serve` returned only once every
/// connection task had dropped it, so its directory is free again at once: no retry.
pub async fn open(options: AgentOptions) -> Agent {
    Agent::open(options).unwrap_or_else(|e| panic!("could not open the agent: {e}"))
}

/// Polls gRPC health on an agent until `service` is SERVING (bounded).
pub async fn wait_serving(url: &str, pem: &PemBundle, service: &str) {
    crate::wait_serving(url, pem, crate::AGENT_NAME, service).await;
}

/// A valid NHS number from a 9-digit prefix (or the next prefix that has one).
pub fn nhs(prefix: u64) -> String {
    lacnet_core::validate::synthetic_nhs_number(prefix)
}

/// A valid record.
pub fn rec(case: &str, nhs_number: &str, introduced_on: &str) -> site::Record {
    site::Record {
        local_case_id: case.into(),
        nhs_number: nhs_number.into(),
        introduced_on: introduced_on.into(),
        closed_on: String::new(),
        support_level: pb::SupportLevel::SupportLevel2 as i32,
        age: Some(site::record::Age::AgeYears(47)),
        primary_need: pb::PrimaryNeed::MentalHealth as i32,
        introduction_source: pb::IntroductionSource::GpHealth as i32,
        outcomes: vec![],
        ward_code: "E05002035".into(),
        last_contact_on: String::new(),
        dated_outcomes: vec![],
        readmit_erased: false,
    }
}

pub fn period(s: &str) -> pb::Period {
    let p = Period::parse(s).unwrap();
    lacnet_proto::convert::period_to_proto(p)
}

/// The value of a metric in a submission (panics if suppressed or absent).
pub fn cell(sub: &pb::Submission, metric: &str) -> u64 {
    let c = sub
        .cells
        .iter()
        .find(|c| c.metric == metric)
        .unwrap_or_else(|| panic!("no cell {metric}"));
    match c.count.as_ref().and_then(|c| c.kind) {
        Some(pb::count::Kind::Value(v)) => v,
        other => panic!("{metric} is {other:?}"),
    }
}

pub async fn preview(client: &mut SiteAgentClient<Channel>, p: &str) -> pb::Submission {
    preview_decision(client, p).await.submission.unwrap()
}

/// The preview with its decision (publish, unchanged, embargoed or held).
pub async fn preview_decision(
    client: &mut SiteAgentClient<Channel>,
    p: &str,
) -> site::PreviewSubmissionResponse {
    client
        .preview_submission(site::PreviewSubmissionRequest {
            period: Some(period(p)),
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn status(client: &mut SiteAgentClient<Channel>) -> site::AgentStatus {
    client
        .get_status(site::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

pub async fn upsert(
    client: &mut SiteAgentClient<Channel>,
    records: Vec<site::Record>,
) -> site::UpsertRecordsResponse {
    client
        .upsert_records(site::UpsertRecordsRequest { records })
        .await
        .unwrap()
        .into_inner()
}

pub fn verdicts(r: &site::UpsertRecordsResponse) -> Vec<site::Verdict> {
    r.verdicts.iter().map(|v| v.verdict()).collect()
}

/// The real hub (lacnet-hub, the shipped registry) as these tests use it,
/// for tests where agents push to it.
pub trait HubForAgents {
    /// Opens the hub on `dir` and serves it; returns once health says SERVING.
    async fn start(pki: &Pki, dir: &Path) -> TestHub;
    /// Where an agent pushes to reach this hub, as Thurrock.
    fn target(&self, pki: &Pki) -> lacnet_site_agent::HubTarget;
    /// What an analyst's report shows for Thurrock: (revision, value) of
    /// `metric` in period `p`, or `None` when the hub has nothing for it.
    async fn figure(&self, pki: &Pki, metric: &str, p: &str) -> Option<(u64, pb::Count)>;
}

impl HubForAgents for TestHub {
    async fn start(pki: &Pki, dir: &Path) -> TestHub {
        let registry = lacnet_hub::Registry::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/hub/registry.toml"
        )))
        .unwrap();
        let options = lacnet_hub::HubOptions::new(dir, registry, pki.hub_bundle());
        TestHub::serve(options, &pki.site, crate::HUB_NAME).await
    }

    fn target(&self, pki: &Pki) -> lacnet_site_agent::HubTarget {
        lacnet_site_agent::HubTarget {
            url: self.url(),
            server_name: crate::HUB_NAME.into(),
            tls: pki.site.clone(),
        }
    }

    async fn figure(&self, pki: &Pki, metric: &str, p: &str) -> Option<(u64, pb::Count)> {
        use lacnet_proto::hub::v1::CompareMetricRequest;
        let report = self
            .reports(&pki.analyst)
            .await
            .compare_metric(CompareMetricRequest {
                metric: metric.into(),
                from: Some(period(p)),
                to: Some(period(p)),
            })
            .await
            .unwrap()
            .into_inner();
        report
            .periods
            .iter()
            .flat_map(|row| row.sites.iter())
            .find(|s| s.site_code == THURROCK)
            // Reports show analysts no revision numbers: ask the hub itself.
            .map(|s| {
                let p = Period::parse(p).unwrap();
                let revision = self.hub.current_revision(THURROCK, p).unwrap_or(0);
                (revision, s.value.unwrap_or_default())
            })
    }
}

/// The count a submission carries for `metric` (suppressed or not).
pub fn count_of(sub: &pb::Submission, metric: &str) -> pb::Count {
    sub.cells
        .iter()
        .find(|c| c.metric == metric)
        .and_then(|c| c.count)
        .unwrap_or_else(|| panic!("no cell {metric}"))
}
