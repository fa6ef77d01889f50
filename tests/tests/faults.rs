//! The whole network under faults: the real `lacnet-hub` and
//! `lacnet-site-agent` binaries as separate processes on loopback, with
//! certificates made here, sled in temp dirs and the default disclosure policy.
//!
//! Every scenario checks what the hub finally reports against figures worked
//! out here from the generated input ([`true_counts`] and [`hand_protect`]
//! in the harness, not `lacnet_core::aggregate` or `disclosure`):
//!
//! - the happy path, three agents, then a byte scan of everything the hub
//!   stored, logged and exposed for any raw identifier or ward code;
//! - a hub outage while the agents keep ingesting;
//! - SIGKILL of an agent during a large streaming ingest, and a client that
//!   retries the unacknowledged tail;
//! - SIGKILL of the hub during a burst of submissions;
//! - duplicate and replayed submissions;
//! - load: fifty site clients and twenty analysts for a bounded time;
//! - attacks, each refused with the right status while others are served;
//! - restore drills (the network heals itself): the hub's data directory
//!   wiped while agents ingest; the hub restored from a scheduled backup
//!   taken under load; an agent restored from an older backup (it reports
//!   the loss and never publishes over newer figures); a hub down for a
//!   whole reconcile interval. Each prints what it measured.
//!
//! The records lie in 2016 and every introduction closes within 2016, so
//! every period they touch closed long ago: the figures do not depend on the
//! day the test runs, nor on rules that hold back periods still open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lacnet_core::disclosure::{self, Count, DisclosurePolicy};
use lacnet_core::metrics::{self, Aggregates, catalogue};
use lacnet_core::vocab::{AgeBand, AgeGroup, IntroductionSource, PrimaryNeed, SupportLevel};
use lacnet_core::{Period, submission};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{cells, period_to_proto, policy_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::network::process::{
    BundleFiles, Service, agent_env, binary, hub_env, write_bundle,
};
use lacnet_testkit::network::*;
use lacnet_tls::dev::{DevCa, bundle};
use lacnet_tls::{Peer, PemBundle};
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;

/// ONS code of Swansea, the third agent.
const SWANSEA: &str = "W06000011";
/// The three councils that run agents: (code, name, case id prefix).
const COUNCILS: [(&str, &str, &str); 3] = [
    (THURROCK, "thurrock", "THK-LAC"),
    (DERBY, "derby", "DBY/"),
    (SWANSEA, "swansea", "SWA-"),
];
/// The quarters the generated records touch.
const QUARTERS: [(&str, &str, &str); 4] = [
    ("2016-Q1", "2016-01-01", "2016-03-31"),
    ("2016-Q2", "2016-04-01", "2016-06-30"),
    ("2016-Q3", "2016-07-01", "2016-09-30"),
    ("2016-Q4", "2016-10-01", "2016-12-31"),
];
/// The sites the load test's fifty clients submit as.
const LOAD_SITES: usize = 50;
/// How long the load runs.
const LOAD_FOR: Duration = Duration::from_secs(10);
/// Longest the hub may take to show what the agents acknowledged.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Metrics compared cell by cell with the hand rule: in no additive table,
/// so secondary suppression never touches them.
const CHECKED: [&str; 4] = [
    "people_active",
    "people_new",
    "introductions_new",
    "closures",
];

fn load_site(i: usize) -> String {
    format!("E06000{:03}", 100 + i)
}

/// The registry: the three councils, fifty load sites, the default policy.
fn registry_text() -> String {
    let mut text =
        String::from("[policy]\nthreshold = 7\nrounding_base = 5\nsecondary_suppression = true\n");
    for (code, name, _) in COUNCILS {
        text.push_str(&format!(
            "\n[[sites]]\ncode = \"{code}\"\nname = \"{name}\"\ngranularity = \"quarter\"\nadult_population = 150000\n"
        ));
    }
    for i in 0..LOAD_SITES {
        text.push_str(&format!(
            "\n[[sites]]\ncode = \"{}\"\nname = \"Load site {i}\"\ngranularity = \"quarter\"\nadult_population = {}\n",
            load_site(i),
            50_000 + 1_000 * i
        ));
    }
    text
}

/// `n` introductions for council `c` (an index into [`COUNCILS`]), all
/// introduced and closed in 2016. Every ninth has no NHS number; every
/// seventh re-introduces the person of the record five before it.
fn generate(c: usize, n: usize) -> Vec<CaseRecord> {
    const NEEDS: [i32; 8] = [1, 2, 3, 4, 6, 7, 8, 9];
    const OUTCOMES: [i32; 5] = [1, 2, 3, 4, 5];
    let (_, _, prefix) = COUNCILS[c];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1ac_0000 + c as u64);
    let base = 401_000_000 + 90_000_000 * c as u64;
    let mut out: Vec<CaseRecord> = Vec::with_capacity(n);
    for i in 0..n {
        let month = rng.random_range(1..=10u32);
        let day = rng.random_range(1..=28u32);
        let close_month = (month + rng.random_range(0..=2u32)).min(12);
        let close_day = if close_month == month {
            rng.random_range(day..=28)
        } else {
            rng.random_range(1..=28)
        };
        let nhs_number = if i % 9 == 8 {
            None
        } else if i % 7 == 6 && out[i - 5].nhs.is_some() {
            out[i - 5].nhs.clone()
        } else {
            Some(nhs(base + 10 * i as u64))
        };
        let outcomes = OUTCOMES
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        out.push(CaseRecord {
            case: format!("{prefix}{:07}", 3_100_000 + 13 * i),
            nhs: nhs_number,
            introduced_on: format!("2016-{month:02}-{day:02}"),
            closed_on: Some(format!("2016-{close_month:02}-{close_day:02}")),
            level: 1 + (i % 2) as i32,
            age: rng.random_range(18..=99),
            need: NEEDS[i % NEEDS.len()],
            source: 1 + (i % 9) as i32,
            outcomes,
            ward: format!("E0500{}{:03}", 7 + c, i % 23),
        });
    }
    out
}

/// What the hub should publish for `records` in `quarter`, metric by metric.
fn expected(records: &[CaseRecord], quarter: usize) -> Vec<(&'static str, Count)> {
    let (_, start, end) = QUARTERS[quarter];
    let truth = true_counts(records, start, end);
    CHECKED
        .iter()
        .map(|id| {
            let v = truth.counts[catalogue().index_of(id).unwrap()];
            let c = match hand_protect(v) {
                Some(v) => Count::Value(v),
                None => Count::Suppressed,
            };
            (*id, c)
        })
        .collect()
}

fn period_pb(p: &str) -> Option<pb::Period> {
    Some(period_to_proto(Period::parse(p).unwrap()))
}

