//! Publishing at the scale lacnet claims: one council of `LACNET_SCALE_ROWS`
//! records (default 1,000,000) over the 3 years to last month, with financial
//! years and programmes to date, monthly and then quarterly.
//!
//! The real binaries run as child processes, with a hub, over mTLS. Three
//! phases, each in a fresh agent process on the same data directory, so each
//! has its own peak RSS (`VmHWM`):
//!
//! 1. import: `lacnet import` of the CSV file, with publishing held off;
//! 2. publish: the agent starts, catches up on every period the import left
//!    to recompute, and its outbox drains to the hub;
//! 3. restart: the agent starts again over unchanged data, which must enqueue
//!    nothing (a restart after a crash is cheap).
//!
//! Run: `cargo bench -p lacnet-e2e --bench publish_scale`
//! (`LACNET_SCALE_ROWS=200000`, `LACNET_SCALE_KINDS=month` to narrow it).

use std::time::{Duration, Instant};

use lacnet_cli::generate::{self, Plan, Profile};
use lacnet_cli::import::{self, ImportOptions};
use lacnet_core::Date;
use lacnet_proto::site::v1 as site;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_testkit::network::process::{
    BundleFiles, Service, agent_env, binary, hub_env, write_bundle,
};
use lacnet_testkit::network::*;
use tonic::transport::Channel;

/// What one phase cost.
struct Phase {
    /// Until the agent listened (its startup: the index rebuilt from disk).
    listening: f64,
    seconds: f64,
    peak_mib: f64,
    enqueued: u64,
}

struct Council {
    pki: CouncilPki,
    files: BundleFiles,
    hub_files: BundleFiles,
    key: std::path::PathBuf,
    data: std::path::PathBuf,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn client(agent: &Service, pem: &lacnet_tls::PemBundle) -> SiteAgentClient<Channel> {
    let url = agent.url();
    wait_serving(&url, pem, AGENT_NAME, "lacnet.site.v1.SiteAgent").await;
    SiteAgentClient::new(lacnet_tls::connect(&url, pem, AGENT_NAME).await.unwrap())
}

async fn status(agent: &Service, council: &Council) -> site::AgentStatus {
    client(agent, &council.pki.operator)
        .await
        .get_status(site::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Starts the agent, waits for its first publishing round to finish and its
/// outbox to drain, and stops it.
async fn publish_phase(env: &[(String, String)], council: &Council) -> Phase {
    let started = Instant::now();
    let agent = Service::spawn("agent", &binary("lacnet-site-agent"), env);
    let listening = started.elapsed().as_secs_f64();
    let status = loop {
        let s = status(&agent, council).await;
        if s.publish_rounds >= 1 && s.outbox_depth == 0 {
            break s;
        }
        assert!(
            s.dead_letters == 0,
            "the hub refused a release: {}",
            s.last_dead_letter_reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let peak_mib = mib(agent.status_kib("VmHWM:"));
    let (exit, _) = agent.terminate();
    assert!(exit.success(), "the agent did not stop cleanly: {exit:?}");
    Phase {
        listening,
        seconds,
        peak_mib,
        enqueued: status.releases_enqueued,
    }
}

async fn run(rows: usize, granularity: &str) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let today = Date::from_unix_seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    // Three whole years of months, ending with last month.
    let month_start = Date::new(today.year(), today.month(), 1).unwrap();
    let until = Date::from_days_since_epoch(month_start.days_since_epoch() - 1);
    let from = Date::new(month_start.year() - 3, month_start.month(), 1).unwrap();
    let profile: &'static Profile = Box::leak(Box::new(Profile {
        start: (from.year(), from.month(), 1),
        ..generate::DERBY.clone()
    }));

    let csv = dir.join("records.csv");
    let file = std::fs::File::create(&csv).unwrap();
    let plan = Plan {
        profile,
        seed: 1,
        until: Some(until),
        rows: Some(rows),
    };
    generate::write_csv(&plan, std::io::BufWriter::new(file), today).unwrap();

    let pki = NetworkPki::new();
    let hub_files = write_bundle(dir, "hub", &pki.hub);
    let registry = dir.join("registry.toml");
    let text = registry_toml().replacen(
        "granularity = \"quarter\"",
        &format!("granularity = \"{granularity}\""),
        1,
    );
    std::fs::write(&registry, text).unwrap();
    let hub = Service::spawn(
        "hub",
        &binary("lacnet-hub"),
        &hub_env(&dir.join("hub-data"), &registry, &hub_files, &[], 0),
    );
    let cpki = CouncilPki::new("derby");
    let council = Council {
        files: write_bundle(dir, "agent", &cpki.agent),
        pki: cpki,
        hub_files: write_bundle(dir, "site", &pki.site(DERBY)),
        key: dir.join("derby.key"),
        data: dir.join("derby-data"),
    };
    random_key_file(&council.key, "k1");
    let mut env = agent_env(
        DERBY,
        &council.data,
        &council.key,
        &council.files,
        &council.hub_files,
        &hub.url(),
    );
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    set(&mut env, "LACNET_AGENT_GRANULARITY", granularity.to_owned());
    set(&mut env, "LACNET_AGENT_PROGRAMME_START", from.to_string());
    set(&mut env, "LACNET_AGENT_CACHE_MB", "64".to_owned());

    // 1. Import, with publishing held off (an hour's debounce) so the phase
    // measures ingest alone.
    let mut importing = env.clone();
    set(
        &mut importing,
        "LACNET_AGENT_PUBLISH_DEBOUNCE_MS",
        "3600000".to_owned(),
    );
    let agent = Service::spawn("agent", &binary("lacnet-site-agent"), &importing);
    let started = Instant::now();
    let c = client(&agent, &council.pki.council).await;
    let mut opts = ImportOptions::new(&csv);
    opts.progress = false;
    let report = import::import(c, &agent.url(), &opts).await.unwrap();
    assert_eq!(report.rejected, 0, "generated rows were rejected");
    let import = Phase {
        listening: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        peak_mib: mib(agent.status_kib("VmHWM:")),
        enqueued: 0,
    };
    let (exit, _) = agent.terminate();
    assert!(exit.success(), "the agent did not stop cleanly: {exit:?}");

    // 2. Publish every period the import left to recompute.
    let publish = publish_phase(&env, &council).await;
    // 3. A restart over unchanged data.
    let restart = publish_phase(&env, &council).await;
    let _ = hub.terminate();

    println!(
        "{granularity:>7} site, {rows} records ({from} to {until}), releases enqueued {}",
        publish.enqueued
    );
    for (name, p) in [
        ("import", &import),
        ("publish", &publish),
        ("restart", &restart),
    ] {
        println!(
            "  {name:<8} {:>7.1} s (listening after {:>5.1} s)   agent peak RSS {:>6.0} MiB   releases enqueued {}",
            p.seconds, p.listening, p.peak_mib, p.enqueued
        );
    }
    assert_eq!(
        restart.enqueued, 0,
        "a restart over unchanged data republished"
    );
}

fn main() {
    let rows: usize = std::env::var("LACNET_SCALE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kinds = std::env::var("LACNET_SCALE_KINDS").unwrap_or_else(|_| "month,quarter".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for kind in kinds.split(',').filter(|k| !k.is_empty()) {
        rt.block_on(run(rows, kind));
    }
}
