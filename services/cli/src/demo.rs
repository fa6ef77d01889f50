//! `lacnet demo`: a whole LAC Network on this machine, in one command.
//!
//! It makes a development PKI and HMAC keys in a temporary directory, starts
//! the real hub and real site agents (Derby, Thurrock, Swansea) in this
//! process on loopback ports with mTLS and sled, generates each site's
//! records, imports them over gRPC, waits for every outbox to drain, pulls
//! the network report as an analyst, prints a summary and writes the HTML
//! report. Then it stops everything and removes the directory, unless
//! `--keep`, which leaves the network running until Ctrl-C and prints the
//! commands that talk to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lacnet_clock::Clock;
use lacnet_core::Date;
use lacnet_core::pseudonym::KeyRing;
use lacnet_hub::{Hub, HubOptions, Registry};
use lacnet_site_agent::{Agent, AgentOptions, HubTarget};
use lacnet_tls::dev::DevCa;
use lacnet_tls::{Peer, PemBundle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Outcome;
use crate::certs::{Pair, save, write_file};
use crate::config::{ConfigFile, Endpoint, EndpointFile};
use crate::error::{CliError, Service};
use crate::generate::{self, Plan, Profile};
use crate::import::{self, ImportOptions};
use crate::report::model::{self, Request};
use crate::report::{html, table};

/// The sites the demo runs.
pub const DEMO_SITES: &[&Profile] = &[&generate::DERBY, &generate::THURROCK, &generate::SWANSEA];
/// Last day of generated introductions: the end of financial year 2015/16.
pub const DEMO_UNTIL: (i32, u8, u8) = (2016, 3, 31);
/// The period the summary reports on (Jan-Mar 2016, when all three sites run).
pub const DEMO_PERIOD: &str = "2016-Q1";
/// Trend lines cover this many quarters up to the summary period.
pub const DEMO_TREND_PERIODS: u32 = 8;
/// The registry the demo hub runs with: the real one shipped with the hub.
const REGISTRY: &str = include_str!("../../hub/registry.toml");
/// Name on the hub's certificate.
const HUB_NAME: &str = "hub.lacnet";
/// Name on each agent's certificate.
const AGENT_NAME: &str = "agent.lacnet";
/// Longest wait for a server to come up or an outbox to drain.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// `lacnet demo`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Leave the network running until Ctrl-C, keep its directory, and print commands that talk to it.
    #[arg(long)]
    pub keep: bool,
    /// Where to write the HTML report [default: <temp dir>/lacnet-demo-report.html].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Rows per site instead of each profile's own numbers.
    #[arg(long)]
    pub rows: Option<usize>,
    /// Random seed for the generated records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `lacnet demo`: the demo with progress bars, its report in the temporary
/// directory unless `--report` says where.
pub async fn command(args: DemoArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let opts = DemoOptions {
        keep: args.keep,
        report: args
            .report
            .unwrap_or_else(|| std::env::temp_dir().join("lacnet-demo-report.html")),
        rows: args.rows,
        seed: args.seed,
        progress: true,
    };
    run(&opts, clock).await?;
    Ok(Outcome::Done)
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Leave the network running until Ctrl-C, and keep the directory.
    pub keep: bool,
    /// Where to write the HTML report.
    pub report: PathBuf,
    /// Rows per site instead of each profile's own numbers (quick runs, tests).
    pub rows: Option<usize>,
    /// Random seed.
    pub seed: u64,
    /// Draw import progress bars.
    pub progress: bool,
}

/// A service task: the server's result, as text.
type Task = JoinHandle<Result<(), String>>;

/// One running site agent.
struct RunningAgent {
    profile: &'static Profile,
    agent: Agent,
    /// As the case system: import.
    endpoint: Endpoint,
    /// As the operator: status (the case system may not read it).
    operator: Endpoint,
}

fn paths(ca: &Path, pair: &Pair) -> lacnet_tls::TlsPaths {
    lacnet_tls::TlsPaths {
        ca: ca.to_owned(),
        cert: pair.cert.clone(),
        key: pair.key.clone(),
        crls: Vec::new(),
    }
}

/// A listener on a free loopback port, and its `https://` URL; `what` names
/// the service in errors.
pub(crate) async fn loopback(what: &str) -> Result<(TcpListener, String), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::in_process(format!("binding a loopback port for {what}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::in_process(format!("reading the loopback port of {what}"), e))?;
    Ok((listener, format!("https://{addr}")))
}

/// Prints a numbered step and times it.
struct Steps {
    total: usize,
    n: usize,
    started: Instant,
}

impl Steps {
    fn start(&mut self, what: &str) -> Instant {
        self.n += 1;
        println!("[{}/{}] {what}", self.n, self.total);
        Instant::now()
    }
}

/// Polls gRPC health until SERVING, retrying every 20 ms for at most [`WAIT_LIMIT`].
async fn wait_serving(
    url: &str,
    pem: &PemBundle,
    server_name: &str,
    service: &str,
) -> Result<(), CliError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Ok(channel) = lacnet_tls::connect(url, pem, server_name).await {
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if reply.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(CliError::NotReady {
                service: service.to_owned(),
                url: url.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the demo; `clock` says what today is for the generated records and
/// the report.
pub async fn run(opts: &DemoOptions, clock: &dyn Clock) -> Result<(), CliError> {
    let tmp = tempfile::Builder::new()
        .prefix("lacnet-demo-")
        .tempdir()
        .map_err(|e| {
            CliError::io(
                "cannot create a temporary directory in",
                std::env::temp_dir(),
                e,
            )
        })?;
    let dir = tmp.path().to_owned();
    let stop = CancellationToken::new();
    let mut tasks: Vec<Task> = Vec::new();
    let result = run_in(opts, clock, &dir, &stop, &mut tasks).await;
    // Stop every server (draining calls, flushing sled) whatever happened.
    stop.cancel();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: a service stopped with an error: {e}"),
            Err(e) => eprintln!("warning: a service task failed: {e}"),
        }
    }
    if opts.keep {
        let kept = tmp.keep();
        println!("Kept {}", kept.display());
    }
    result
}

async fn run_in(
    opts: &DemoOptions,
    clock: &dyn Clock,
    dir: &Path,
    stop: &CancellationToken,
    tasks: &mut Vec<Task>,
) -> Result<(), CliError> {
    let mut steps = Steps {
        total: 6,
        n: 0,
        started: Instant::now(),
    };
    let t = steps.start("Making a development CA, certificates and HMAC keys");
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| CliError::io("cannot create", &pki, e))?;
    let network = DevCa::new("lacnet demo network CA").map_err(CliError::Generate)?;
    let hub = open_hub(dir, &pki, &network).await?;
    println!(
        "      network CA, hub and analyst certificates, and per council: a CA, agent, site, council and operator certificates and a key"
    );
    let mut agents = Vec::new();
    for p in DEMO_SITES {
        agents.push(open_agent(p, dir, &pki, &network, &hub).await?);
    }
    println!(
        "      done in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        pki.display()
    );

    let t = steps.start("Starting the hub and the site agents on loopback, with mTLS and sled");
    let (hub_endpoint, agents) = start(hub, agents, stop, tasks, clock).await?;
    println!("      ready in {:.1} s", t.elapsed().as_secs_f64());

    let t = steps.start("Generating each site's records and importing them over gRPC");
    import_all(opts, clock, dir, &agents).await?;
    println!("      done in {:.1} s", t.elapsed().as_secs_f64());

    let t = steps.start("Aggregating, applying disclosure control, and pushing to the hub");
    let submissions = drain(&agents, clock).await?;
    // `publish_now` counts only what it queued itself: when the debounce
    // fired during a slow import it finds nothing new, so the count alone
    // could read "0" while every release arrived.
    println!(
        "      every outbox drained: the hub acknowledged every submission ({submissions} queued at this step) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = steps.start("Pulling the network report as an analyst");
    let mut reports = crate::client::reports(&hub_endpoint, clock).await?;
    // The same rule as a plain `lacnet report`, so the summary and the site
    // table (each site's latest quarter) cannot disagree.
    let report = model::fetch(
        &mut reports,
        &hub_endpoint.url,
        &Request::Summary {
            period: None,
            trend_periods: DEMO_TREND_PERIODS,
            level_2: false,
        },
        clock.now_unix(),
    )
    .await?;
    println!("      done in {:.1} s\n", t.elapsed().as_secs_f64());
    print_summary(&report);

    steps.start("Writing the HTML report");
    write_file(&opts.report, &html::render(&report), false)?;
    println!("      {}", opts.report.display());
    println!(
        "\nDemo finished in {:.1} s.",
        steps.started.elapsed().as_secs_f64()
    );

    if opts.keep {
        let shown = report
            .summary
            .as_ref()
            .map_or_else(|| DEMO_PERIOD.to_owned(), |s| s.period.clone());
        print_how_to_use(opts, dir, &hub_endpoint, &agents, &shown)?;
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| CliError::in_process("waiting for Ctrl-C", e))?;
        println!("\nStopping the network.");
    }
    Ok(())
}

/// The hub, opened but not yet served, with what the demo needs to reach it.
struct OpenHub {
    hub: Hub,
    listener: TcpListener,
    /// As the analyst: reports.
    endpoint: Endpoint,
    /// The network CA's certificate, which every site's hub client trusts.
    network_ca: PathBuf,
}

/// Issues the hub's and the analyst's certificates and opens the hub (with
/// the registry shipped with it) on a loopback port.
async fn open_hub(dir: &Path, pki: &Path, network: &DevCa) -> Result<OpenHub, CliError> {
    let network_ca = pki.join("network-ca.pem");
    write_file(&network_ca, &network.ca_pem(), false)?;
    let issue = |peer: Peer| network.issue(&peer, &[]).map_err(CliError::Generate);
    let server = network
        .issue_server(&[HUB_NAME])
        .map_err(CliError::Generate)?;
    let hub_pair = save(pki, "hub", &server)?;
    let analyst = save(pki, "analyst-demo", &issue(Peer::Analyst("demo".into()))?)?;
    let registry_path = dir.join("registry.toml");
    write_file(&registry_path, REGISTRY, false)?;
    let registry = Registry::load(&registry_path)
        .map_err(|e| CliError::in_process("loading the hub's registry", e))?;
    let hub_pem = PemBundle::load(&paths(&network_ca, &hub_pair))?;
    let mut hub_options = HubOptions::new(dir.join("hub-data"), registry, hub_pem);
    hub_options.cache_bytes = 16 * 1024 * 1024;
    let hub = Hub::open(hub_options).map_err(|e| CliError::in_process("opening the hub", e))?;
    let (listener, url) = loopback("the hub").await?;
    Ok(OpenHub {
        hub,
        listener,
        endpoint: Endpoint {
            service: Service::Hub,
            url,
            server_name: HUB_NAME.into(),
            tls: paths(&network_ca, &analyst),
        },
        network_ca,
    })
}

/// One site agent, opened but not yet served.
struct OpenAgent {
    running: RunningAgent,
    listener: TcpListener,
}

/// Issues one council's CA, certificates and key, and opens its site agent
/// (pushing to `hub`) on a loopback port.
async fn open_agent(
    p: &'static Profile,
    dir: &Path,
    pki: &Path,
    network: &DevCa,
    hub: &OpenHub,
) -> Result<OpenAgent, CliError> {
    let site_dir = pki.join(p.key);
    std::fs::create_dir_all(&site_dir).map_err(|e| CliError::io("cannot create", &site_dir, e))?;
    let council = DevCa::new(&format!("{} council CA", p.name)).map_err(CliError::Generate)?;
    let council_ca = site_dir.join("council-ca.pem");
    write_file(&council_ca, &council.ca_pem(), false)?;
    let client = |ca: &DevCa, stem: &str, peer: Peer| {
        save(
            &site_dir,
            stem,
            &ca.issue(&peer, &[]).map_err(CliError::Generate)?,
        )
    };
    let server = council
        .issue_server(&[AGENT_NAME])
        .map_err(CliError::Generate)?;
    let agent_pair = save(&site_dir, "agent", &server)?;
    let council_pair = client(&council, "council", Peer::Council(p.key.into()))?;
    let operator_pair = client(&council, "operator", Peer::Operator("demo".into()))?;
    let site_pair = client(
        network,
        &format!("site-{}", p.code),
        Peer::Site(p.code.into()),
    )?;
    let key_path = site_dir.join("k1");
    crate::keygen::write_key("k1", &key_path, false)?;
    let ring: KeyRing = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path)])
        .map_err(|e| CliError::in_process(format!("loading the {} key", p.name), e))?;
    let mut o = AgentOptions::new(
        dir.join("agents").join(p.key),
        p.code,
        ring,
        PemBundle::load(&paths(&council_ca, &agent_pair))?,
    );
    o.hub = Some(HubTarget {
        url: hub.endpoint.url.clone(),
        server_name: HUB_NAME.into(),
        tls: PemBundle::load(&paths(&hub.network_ca, &site_pair))?,
    });
    // Short waits so the demo is quick; the defaults suit a council's steady trickle.
    o.publish_debounce = Duration::from_millis(100);
    o.push_backoff_base = Duration::from_millis(50);
    o.push_backoff_cap = Duration::from_secs(1);
    o.cache_bytes = 16 * 1024 * 1024;
    let agent = Agent::open(o)
        .map_err(|e| CliError::in_process(format!("opening the {} agent", p.name), e))?;
    let (listener, url) = loopback(&format!("the {} agent", p.name)).await?;
    let endpoint = |pair: &Pair| Endpoint {
        service: Service::Agent,
        url: url.clone(),
        server_name: AGENT_NAME.into(),
        tls: paths(&council_ca, pair),
    };
    Ok(OpenAgent {
        running: RunningAgent {
            profile: p,
            agent,
            endpoint: endpoint(&council_pair),
            operator: endpoint(&operator_pair),
        },
        listener,
    })
}