async fn summary(
    reports: &ReportsClient<Channel>,
    p: &str,
) -> Result<hub::NetworkSummaryResponse, tonic::Status> {
    reports
        .clone()
        .network_summary(hub::NetworkSummaryRequest {
            period: period_pb(p),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `Ok` when, for every quarter and every `(site, records)`, the hub's
/// published cells equal [`expected`]; otherwise the first difference.
async fn hub_matches(
    reports: &ReportsClient<Channel>,
    sites: &[(&str, &[CaseRecord])],
) -> Result<(), String> {
    for (q, (p, _, _)) in QUARTERS.iter().enumerate() {
        let s = summary(reports, p).await.map_err(|e| format!("{p}: {e}"))?;
        let tables = published_by_site(&s);
        for (code, records) in sites {
            let table = tables
                .get(*code)
                .ok_or_else(|| format!("{code} {p}: not at the hub yet"))?;
            // Every published figure is the hand rule's. Linked protection
            // may withhold a large headline for another release's sake, as
            // a last resort, but never most of them: enough stay to tell a
            // lost or doubled record.
            let mut shown = 0;
            for (id, want) in expected(records, q) {
                let got = table.counts[catalogue().index_of(id).unwrap()];
                let complement = got == Count::Suppressed && matches!(want, Count::Value(_));
                if got != want && !complement {
                    return Err(format!(
                        "{code} {p} {id}: hub has {got:?}, expected {want:?}"
                    ));
                }
                shown += usize::from(matches!(got, Count::Value(_)));
            }
            if shown < 2 {
                return Err(format!(
                    "{code} {p}: only {shown} checked figures published"
                ));
            }
        }
    }
    Ok(())
}

/// Every quarter's summary, to tell when publishing has come to rest.
async fn summaries(reports: &ReportsClient<Channel>) -> Vec<Option<hub::NetworkSummaryResponse>> {
    let mut out = Vec::new();
    for (p, _, _) in QUARTERS {
        out.push(summary(reports, p).await.ok());
    }
    out
}

/// Waits (bounded) until [`hub_matches`] and the hub's figures have come to
/// rest (unchanged across a pause longer than an agent's longest debounce:
/// a match on an early round's release must not pass for the last one);
/// panics with the last difference.
async fn settle(reports: &ReportsClient<Channel>, sites: &[(&str, &[CaseRecord])]) {
    let started = Instant::now();
    loop {
        let matched = match hub_matches(reports, sites).await {
            Ok(()) => {
                let before = summaries(reports).await;
                tokio::time::sleep(Duration::from_millis(2500)).await;
                if summaries(reports).await == before {
                    Ok(())
                } else {
                    Err("the hub's figures are still changing".to_owned())
                }
            }
            Err(e) => Err(e),
        };
        match matched {
            Ok(()) => return,
            Err(e) if started.elapsed() > SETTLE_LIMIT => {
                panic!("the hub never matched the independent counts: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One council: its PKI and files, its data, and its agent process.
struct Council {
    code: &'static str,
    pki: CouncilPki,
    council_files: BundleFiles,
    hub_files: BundleFiles,
    key: PathBuf,
    data: PathBuf,
    agent: Option<Service>,
}

/// A network on disk: PKI files, registry, the hub process and the councils.
struct Net {
    root: tempfile::TempDir,
    pki: NetworkPki,
    hub_files: BundleFiles,
    crls: Vec<PathBuf>,
    registry: PathBuf,
    hub_dir: PathBuf,
    hub_port: u16,
    hub: Option<Service>,
    councils: Vec<Council>,
    /// More environment for the hub (scheduled backups in the drills).
    hub_extra: Vec<(String, String)>,
    /// More environment for every agent (a short reconcile interval).
    agent_extra: Vec<(String, String)>,
}

impl Net {
    /// Writes the PKI and registry, starts the hub, and prepares `agents` councils.
    fn new(agents: usize) -> Net {
        let root = tempfile::tempdir().unwrap();
        let pki = NetworkPki::new();
        let hub_files = write_bundle(root.path(), "hub", &pki.hub);
        let registry = root.path().join("registry.toml");
        std::fs::write(&registry, registry_text()).unwrap();
        let councils = COUNCILS[..agents]
            .iter()
            .map(|(code, name, _)| {
                let cpki = CouncilPki::new(name);
                let council_files =
                    write_bundle(root.path(), &format!("{name}-agent"), &cpki.agent);
                let hub_files = write_bundle(root.path(), &format!("{name}-site"), &pki.site(code));
                let key = root.path().join(format!("{name}.key"));
                random_key_file(&key, "k1");
                Council {
                    code,
                    pki: cpki,
                    council_files,
                    hub_files,
                    key,
                    data: root.path().join(format!("{name}-data")),
                    agent: None,
                }
            })
            .collect();
        let hub_dir = root.path().join("hub-data");
        Net {
            root,
            pki,
            hub_files,
            crls: Vec::new(),
            registry,
            hub_dir,
            hub_port: 0,
            hub: None,
            councils,
            hub_extra: Vec::new(),
            agent_extra: Vec::new(),
        }
    }

    /// Starts the hub (on the port it had before, if any).
    fn start_hub(&mut self) {
        let mut env = hub_env(
            &self.hub_dir,
            &self.registry,
            &self.hub_files,
            &self.crls,
            self.hub_port,
        );
        env.extend(self.hub_extra.iter().cloned());
        let hub = Service::spawn("hub", &binary("lacnet-hub"), &env);
        self.hub_port = hub.grpc.port();
        self.hub = Some(hub);
    }

    fn hub(&self) -> &Service {
        self.hub.as_ref().expect("the hub is running")
    }

    fn hub_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.hub_port)
    }

    /// Starts council `i`'s agent on its data directory.
    fn start_agent(&mut self, i: usize) {
        let url = self.hub_url();
        let c = &mut self.councils[i];
        let mut env = agent_env(
            c.code,
            &c.data,
            &c.key,
            &c.council_files,
            &c.hub_files,
            &url,
        );
        env.extend(self.agent_extra.iter().cloned());
        c.agent = Some(Service::spawn(c.code, &binary("lacnet-site-agent"), &env));
    }

    /// Starts the hub and every agent.
    fn start_all(&mut self) {
        self.start_hub();
        for i in 0..self.councils.len() {
            self.start_agent(i);
        }
    }

    async fn reports(&self) -> ReportsClient<Channel> {
        let url = self.hub_url();
        wait_serving(&url, &self.pki.analyst, HUB_NAME, "lacnet.hub.v1.Reports").await;
        ReportsClient::new(
            lacnet_tls::connect(&url, &self.pki.analyst, HUB_NAME)
                .await
                .unwrap(),
        )
    }

    async fn agent_client(&self, i: usize, operator: bool) -> SiteAgentClient<Channel> {
        let c = &self.councils[i];
        let url = c.agent.as_ref().expect("the agent is running").url();
        let pem = if operator {
            &c.pki.operator
        } else {
            &c.pki.council
        };
        wait_serving(&url, pem, AGENT_NAME, "lacnet.site.v1.SiteAgent").await;
        SiteAgentClient::new(lacnet_tls::connect(&url, pem, AGENT_NAME).await.unwrap())
    }

    async fn status(&self, i: usize) -> site::AgentStatus {
        self.agent_client(i, true)
            .await
            .get_status(site::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    async fn submissions(&self, pem: &PemBundle) -> Result<SubmissionsClient<Channel>, String> {
        lacnet_tls::connect(&self.hub_url(), pem, HUB_NAME)
            .await
            .map(SubmissionsClient::new)
            .map_err(|e| e.to_string())
    }
}

/// Upserts `records` in batches of 250; every record must be accepted.
async fn upsert_all(client: &mut SiteAgentClient<Channel>, records: &[CaseRecord]) {
    for chunk in records.chunks(250) {
        let reply = client
            .upsert_records(site::UpsertRecordsRequest {
                records: chunk.iter().map(CaseRecord::to_proto).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (reply.accepted as usize, reply.rejected),
            (chunk.len(), 0),
            "{:?}",
            reply.verdicts.iter().find(|v| !v.violations.is_empty())
        );
    }
}

/// Every byte string from the generated input that must never reach the hub:
/// raw identifiers (and their unkeyed SHA-256), ward codes and exact ages
/// written as a field.
fn needles(all: &[&[CaseRecord]]) -> Needles {
    let mut n = Needles::default();
    let mut wards = BTreeSet::new();
    let mut ages = BTreeSet::new();
    for records in all {
        for r in *records {
            n.add_identifier("case id", &r.case);
            if let Some(x) = &r.nhs {
                n.add_identifier("NHS number", x);
            }
            wards.insert(r.ward.clone());
            ages.insert(r.age);
        }
    }
    for w in wards {
        n.add(w.as_bytes(), format!("ward {w}"));
    }
    for a in ages {
        for form in [
            format!("\"age\":{a}"),
            format!("\"age_years\":{a}"),
            format!("age={a}"),
            format!("age_years={a}"),
            format!("age: {a}"),
            format!("age_years: {a}"),
            format!("AgeYears({a})"),
        ] {
            n.add(form.into_bytes(), format!("exact age {a}"));
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn happy_path_then_nothing_personal_at_the_hub() {
    let mut net = Net::new(3);
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..3).map(|c| generate(c, 400)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, records).await;
    }
    let reports = net.reports().await;
    let sites: Vec<(&str, &[CaseRecord])> = COUNCILS
        .iter()
        .zip(&data)
        .map(|((code, _, _), r)| (*code, r.as_slice()))
        .collect();
    settle(&reports, &sites).await;
    // The data are big enough that most checked cells are published figures.
    let published = QUARTERS
        .iter()
        .enumerate()
        .flat_map(|(q, _)| data.iter().flat_map(move |r| expected(r, q)))
        .filter(|(_, c)| matches!(c, Count::Value(v) if *v > 0))
        .count();
    assert!(
        published >= 40,
        "only {published} published cells to compare"
    );

    // Everything the hub exposes: every report, the admin endpoints.
    let mut exposed = Vec::new();
    for (p, _, _) in QUARTERS {
        exposed.extend(format!("{:?}", summary(&reports, p).await.unwrap()).into_bytes());
    }
    let listed = reports
        .clone()
        .list_sites(hub::ListSitesRequest {})
        .await
        .unwrap();
    exposed.extend(format!("{listed:?}").into_bytes());
    for path in ["/metrics", "/healthz", "/livez", "/readyz"] {
        let (code, body) = net.hub().admin_get(path);
        assert_eq!(code, 200, "{path}");
        exposed.extend(body);
    }
    // Stop everything, so the stored bytes are final, then scan.
    for c in &mut net.councils {
        let (status, _) = c.agent.take().unwrap().terminate();
        assert!(status.success(), "{}: {status}", c.code);
    }
    let (status, logged) = net.hub.take().unwrap().terminate();
    assert!(status.success(), "hub: {status}");
    let all: Vec<&[CaseRecord]> = data.iter().map(Vec::as_slice).collect();
    let needles = needles(&all);
    let stored = scan_dir(&net.hub_dir, &needles);
    assert!(stored.files > 0 && stored.bytes > 0, "{stored:?}");
    assert!(stored.hits.is_empty(), "the hub stored: {:?}", stored.hits);
    assert!(!logged.is_empty());
    let hits = needles.find_in(&logged);
    assert!(hits.is_empty(), "the hub logged: {hits:?}");
    let hits = needles.find_in(&exposed);
    assert!(hits.is_empty(), "the hub exposed: {hits:?}");
    // The scan sees what it looks for: the agents' council-side inputs do
    // carry the identifiers in memory, and the needles match them.
    let sample = format!("{:?}", data[0][0].to_proto());
    assert!(!needles.find_in(sample.as_bytes()).is_empty(), "{sample}");
    eprintln!(
        "privacy scan: {} needles over {} stored files ({} bytes), {} log bytes, {} exposed bytes",
        needles.len(),
        stored.files,
        stored.bytes,
        logged.len(),
        exposed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_outage_while_agents_ingest_loses_nothing() {
    let mut net = Net::new(3);
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..3).map(|c| generate(c, 300)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[..150]).await;
    }
    let reports = net.reports().await;
    let firsts: Vec<(&str, &[CaseRecord])> = COUNCILS
        .iter()
        .zip(&data)
        .map(|((code, _, _), r)| (*code, &r[..150]))
        .collect();
    settle(&reports, &firsts).await;
    drop(reports);

    // The hub goes away; the agents keep taking records and queue what they publish.
    let (status, _) = net.hub.take().unwrap().terminate();
    assert!(status.success(), "hub: {status}");
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[150..]).await;
    }
    for (i, (code, _, _)) in COUNCILS.iter().enumerate() {
        let started = Instant::now();
        loop {
            let s = net.status(i).await;
            if s.outbox_depth > 0 && !s.last_push_error.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < SETTLE_LIMIT,
                "{code}: never queued: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Back on the same address and data: the hub shows exactly what a run
    // without the outage shows, the independent counts of every record.
    net.start_hub();
    let reports = net.reports().await;
    let all: Vec<(&str, &[CaseRecord])> = COUNCILS
        .iter()
        .zip(&data)
        .map(|((code, _, _), r)| (*code, r.as_slice()))
        .collect();
    settle(&reports, &all).await;
    for i in 0..3 {
        let started = Instant::now();
        while net.status(i).await.outbox_depth != 0 {
            assert!(started.elapsed() < SETTLE_LIMIT, "outbox never drained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_an_agent_mid_stream_keeps_every_acknowledged_record() {
    const CHUNK: usize = 1_000;
    const CHUNKS: usize = 12;
    let mut net = Net::new(3);
    net.start_all();
    let big = generate(0, CHUNK * CHUNKS);
    let small: Vec<Vec<CaseRecord>> = (1..3).map(|c| generate(c, 200)).collect();
    for (i, records) in small.iter().enumerate() {
        upsert_all(&mut net.agent_client(i + 1, false).await, records).await;
    }

    // A case system streams the big import in calls of CHUNK records; each
    // completed call is an acknowledgement of its records.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let client = net.agent_client(0, false).await;
    let streamer = {
        let acked = acked.clone();
        let big = big.clone();
        tokio::spawn(async move {
            let mut client = client;
            for (n, chunk) in big.chunks(CHUNK).enumerate() {
                let records: Vec<site::Record> = chunk.iter().map(CaseRecord::to_proto).collect();
                match client.stream_records(tokio_stream::iter(records)).await {
                    Ok(s) => {
                        let s = s.into_inner();
                        assert_eq!((s.accepted, s.rejected), (CHUNK as u64, 0));
                        acked.lock().unwrap().push(n);
                    }
                    Err(_) => return,
                }
            }
        })
    };
    let started = Instant::now();
    while acked.lock().unwrap().len() < 3 {
        assert!(
            started.elapsed() < SETTLE_LIMIT,
            "the stream never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    net.councils[0].agent.take().unwrap().kill();
    streamer.await.unwrap();
    let acked: Vec<usize> = acked.lock().unwrap().clone();
    assert!(acked.len() < CHUNKS, "the kill came after the whole import");
    assert_eq!(acked, (0..acked.len()).collect::<Vec<_>>());

    // Restarted on the same data: every acknowledged record is there, and at
    // most the one call in flight beyond them.
    net.start_agent(0);
    let count = net.status(0).await.record_count as usize;
    let floor = acked.len() * CHUNK;
    assert!(
        (floor..=floor + CHUNK).contains(&count),
        "{count} records stored, {floor} acknowledged"
    );

    // The client retries everything not acknowledged; the count is exact.
    let mut client = net.agent_client(0, false).await;
    for chunk in big.chunks(CHUNK).skip(acked.len()) {
        let records: Vec<site::Record> = chunk.iter().map(CaseRecord::to_proto).collect();
        let s = client
            .stream_records(tokio_stream::iter(records))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((s.accepted, s.rejected), (CHUNK as u64, 0));
    }
    assert_eq!(net.status(0).await.record_count as usize, big.len());
    let reports = net.reports().await;
    let sites = [
        (THURROCK, big.as_slice()),
        (DERBY, small[0].as_slice()),
        (SWANSEA, small[1].as_slice()),
    ];
    settle(&reports, &sites).await;
}

/// Counts consistent with one another in which every set figure is `v`, a
/// multiple of 5 above 7, so the published table carries `v` unchanged.
fn table(v: u64) -> Aggregates {
    let mut a = Aggregates::default();
    for i in [
        metrics::PEOPLE_ACTIVE,
        metrics::PEOPLE_NEW,
        metrics::INTRODUCTIONS_NEW,
        metrics::support_level(SupportLevel::Level1),
        metrics::age_band(AgeBand::From45To54),
        metrics::age_group(AgeGroup::From18To64),
        metrics::primary_need(PrimaryNeed::MentalHealth),
        metrics::source(IntroductionSource::SelfReferral),
    ] {
        a.counts[i] = v;
    }
    a
}

/// The figure a direct client sends with revision `rev`.
fn figure(rev: u64) -> u64 {
    10 + 5 * rev
}

/// A submission as an agent builds it (input for the tests, not a check).
fn submission_for(site: &str, period: &str, rev: u64) -> pb::Submission {
    let p = Period::parse(period).unwrap();
    let policy = DisclosurePolicy::default();
    let published = disclosure::apply(&table(figure(rev)), &policy);
    pb::Submission {
        packed: None,
        structural_zeros: Vec::new(),
        site_code: site.into(),
        period: Some(period_to_proto(p)),
        revision: rev,
        digest: submission::digest(site, p, &policy, &published),
        policy: Some(policy_to_proto(&policy)),
        cells: cells(&published),
        generated_at_unix: 1_480_000_000,
    }
}

async fn submit(
    client: &mut SubmissionsClient<Channel>,
    sub: pb::Submission,
) -> Result<hub::SubmitReceipt, tonic::Status> {
    client
        .submit(hub::SubmitRequest {
            submission: Some(sub),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The figure every set metric of `site` shows in a summary, or why not:
/// all of them must agree (one release), so a mixed table is an error.
fn one_release(s: &hub::NetworkSummaryResponse, site: &str) -> Result<Option<u64>, String> {
    let tables = published_by_site(s);
    let Some(t) = tables.get(site) else {
        return Ok(None);
    };
    let set = table(1);
    let mut seen = BTreeSet::new();
    for (i, c) in t.counts.iter().enumerate() {
        // Every published cell is one the release set, and they all agree;
        // the rest are withheld (zero is a small count, and secondary
        // suppression may withhold a set cell too).
        match c {
            Count::Value(v) if set.counts[i] != 0 => {
                seen.insert(*v);
            }
            // Withheld, or not part of a quarter's release.
            Count::Suppressed | Count::NotReleased => {}
            other => return Err(format!("{site}: cell {i} is {other:?}")),
        }
    }
    match seen.len() {
        1 => Ok(seen.into_iter().next()),
        _ => Err(format!("{site}: one summary mixes releases {seen:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_hub_mid_burst_loses_no_acknowledged_submission() {
    const PERIODS: [&str; 8] = [
        "2016-Q1", "2016-Q2", "2016-Q3", "2016-Q4", "2017-Q1", "2017-Q2", "2017-Q3", "2017-Q4",
    ];
    let mut net = Net::new(0);
    net.start_hub();
    let acks = Arc::new(AtomicU64::new(0));
    // Per site: (period, revision) of every acknowledged submission, and the
    // one in flight when the hub died.
    type Log = (Vec<(usize, u64)>, Option<(usize, u64)>);
    let mut bursts = Vec::new();
    for (code, _, _) in COUNCILS {
        let mut client = net.submissions(&net.pki.site(code)).await.unwrap();
        let acks = acks.clone();
        bursts.push(tokio::spawn(async move {
            let mut log: Log = (Vec::new(), None);
            for rev in 1u64.. {
                for (p, period) in PERIODS.iter().enumerate() {
                    log.1 = Some((p, rev));
                    match submit(&mut client, submission_for(code, period, rev)).await {
                        Ok(r) => {
                            assert_eq!(r.status, hub::ReceiptStatus::New as i32, "{r:?}");
                            log.0.push((p, rev));
                            log.1 = None;
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => return (code, log),
                    }
                }
            }
            unreachable!()
        }));
    }
    let started = Instant::now();
    while acks.load(Ordering::SeqCst) < 60 {
        assert!(
            started.elapsed() < SETTLE_LIMIT,
            "the burst never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    net.hub.take().unwrap().kill();
    let mut logs = Vec::new();
    for b in bursts {
        logs.push(b.await.unwrap());
    }

    net.start_hub();
    let reports = net.reports().await;
    for (p, period) in PERIODS.iter().enumerate() {
        let s = summary(&reports, period).await.unwrap();
        for (code, (acked, in_flight)) in &logs {
            let last = acked.iter().filter(|(q, _)| *q == p).map(|(_, r)| *r).max();
            let pending = in_flight.filter(|(q, _)| *q == p).map(|(_, r)| r);
            let shown = one_release(&s, code).unwrap();
            // The latest acknowledged release, or the one whose receipt the kill cut off.
            let allowed: Vec<Option<u64>> = match (last, pending) {
                (None, None) => vec![None],
                (None, Some(r)) => vec![None, Some(figure(r))],
                (Some(l), None) => vec![Some(figure(l))],
                (Some(l), Some(r)) => vec![Some(figure(l)), Some(figure(r))],
            };
            assert!(
                allowed.contains(&shown),
                "{code} {period}: hub shows {shown:?}, acknowledged {last:?}, in flight {pending:?}"
            );
        }
    }
    let total: usize = logs.iter().map(|(_, (a, _))| a.len()).sum();
    assert!(total >= 60, "{total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_replayed_submissions_change_nothing() {
    let mut net = Net::new(3);
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..3).map(|c| generate(c, 200)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, records).await;
    }
    let reports = net.reports().await;
    let sites: Vec<(&str, &[CaseRecord])> = COUNCILS
        .iter()
        .zip(&data)
        .map(|((code, _, _), r)| (*code, r.as_slice()))
        .collect();
    settle(&reports, &sites).await;
    let mut before = Vec::new();
    for (p, _, _) in QUARTERS {
        before.push(summary(&reports, p).await.unwrap());
    }

    // The council's system re-sends every record: nothing is new.
    for (i, records) in data.iter().enumerate() {
        let mut client = net.agent_client(i, false).await;
        for chunk in records.chunks(250) {
            let reply = client
                .upsert_records(site::UpsertRecordsRequest {
                    records: chunk.iter().map(CaseRecord::to_proto).collect(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(
                reply
                    .verdicts
                    .iter()
                    .all(|v| v.verdict() == site::Verdict::AcceptedUnchanged),
                "{:?}",
                reply.verdicts.first()
            );
        }
    }
    // Each agent restarts (re-reading its outbox and dirty periods).
    for i in 0..3 {
        let (status, _) = net.councils[i].agent.take().unwrap().terminate();
        assert!(status.success());
        net.start_agent(i);
    }
    // A replay: each site's agent previews the exact submission for each
    // quarter, and the site re-sends it to the hub twice.
    for (i, (code, _, _)) in COUNCILS.iter().enumerate() {
        let mut op = net.agent_client(i, true).await;
        let mut hub_client = net.submissions(&net.pki.site(code)).await.unwrap();
        for (p, _, _) in QUARTERS {
            let preview = op
                .preview_submission(site::PreviewSubmissionRequest {
                    period: period_pb(p),
                })
                .await
                .unwrap()
                .into_inner()
                .submission
                .unwrap();
            for _ in 0..2 {
                match submit(&mut hub_client, preview.clone()).await {
                    // The agent's current release again: a duplicate, or a
                    // newer revision with the same content.
                    Ok(r) => assert_ne!(r.status, hub::ReceiptStatus::Unspecified as i32),
                    Err(s) => assert!(
                        matches!(s.code(), Code::AlreadyExists | Code::FailedPrecondition),
                        "{code} {p}: {s:?}"
                    ),
                }
            }
            // An old release replayed with revision 1: never current again.
            let mut stale = preview.clone();
            stale.revision = 1;
            match submit(&mut hub_client, stale).await {
                Ok(r) => assert_ne!(r.status, hub::ReceiptStatus::New as i32, "{code} {p}"),
                Err(s) => assert!(
                    matches!(
                        s.code(),
                        Code::AlreadyExists | Code::FailedPrecondition | Code::InvalidArgument
                    ),
                    "{code} {p}: {s:?}"
                ),
            }
        }
    }
    settle(&reports, &sites).await;
    for (q, (p, _, _)) in QUARTERS.iter().enumerate() {
        let after = summary(&reports, p).await.unwrap();
        assert_eq!(
            published_by_site(&after),
            published_by_site(&before[q]),
            "{p} changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_fifty_sites_and_twenty_analysts() {
    const ANALYSTS: usize = 20;
    let mut net = Net::new(0);
    net.start_hub();
    let stop = Arc::new(AtomicBool::new(false));
    let url = net.hub_url();
    let mut sites = Vec::new();
    for i in 0..LOAD_SITES {
        let code = load_site(i);
        let pem = net.pki.site(&code);
        let url = url.clone();
        let stop = stop.clone();
        sites.push(tokio::spawn(async move {
            let mut client =
                SubmissionsClient::new(lacnet_tls::connect(&url, &pem, HUB_NAME).await.unwrap());
            let (mut sent, mut refused) = (0u64, 0u64);
            let mut rev = 0;
            while !stop.load(Ordering::SeqCst) {
                rev += 1;
                let r = submit(&mut client, submission_for(&code, "2016-Q1", rev)).await;
                let r = r.unwrap_or_else(|e| panic!("{code} revision {rev}: {e:?}"));
                assert_eq!(r.status, hub::ReceiptStatus::New as i32, "{code} {r:?}");
                sent += 1;
                // Deliberately, every fifth time: a stale revision, which must
                // not become current, and a submission for another site.
                if rev % 5 == 0 {
                    let stale =
                        submit(&mut client, submission_for(&code, "2016-Q1", rev - 3)).await;
                    match stale {
                        Ok(r) => assert_ne!(r.status, hub::ReceiptStatus::New as i32),
                        Err(s) => assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}"),
                    }
                    let other = load_site((i + 1) % LOAD_SITES);
                    let s = submit(&mut client, submission_for(&other, "2016-Q1", rev))
                        .await
                        .expect_err("a site submitting for another");
                    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
                    refused += 2;
                }
            }
            (sent, refused)
        }));
    }
    let mut analysts = Vec::new();
    for _ in 0..ANALYSTS {
        let reports = net.reports().await;
        let stop = stop.clone();
        analysts.push(tokio::spawn(async move {
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let s = summary(&reports, "2016-Q1").await.unwrap();
                for i in 0..LOAD_SITES {
                    let code = load_site(i);
                    if let Some(v) = one_release(&s, &code).unwrap() {
                        let before = last.insert(code.clone(), v).unwrap_or(0);
                        assert!(v >= before, "{code} went back from {before} to {v}");
                    }
                }
                reads += 1;
            }
            reads
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(LOAD_FOR).await;
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    let mut refused = 0;
    for s in sites {
        let (a, b) = s.await.unwrap();
        sent += a;
        refused += b;
    }
    let mut reads = 0;
    for a in analysts {
        reads += a.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "load: {sent} submissions, {refused} deliberate refusals, {reads} summaries in {secs:.1} s"
    );
    assert!(sent >= LOAD_SITES as u64 && reads >= ANALYSTS as u64);
    // Afterwards every site shows its last submission.
    let reports = net.reports().await;
    let s = summary(&reports, "2016-Q1").await.unwrap();
    assert_eq!(s.sites_submitted as usize, LOAD_SITES);
    let (code, _) = net.hub().admin_get("/readyz");
    assert_eq!(code, 200);
}

/// A gRPC call with `body` as the request message, whatever its bytes.
async fn raw_submit(channel: Channel, body: Vec<u8>) -> Result<hub::SubmitReceipt, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static("/lacnet.hub.v1.Submissions/Submit"),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Sends bytes as they are; decodes a receipt.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawEncoder;
struct ReceiptDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = hub::SubmitReceipt;
    type Encoder = RawEncoder;
    type Decoder = ReceiptDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ReceiptDecoder {
        ReceiptDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ReceiptDecoder {
    type Item = hub::SubmitReceipt;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<hub::SubmitReceipt>, tonic::Status> {
        use prost::Message;
        hub::SubmitReceipt::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// How the hub refused (or took) an attempt: the gRPC status code's name,
/// or `handshake: <reason>` for a connection refused before any gRPC, with
/// the reason the hub logged for it.
async fn outcome(
    hub: &Service,
    log_from: usize,
    r: Result<hub::SubmitReceipt, tonic::Status>,
) -> String {
    let status = match r {
        Ok(_) => return "Ok".to_owned(),
        Err(s) => s,
    };
    // A gRPC answer from the hub carries no transport error as its source.
    if std::error::Error::source(&status).is_none() {
        return format!("{:?}", status.code());
    }
    let started = Instant::now();
    loop {
        let out = hub.output();
        let text = String::from_utf8_lossy(&out[log_from.min(out.len())..]).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("TLS handshake failed")) {
            for (needle, reason) in [
                ("certificate expired", "Expired"),
                ("Revoked", "Revoked"),
                ("UnknownIssuer", "UnknownIssuer"),
                ("InvalidContentType", "InvalidContentType"),
            ] {
                if line.contains(needle) {
                    return format!("handshake: {reason}");
                }
            }
            return format!("handshake: {line}");
        }
        if started.elapsed() > POLL_LIMIT {
            return format!("transport error, nothing logged: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_are_refused_while_others_are_served() {
    let mut net = Net::new(0);
    // A Derby certificate the network revokes.
    let revoked_cert = net.pki.ca.issue(&Peer::Site(DERBY.into()), &[]).unwrap();
    let crl = net.root.path().join("network.crl.pem");
    std::fs::write(&crl, net.pki.ca.crl(&[&revoked_cert]).unwrap()).unwrap();
    net.crls = vec![crl];
    net.start_hub();
    let pki = &net.pki;
    let thurrock = pki.site(THURROCK);
    let revoked = bundle(&pki.ca, &revoked_cert);
    let expired = bundle(
        &pki.ca,
        &pki.ca.issue_expired(&Peer::Site(THURROCK.into())).unwrap(),
    );
    let foreign_ca = DevCa::new("a foreign CA").unwrap();
    let foreign = PemBundle {
        ca: pki.ca.ca_pem().into_bytes(),
        ..bundle(
            &foreign_ca,
            &foreign_ca.issue(&Peer::Site(THURROCK.into()), &[]).unwrap(),
        )
    };
    let two_sans = bundle(
        &pki.ca,
        &pki.ca
            .issue_with_uris(&[
                "spiffe://lacnet/site/E06000034",
                "spiffe://lacnet/site/E06000015",
            ])
            .unwrap(),
    );
    let url = net.hub_url();
    let hub = net.hub();
    let call = |pem: PemBundle, sub: pb::Submission| {
        let url = url.clone();
        async move {
            let ch = lacnet_tls::connect(&url, &pem, HUB_NAME)
                .await
                .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
            submit(&mut SubmissionsClient::new(ch), sub).await
        }
    };
    let q1 = "2016-Q1";
    let mut rev = 0u64;
    let mut attacks: Vec<(&str, PemBundle, pb::Submission, &str)> = Vec::new();
    let mut next = || {
        rev += 1;
        rev
    };
    attacks.push((
        "impersonation",
        thurrock.clone(),
        submission_for(DERBY, q1, next()),
        "PermissionDenied",
    ));
    attacks.push((
        "an analyst submitting",
        pki.analyst.clone(),
        submission_for(THURROCK, q1, next()),
        "PermissionDenied",
    ));
    attacks.push((
        "expired certificate",
        expired,
        submission_for(THURROCK, q1, next()),
        "handshake: Expired",
    ));
    attacks.push((
        "foreign CA",
        foreign,
        submission_for(THURROCK, q1, next()),
        "handshake: UnknownIssuer",
    ));
    attacks.push((
        "revoked certificate",
        revoked,
        submission_for(DERBY, q1, next()),
        "handshake: Revoked",
    ));
    attacks.push((
        "two SANs",
        two_sans,
        submission_for(THURROCK, q1, next()),
        "Unauthenticated",
    ));
    // A policy violation: a count of 3 published as it is.
    let r = next();
    let mut leaky = submission_for(THURROCK, q1, r);
    let policy = DisclosurePolicy::default();
    let mut t = disclosure::apply(&table(figure(r)), &policy);
    t.counts[metrics::CLOSURES] = Count::Value(3);
    leaky.cells = cells(&t);
    leaky.digest = submission::digest(THURROCK, Period::parse(q1).unwrap(), &policy, &t);
    attacks.push((
        "policy violation",
        thurrock.clone(),
        leaky,
        "FailedPrecondition",
    ));
    // An oversized string, within the message limit.
    let mut long = submission_for(THURROCK, q1, next());
    long.site_code = "E".repeat(512 * 1024);
    attacks.push((
        "oversized string",
        thurrock.clone(),
        long,
        "InvalidArgument",
    ));
    // An oversized message: beyond the hub's 4 MiB limit.
    let mut huge = submission_for(THURROCK, q1, next());
    huge.site_code = "E".repeat(5 * 1024 * 1024);
    attacks.push(("oversized message", thurrock.clone(), huge, "OutOfRange"));

    let mut results: Vec<(&str, String, &str)> = Vec::new();
    for (name, pem, sub, want) in attacks {
        // A refused handshake may be logged more than once (the client
        // retries); let the previous attack's lines land before marking.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mark = hub.output().len();
        let got = outcome(hub, mark, call(pem, sub).await).await;
        results.push((name, got, want));
    }
    // Garbage bytes as the request message.
    let ch = lacnet_tls::connect(&url, &thurrock, HUB_NAME)
        .await
        .unwrap();
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x07)
        .collect();
    let got = outcome(hub, 0, raw_submit(ch, garbage).await).await;
    results.push(("garbage bytes", got, "InvalidArgument"));
    // Plaintext HTTP/2 to the TLS port.
    let mark = hub.output().len();
    let plain = async {
        let ch = tonic::transport::Endpoint::from_shared(url.replace("https://", "http://"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
        submit(
            &mut SubmissionsClient::new(ch),
            submission_for(THURROCK, q1, 99),
        )
        .await
    };
    let got = outcome(hub, mark, plain.await).await;
    results.push(("plaintext", got, "handshake: InvalidContentType"));

    // Meanwhile a legitimate site is served: a genuine submission lands and
    // shows in the report, and nothing an attack sent does.
    let mut fine = net.submissions(&thurrock).await.unwrap();
    let r = next();
    let receipt = submit(&mut fine, submission_for(THURROCK, q1, r))
        .await
        .unwrap();
    assert_eq!(receipt.status, hub::ReceiptStatus::New as i32);
    let reports = net.reports().await;
    let s = summary(&reports, q1).await.unwrap();
    assert_eq!(one_release(&s, THURROCK).unwrap(), Some(figure(r)));
    assert_eq!(
        one_release(&s, DERBY).unwrap(),
        None,
        "an attack landed for Derby"
    );
    for (name, got, _) in &results {
        eprintln!("attack {name}: {got}");
    }
    let wrong: Vec<_> = results
        .iter()
        .filter(|(_, got, want)| got != want)
        .collect();
    assert!(
        wrong.is_empty(),
        "refused wrongly (attack, got, expected): {wrong:#?}"
    );
    let (code, _) = hub.admin_get("/readyz");
    assert_eq!(code, 200);
}

// ---------------------------------------------------------------- restore drills

/// The reconcile interval the drills run agents with.
const RECONCILE_SECS: u64 = 2;

/// `name`'s value on a service's admin `/metrics` (summed over its label
/// sets when `labels` is empty), or 0 when absent.
fn metric(service: &Service, name: &str, labels: &str) -> f64 {
    let (code, body) = service.admin_get("/metrics");
    assert_eq!(code, 200, "{}: /metrics", service.name);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && (labels.is_empty() || rest.contains(labels)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Releases the agents re-sent, from their metrics.
fn resent(net: &Net) -> f64 {
    net.councils
        .iter()
        .filter_map(|c| c.agent.as_ref())
        .map(|a| metric(a, "lacnet_agent_releases_resent_total", ""))
        .sum()
}

/// A network of `agents` councils whose agents compare with the hub every
/// [`RECONCILE_SECS`].
fn drill_net(agents: usize) -> Net {
    let mut net = Net::new(agents);
    net.agent_extra.push((
        "LACNET_AGENT_RECONCILE_INTERVAL_SECS".into(),
        RECONCILE_SECS.to_string(),
    ));
    net
}

/// `(code, records)` for each council with data, `data[i][..upto]`.
fn sites_of(data: &[Vec<CaseRecord>], upto: usize) -> Vec<(&'static str, &[CaseRecord])> {
    COUNCILS
        .iter()
        .zip(data)
        .map(|((code, _, _), r)| (*code, &r[..upto.min(r.len())]))
        .collect()
}

/// Runs a maintenance command of a service binary (`restore --from ...`).
fn run_command(binary_name: &str, env: &[(&str, String)], args: &[&str]) {
    let mut cmd = std::process::Command::new(binary(binary_name));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{binary_name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest complete backup (with a manifest) in `dir`.
fn newest_backup(dir: &std::path::Path) -> Option<PathBuf> {
    let mut complete: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("MANIFEST").is_file())
        .collect();
    complete.sort();
    complete.pop()
}

/// Copies a backup directory (flat files and one level of subdirectories).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drill_hub_data_wiped_while_agents_ingest_heals_within_one_interval() {
    let mut net = drill_net(2);
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..2).map(|c| generate(c, 300)).collect();
    // Derby has sent everything before the fault; Thurrock keeps ingesting.
    upsert_all(&mut net.agent_client(0, false).await, &data[0][..150]).await;
    upsert_all(&mut net.agent_client(1, false).await, &data[1]).await;
    let reports = net.reports().await;
    let before = [(THURROCK, &data[0][..150]), (DERBY, &data[1][..])];
    settle(&reports, &before).await;
    drop(reports);
    let resent_before = resent(&net);

    // The hub's volume is lost; a new, empty hub comes up on the same address.
    let (status, _) = net.hub.take().unwrap().terminate();
    assert!(status.success(), "hub: {status}");
    std::fs::remove_dir_all(&net.hub_dir).unwrap();
    net.start_hub();
    let restarted = Instant::now();
    upsert_all(&mut net.agent_client(0, false).await, &data[0][150..]).await;
    let reports = net.reports().await;
    // Derby pushes nothing new, so only its scheduled comparison can tell
    // it the hub lost its releases: they must be back within one interval.
    settle(&reports, &[(DERBY, &data[1][..])]).await;
    let derby_took = restarted.elapsed();
    settle(&reports, &sites_of(&data, 300)).await;
    let took = restarted.elapsed();
    let resent = resent(&net) - resent_before;
    eprintln!(
        "drill hub wiped: an idle agent's releases back {:.1} s and every report equal to the no-fault counts {:.1} s after the empty hub started (reconcile interval {RECONCILE_SECS} s); {resent} releases re-sent",
        derby_took.as_secs_f64(),
        took.as_secs_f64()
    );
    // Derby's six releases (four quarters, two financial years) at least.
    assert!(resent >= 6.0, "{resent} re-sent");
    let margin = Duration::from_secs(5);
    assert!(
        derby_took < Duration::from_secs(RECONCILE_SECS) + margin,
        "the idle agent took {derby_took:?}: more than one reconcile interval (plus {margin:?} to start and settle)"
    );
    assert!(
        took < Duration::from_secs(RECONCILE_SECS + 10),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drill_hub_restored_from_a_scheduled_backup_under_load_heals_unattended() {
    let mut net = drill_net(2);
    let backups = net.root.path().join("hub-backups");
    net.hub_extra = vec![
        ("LACNET_HUB_BACKUP_EVERY".into(), "1s".into()),
        ("LACNET_HUB_BACKUP_KEEP".into(), "3".into()),
        (
            "LACNET_HUB_BACKUP_DIR".into(),
            backups.display().to_string(),
        ),
    ];
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..2).map(|c| generate(c, 500)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[..100]).await;
    }
    let reports = net.reports().await;
    settle(&reports, &sites_of(&data, 100)).await;
    // Under load: the agents ingest and publish while the hub backs up.
    let ok_before = metric(net.hub(), "lacnet_backups_total", "outcome=\"ok\"");
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[100..200]).await;
    }
    let started = Instant::now();
    while metric(net.hub(), "lacnet_backups_total", "outcome=\"ok\"") < ok_before + 2.0 {
        assert!(started.elapsed() < SETTLE_LIMIT, "no scheduled backup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let size = metric(net.hub(), "lacnet_backup_last_size_bytes", "");
    assert!(size > 0.0, "the last backup's size is {size}");
    assert!(metric(net.hub(), "lacnet_backup_age_seconds", "") < 60.0);
    let kept = std::fs::read_dir(&backups).unwrap().count();
    assert!(kept <= 3, "{kept} backups kept, --backup-keep 3");
    // More lands after the backup (batches of 150 move every quarter past
    // the release gate); then the hub's disk dies.
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[200..350]).await;
    }
    settle(&reports, &sites_of(&data, 350)).await;
    drop(reports);
    let chosen = newest_backup(&backups).expect("a complete backup");
    let saved = net.root.path().join("hub-backup-chosen");
    net.hub.take().unwrap().kill();
    copy_tree(&chosen, &saved);
    std::fs::remove_dir_all(&net.hub_dir).unwrap();
    run_command(
        "lacnet-hub",
        &[("LACNET_HUB_DATA_DIR", net.hub_dir.display().to_string())],
        &["restore", "--from", &saved.display().to_string()],
    );
    let resent_before = resent(&net);
    net.start_hub();
    let restarted = Instant::now();
    // Agents keep writing (enough for every quarter to pass the release
    // gate); no operator step follows.
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[350..]).await;
    }
    let reports = net.reports().await;
    settle(&reports, &sites_of(&data, 500)).await;
    let took = restarted.elapsed();
    let resent = resent(&net) - resent_before;
    eprintln!(
        "drill hub restored from a scheduled backup ({size} bytes): converged {:.1} s after restart, {resent} releases re-sent",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(RECONCILE_SECS + 10),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drill_agent_restored_from_an_older_backup_reports_the_loss_and_never_regresses() {
    let mut net = drill_net(2);
    let backups = net.root.path().join("agent-backups");
    net.start_hub();
    net.start_agent(1);
    // Thurrock's agent backs itself up every second.
    {
        let url = net.hub_url();
        let extra = net.agent_extra.clone();
        let c = &mut net.councils[0];
        let mut env = agent_env(
            c.code,
            &c.data,
            &c.key,
            &c.council_files,
            &c.hub_files,
            &url,
        );
        env.extend(extra);
        env.push(("LACNET_AGENT_BACKUP_EVERY".into(), "1s".into()));
        env.push((
            "LACNET_AGENT_BACKUP_DIR".into(),
            backups.display().to_string(),
        ));
        c.agent = Some(Service::spawn(c.code, &binary("lacnet-site-agent"), &env));
    }
    let data: Vec<Vec<CaseRecord>> = (0..2).map(|c| generate(c, 300)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[..150]).await;
    }
    let reports = net.reports().await;
    settle(&reports, &sites_of(&data, 150)).await;
    // A backup taken wholly after the first half was published.
    let agent = net.councils[0].agent.as_ref().unwrap();
    let ok = metric(agent, "lacnet_backups_total", "outcome=\"ok\"");
    let started = Instant::now();
    while metric(
        net.councils[0].agent.as_ref().unwrap(),
        "lacnet_backups_total",
        "outcome=\"ok\"",
    ) < ok + 2.0
    {
        assert!(started.elapsed() < SETTLE_LIMIT, "no scheduled backup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let older = net.root.path().join("agent-backup-older");
    copy_tree(&newest_backup(&backups).expect("a backup"), &older);
    // The second half is published; then the agent's disk dies and the older backup comes back.
    upsert_all(&mut net.agent_client(0, false).await, &data[0][150..]).await;
    upsert_all(&mut net.agent_client(1, false).await, &data[1][150..]).await;
    settle(&reports, &sites_of(&data, 300)).await;
    let (status, _) = net.councils[0].agent.take().unwrap().terminate();
    assert!(status.success(), "agent: {status}");
    let data_dir = net.councils[0].data.clone();
    std::fs::remove_dir_all(&data_dir).unwrap();
    run_command(
        "lacnet-site-agent",
        &[("LACNET_AGENT_DATA_DIR", data_dir.display().to_string())],
        &["restore", "--from", &older.display().to_string()],
    );
    net.start_agent(0);
    let restarted = Instant::now();
    let s = loop {
        let s = net.status(0).await;
        if !s.lost_periods.is_empty() {
            break s;
        }
        assert!(
            restarted.elapsed() < SETTLE_LIMIT,
            "the loss was never reported: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let detected = restarted.elapsed();
    let lost: Vec<String> = s.lost_periods.iter().map(|l| l.period.clone()).collect();
    assert!(s.lost_advice.contains("--full-export"), "{}", s.lost_advice);
    // Every lost period is one the second half changed, and the hub's
    // revision is above the agent's.
    for l in &s.lost_periods {
        assert!(l.hub_revision > l.agent_revision, "{l:?}");
    }
    assert!(lost.iter().any(|p| p.starts_with("2016-Q")), "{lost:?}");
    let agent = net.councils[0].agent.as_ref().unwrap();
    assert_eq!(
        metric(agent, "lacnet_agent_lost_periods", "") as usize,
        lost.len()
    );
    assert!(agent.logged("re-import the council's latest full export"));
    for p in &lost {
        assert!(agent.logged(p), "the ERROR line does not name {p}");
    }
    // No older figure replaces a newer one: the hub keeps showing the
    // complete counts through a recomputation and another comparison.
    net.agent_client(0, false).await; // serving
    let held_from = Instant::now();
    while held_from.elapsed() < Duration::from_secs(RECONCILE_SECS + 1) {
        hub_matches(&reports, &sites_of(&data, 300)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metric(agent, "lacnet_agent_reconciles_total", "outcome=\"ok\"") >= 2.0);
    // The council re-imports its latest full export and says so.
    let mut c = net.agent_client(0, false).await;
    upsert_all(&mut c, &data[0]).await;
    let released = c
        .confirm_full_import(site::ConfirmFullImportRequest {})
        .await
        .unwrap()
        .into_inner()
        .released_periods;
    assert_eq!(released, lost);
    settle(&reports, &sites_of(&data, 300)).await;
    let s = net.status(0).await;
    assert!(s.lost_periods.is_empty(), "{:?}", s.lost_periods);
    eprintln!(
        "drill agent restored from an older backup: loss reported {:.1} s after restart, periods {}; hub unchanged while held; released {} after the re-import",
        detected.as_secs_f64(),
        lost.join(", "),
        released.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drill_a_hub_down_for_a_whole_interval_keeps_retries_bounded() {
    let mut net = drill_net(2);
    net.start_all();
    let data: Vec<Vec<CaseRecord>> = (0..2).map(|c| generate(c, 200)).collect();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[..100]).await;
    }
    let reports = net.reports().await;
    settle(&reports, &sites_of(&data, 100)).await;
    drop(reports);
    let calls = |net: &Net| -> f64 {
        net.councils
            .iter()
            .map(|c| {
                let a = c.agent.as_ref().unwrap();
                metric(a, "lacnet_agent_push_attempts_total", "")
                    + metric(a, "lacnet_agent_reconciles_total", "")
            })
            .sum()
    };
    let (status, _) = net.hub.take().unwrap().terminate();
    assert!(status.success(), "hub: {status}");
    let before = calls(&net);
    let down = Instant::now();
    for (i, records) in data.iter().enumerate() {
        upsert_all(&mut net.agent_client(i, false).await, &records[100..]).await;
    }
    // The outage spans a whole reconcile interval: each agent fails a
    // comparison at least once, with its pushes queued.
    let outage = Duration::from_millis(RECONCILE_SECS * 1000 + 500);
    loop {
        let failed: f64 = net
            .councils
            .iter()
            .map(|c| {
                metric(
                    c.agent.as_ref().unwrap(),
                    "lacnet_agent_reconciles_total",
                    "outcome=\"failed\"",
                )
            })
            .sum();
        if down.elapsed() >= outage && failed >= 2.0 {
            break;
        }
        assert!(
            down.elapsed() < SETTLE_LIMIT,
            "the agents never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tried = calls(&net) - before;
    let secs = down.elapsed().as_secs_f64();
    // Full jitter up to the 500 ms cap averages one call per 250 ms per
    // agent; four times that plus the ramp-up is far above what a bounded
    // backoff makes, and far below a retry storm.
    let bound = 2.0 * (secs / 0.25 * 4.0 + 20.0);
    assert!(
        tried <= bound,
        "{tried} calls to a down hub in {secs:.1} s (bound {bound})"
    );
    net.start_hub();
    let back = Instant::now();
    let reports = net.reports().await;
    settle(&reports, &sites_of(&data, 200)).await;
    for i in 0..2 {
        let started = Instant::now();
        while net.status(i).await.outbox_depth != 0 {
            assert!(started.elapsed() < SETTLE_LIMIT, "outbox never drained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "drill hub down {secs:.1} s: {tried} calls from 2 agents ({:.1}/s each), converged {:.1} s after it returned",
        tried / secs / 2.0,
        back.elapsed().as_secs_f64()
    );
}
