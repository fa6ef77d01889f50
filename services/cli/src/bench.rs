//! `lacnet bench-import`: how close `lacnet import` comes to the site agent's
//! own ingest rate. Two fresh agents run in this process on loopback with
//! mTLS and sled; one is fed records already in memory through
//! `StreamRecords` (the agent's own rate: the client does no work), the other
//! gets the same rows through `lacnet import` from a CSV file (reading,
//! mapping, chunking and verdict handling included). The ratio of the two
//! rates is the import's overhead.

use std::time::{Duration, Instant};

use lacnet_clock::Clock;
use lacnet_core::Date;
use lacnet_proto::site::v1::Record;
use lacnet_site_agent::{Agent, AgentOptions};
use lacnet_tls::dev::{DevCa, bundle};
use lacnet_tls::{Peer, PemBundle};
use tokio_util::sync::CancellationToken;

use crate::Outcome;
use crate::csv_format::Layout;
use crate::error::{CliError, Service};
use crate::generate::{self, Plan};
use crate::import::{self, ImportOptions};
use crate::mapping::Mapping;

/// `lacnet bench-import`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rows to import.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `lacnet bench-import`: runs the bench and prints both rates and their ratio.
pub async fn command(args: BenchArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let r = run(args.rows, args.seed, clock).await?;
    println!("rows                                 {}", r.rows);
    println!(
        "agent's own ingest (StreamRecords)   {:.0} records/s",
        r.agent_rate
    );
    println!(
        "lacnet import from CSV               {:.0} rows/s",
        r.import_rate
    );
    println!("ratio import / agent                 {:.2}", r.ratio());
    Ok(Outcome::Done)
}

/// What the bench measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Rows in the file.
    pub rows: u64,
    /// Records per second the agent took from an in-memory stream.
    pub agent_rate: f64,
    /// Rows per second `lacnet import` achieved from the CSV file.
    pub import_rate: f64,
}

impl BenchResult {
    /// import rate / agent rate.
    pub fn ratio(&self) -> f64 {
        self.import_rate / self.agent_rate.max(1e-9)
    }
}

struct Running {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), lacnet_site_agent::AgentError>>,
}

async fn start_agent(
    dir: &std::path::Path,
    name: &str,
    server: PemBundle,
    key_path: &std::path::Path,
) -> Result<Running, CliError> {
    let ring = lacnet_site_agent::keys::load_ring(&[("k1".into(), key_path.to_owned())])
        .map_err(|e| CliError::in_process("loading the key", e))?;
    let mut o = AgentOptions::new(dir.join(name), generate::DERBY.code, ring, server);
    o.cache_bytes = 64 * 1024 * 1024;
    // The bench measures ingest alone: no re-aggregation while it runs.
    o.publish_debounce = Duration::from_secs(3600);
    o.publish_interval = Duration::from_secs(3600);
    let agent = Agent::open(o).map_err(|e| CliError::in_process("opening the site agent", e))?;
    let (listener, url) = crate::demo::loopback("the site agent").await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(lacnet_site_agent::serve(
        listener,
        agent,
        stop.clone().cancelled_owned(),
    ));
    Ok(Running { url, stop, task })
}

impl Running {
    async fn stop(self) -> Result<(), CliError> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|source| CliError::Task {
                what: "the site agent's task failed",
                source,
            })?
            .map_err(|e| CliError::in_process("the site agent stopped with an error", e))
    }
}

/// Runs the bench with `rows` synthetic Derby rows, generated as of `clock`'s today.
pub async fn run(rows: usize, seed: u64, clock: &dyn Clock) -> Result<BenchResult, CliError> {
    let tmp = tempfile::tempdir().map_err(|e| {
        CliError::io(
            "cannot create a temporary directory in",
            std::env::temp_dir(),
            e,
        )
    })?;
    let dir = tmp.path();
    let ca = DevCa::new("bench council CA").map_err(CliError::Generate)?;
    let server = bundle(
        &ca,
        &ca.issue_server(&["agent.lacnet"])
            .map_err(CliError::Generate)?,
    );
    let council = bundle(
        &ca,
        &ca.issue(&Peer::Council("bench".into()), &[])
            .map_err(CliError::Generate)?,
    );
    let key_path = dir.join("k1");
    crate::keygen::write_key("k1", &key_path, false)?;

    println!("generating {rows} rows...");
    let csv = dir.join("bench.csv");
    let file = std::fs::File::create(&csv).map_err(|e| CliError::io("cannot create", &csv, e))?;
    let plan = Plan {
        profile: &generate::DERBY,
        seed,
        until: Date::new(2016, 3, 31).ok(),
        rows: Some(rows),
    };
    let today = clock.today();
    generate::write_csv(&plan, std::io::BufWriter::new(file), today)?;

    // The agent's own rate: the records parsed beforehand, streamed from memory.
    let records = parse_all(&csv)?;
    let a = start_agent(dir, "agent-a", server.clone(), &key_path).await?;
    let channel = connect(&a.url, &council).await?;
    let mut client = lacnet_proto::site::v1::site_agent_client::SiteAgentClient::new(channel);
    println!(
        "streaming {} records from memory into agent A...",
        records.len()
    );
    let started = Instant::now();
    let summary = client
        .stream_records(tokio_stream::iter(records))
        .await
        .map_err(|s| Service::Agent.status_error(&a.url, s))?
        .into_inner();
    let agent_secs = started.elapsed().as_secs_f64();
    a.stop().await?;
    if summary.rejected > 0 {
        return Err(CliError::GeneratedRowsRejected {
            agent: "A".into(),
            rejected: summary.rejected,
            rejects: None,
        });
    }

    // The same rows through `lacnet import`, into a second fresh agent.
    let b = start_agent(dir, "agent-b", server, &key_path).await?;
    let channel = connect(&b.url, &council).await?;
    let client = lacnet_proto::site::v1::site_agent_client::SiteAgentClient::new(channel);
    println!("importing the CSV file into agent B with `lacnet import`...");
    let report = import::import(client, &b.url, &ImportOptions::new(&csv)).await?;
    b.stop().await?;
    if report.rejected > 0 {
        return Err(CliError::GeneratedRowsRejected {
            agent: "B".into(),
            rejected: report.rejected,
            rejects: report.rejects,
        });
    }
    Ok(BenchResult {
        rows: report.rows,
        agent_rate: summary.received as f64 / agent_secs.max(1e-9),
        import_rate: report.rate(),
    })
}

async fn connect(url: &str, pem: &PemBundle) -> Result<tonic::transport::Channel, CliError> {
    lacnet_tls::connect(url, pem, "agent.lacnet")
        .await
        .map_err(CliError::Tls)
}

fn parse_all(csv: &std::path::Path) -> Result<Vec<Record>, CliError> {
    let unreadable = |source: csv::Error| CliError::Csv {
        path: csv.to_owned(),
        line: source.position().map_or(1, csv::Position::line),
        source,
    };
    let mut reader = csv::Reader::from_path(csv).map_err(unreadable)?;
    let header = reader.headers().map_err(unreadable)?.clone();
    let mapping = Mapping::default();
    let layout = Layout::from_header(&header, &mapping).map_err(|source| CliError::Header {
        path: csv.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(unreadable)?;
        let line = row.position().map_or(0, csv::Position::line);
        out.push(layout.parse(&row, &mapping).map_err(|problems| {
            CliError::GeneratedRowUnreadable {
                path: csv.to_owned(),
                line,
                problems,
            }
        })?);
    }
    Ok(out)
}