/// Serves the hub and every agent until `stop`, and waits until each one
/// answers its health check; returns the analyst's endpoint and the agents.
async fn start(
    hub: OpenHub,
    agents: Vec<OpenAgent>,
    stop: &CancellationToken,
    tasks: &mut Vec<Task>,
    clock: &dyn Clock,
) -> Result<(Endpoint, Vec<RunningAgent>), CliError> {
    let s = stop.clone();
    let OpenHub {
        hub: server,
        listener,
        endpoint: hub_endpoint,
        ..
    } = hub;
    tasks.push(tokio::spawn(async move {
        lacnet_hub::serve(listener, server, s.cancelled_owned())
            .await
            .map_err(|e| e.to_string())
    }));
    let mut running = Vec::with_capacity(agents.len());
    for a in agents {
        let s = stop.clone();
        let agent = a.running.agent.clone();
        let listener = a.listener;
        tasks.push(tokio::spawn(async move {
            lacnet_site_agent::serve(listener, agent, s.cancelled_owned())
                .await
                .map_err(|e| e.to_string())
        }));
        running.push(a.running);
    }
    let analyst_pem = crate::client::load_tls(&hub_endpoint, clock)?;
    let hub_url = &hub_endpoint.url;
    wait_serving(hub_url, &analyst_pem, HUB_NAME, "lacnet.hub.v1.Submissions").await?;
    println!("      hub        {hub_url}");
    for a in &running {
        let pem = crate::client::load_tls(&a.endpoint, clock)?;
        wait_serving(
            &a.endpoint.url,
            &pem,
            AGENT_NAME,
            "lacnet.site.v1.SiteAgent",
        )
        .await?;
        println!(
            "      {:<10} {}  ({})",
            a.profile.name, a.endpoint.url, a.profile.code
        );
    }
    Ok((hub_endpoint, running))
}

/// Generates each site's records up to [`DEMO_UNTIL`] and imports them into its agent.
async fn import_all(
    opts: &DemoOptions,
    clock: &dyn Clock,
    dir: &Path,
    agents: &[RunningAgent],
) -> Result<(), CliError> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| CliError::io("cannot create", &data, e))?;
    let until = demo_until()?;
    let today = clock.today();
    for a in agents {
        let csv = data.join(format!("{}.csv", a.profile.key));
        let file =
            std::fs::File::create(&csv).map_err(|e| CliError::io("cannot create", &csv, e))?;
        let plan = Plan {
            profile: a.profile,
            seed: opts.seed,
            until: Some(until),
            rows: opts.rows,
        };
        generate::write_csv(&plan, std::io::BufWriter::new(file), today)?;
        let client = crate::client::agent(&a.endpoint, clock).await?;
        let mut io = ImportOptions::new(&csv);
        io.progress = opts.progress;
        let r = import::import(client, &a.endpoint.url, &io).await?;
        println!(
            "      {:<10} {:>6} rows  {:>6} accepted  {} rejected  {:>8.0} rows/s",
            a.profile.name,
            r.rows,
            r.accepted,
            r.rejected,
            r.rate()
        );
        if r.rejected > 0 {
            return Err(CliError::GeneratedRowsRejected {
                agent: a.profile.name.to_owned(),
                rejected: r.rejected,
                rejects: Some(io.rejects),
            });
        }
    }
    Ok(())
}

/// [`DEMO_UNTIL`] as a date.
fn demo_until() -> Result<Date, CliError> {
    let (y, m, d) = DEMO_UNTIL;
    Date::new(y, m, d).map_err(|source| CliError::Date {
        what: "the demo's last day",
        value: format!("{y:04}-{m:02}-{d:02}"),
        source,
    })
}

/// Publishes every agent now rather than after the debounce, then waits
/// for each outbox to drain; returns how many submissions this step queued.
async fn drain(agents: &[RunningAgent], clock: &dyn Clock) -> Result<usize, CliError> {
    let mut submissions = 0;
    for a in agents {
        submissions += a
            .agent
            .publish_now()
            .await
            .map_err(|e| CliError::in_process(format!("publishing {}", a.profile.name), e))?;
    }
    for a in agents {
        let mut client = crate::client::agent(&a.operator, clock).await?;
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let s = crate::site_ops::status(&mut client, &a.endpoint.url).await?;
            if s.outbox_depth == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(CliError::OutboxStuck {
                    site: a.profile.name.to_owned(),
                    waiting: s.outbox_depth,
                    last_error: s.last_push_error,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Ok(submissions)
}

/// The report's period rule, notes and summary table, on the terminal.
fn print_summary(report: &model::Report) {
    if let Some(rule) = &report.period_rule {
        println!("{rule}\n");
    }
    for note in &report.notes {
        println!("Note: {note}\n");
    }
    println!(
        "{} (count, then rate per 10,000 adults or, for proportions, share of the denominator):\n",
        report.title
    );
    print!(
        "{}",
        table::summary_table(report, Some(&["headline", "support_level", "outcome"]))
    );
    println!(
        "\n[suppressed] = withheld by disclosure control: a small count (possibly zero), or one withheld to protect a small one.\n"
    );
}

/// With `--keep`: writes a `lacnet.toml` for the first agent and the hub, and
/// prints the commands that talk to the running network.
fn print_how_to_use(
    opts: &DemoOptions,
    dir: &Path,
    hub_endpoint: &Endpoint,
    agents: &[RunningAgent],
    shown: &str,
) -> Result<(), CliError> {
    let first = &agents[0];
    let config = ConfigFile {
        agent: EndpointFile {
            operator_cert: Some(first.operator.tls.cert.clone()),
            operator_key: Some(first.operator.tls.key.clone()),
            ..endpoint_file(&first.endpoint)
        },
        hub: endpoint_file(hub_endpoint),
    };
    let config_path = dir.join("lacnet.toml");
    write_file(&config_path, &config.to_toml(), false)?;
    println!("\nThe network keeps running until Ctrl-C. In another terminal:\n");
    println!("  export LACNET_CONFIG={}", config_path.display());
    println!(
        "  lacnet status                       # the {} agent",
        first.profile.name
    );
    println!("  lacnet preview --period {shown}      # what it sends the hub");
    println!("  lacnet report                       # the network summary ({shown})");
    println!(
        "  lacnet report --metric outcome.volunteering --from 2015-Q1 --to {shown} --format csv"
    );
    println!("\nImport into each site's agent (re-importing the same rows changes nothing):\n");
    // The same span, seed and size as the demo's own import, so the file
    // is the rows the agent already holds.
    let (y, m, d) = DEMO_UNTIL;
    let rows = opts
        .rows
        .map(|n| format!(" --rows {n}"))
        .unwrap_or_default();
    for a in agents {
        let key = a.profile.key;
        println!(
            "  lacnet generate --site {key} --until {y:04}-{m:02}-{d:02} --seed {}{rows} --out {key}.csv",
            opts.seed
        );
        println!(
            "  lacnet import {key}.csv --agent-url {} --agent-ca {} --agent-cert {} --agent-key {}",
            a.endpoint.url,
            a.endpoint.tls.ca.display(),
            a.endpoint.tls.cert.display(),
            a.endpoint.tls.key.display(),
        );
    }
    println!();
    for a in &agents[1..] {
        println!(
            "  lacnet status --agent-url {} --agent-ca {} --operator-cert {} --operator-key {}   # {}",
            a.operator.url,
            a.operator.tls.ca.display(),
            a.operator.tls.cert.display(),
            a.operator.tls.key.display(),
            a.profile.name
        );
    }
    println!("\n(use `cargo run --release -p lacnet-cli --` for `lacnet` if it is not installed)");
    Ok(())
}

fn endpoint_file(e: &Endpoint) -> EndpointFile {
    EndpointFile {
        url: Some(e.url.clone()),
        server_name: Some(e.server_name.clone()),
        ca: Some(e.tls.ca.clone()),
        cert: Some(e.tls.cert.clone()),
        key: Some(e.tls.key.clone()),
        ..EndpointFile::default()
    }
}
