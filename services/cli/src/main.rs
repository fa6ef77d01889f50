//! `lacnet`: parse the command line and run one command. Exit codes: 0 done,
//! 1 error, 2 usage error, 3 import finished but rows were rejected, 4 erase
//! found nobody with that id, 5 a report found no published figure at all.
//!
//! Each command's flags and body live in the module named after it; this
//! file only names the commands, reads the wall clock once, and turns each
//! command's [`Outcome`] into an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lacnet_cli::{Outcome, certs, generate, import, keygen, report, site_ops};
#[cfg(feature = "demo")]
use lacnet_cli::{bench, demo};
use lacnet_clock::{Clock, SystemClock};

/// Exit code when an import finished but some rows were rejected.
const EXIT_REJECTED: u8 = 3;
/// Exit code when `lacnet erase` found no record with the id it was given.
const EXIT_NOT_FOUND: u8 = 4;
/// Exit code when a report found no published figure for what was asked.
const EXIT_NOTHING_PUBLISHED: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "lacnet",
    version,
    about = "Operate and analyse the LAC Network: import CSV into a site agent, pull hub reports, make keys and development certificates, run a demo network",
    after_help = "Endpoints and certificates come from lacnet.toml (--config, LACNET_CONFIG, or ./lacnet.toml), then LACNET_* variables, then flags. `lacnet certs` writes a lacnet.toml. Each command that connects lists its connection flags under their own heading."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "demo")]
    /// Run a whole network on this machine (hub + Derby, Thurrock, Swansea agents), import, report.
    Demo(demo::DemoArgs),
    /// Write synthetic records for a site profile as lacnet CSV.
    Generate(generate::GenerateArgs),
    /// Stream a CSV file into a site agent (needs a council certificate).
    #[command(
        after_help = "The CSV columns and the codes each one accepts: `lacnet import --columns`.\n\
                      Rejected rows go to the rejects file with the reasons and the original row: fix them there and import that file alone.\n\
                      Exit codes: 0 every row accepted, 3 some rows rejected, 1 the import failed."
    )]
    Import(import::ImportArgs),
    /// Pull a report from the hub (needs an analyst certificate).
    #[command(
        after_help = "The report's first lines say which period it shows and why, and, when a period has no \
                      figures, why not (not published yet, not a kind of period the network publishes, or a \
                      council that did not exist then).\n\n\
                      Exit codes: 0 figures found, 5 no site had published anything for what was asked \
                      (the report still says why), 1 error."
    )]
    Report(report::ReportArgs),
    /// Write a new HMAC pseudonymisation key file (mode 0600) for a site agent.
    Keygen(keygen::KeygenArgs),
    /// Issue a development PKI: network CA, hub, site and analyst certificates; council CA, agent, council (case system) and operator certificates.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "The CA keys (network-ca.key, council-ca.key) are kept in the directory, mode 0600: \
                      `lacnet certs add-site CODE` (add-analyst, add-operator) issues from them later. \
                      Anyone holding them can issue any identity: never commit them, and keep real CAs offline."
    )]
    Certs(certs::CertsArgs),
    /// Show a site agent's state: records, outbox, last push, key ids (needs an operator certificate).
    Status(site_ops::StatusArgs),
    /// Show exactly what a site agent would send the hub for a period (needs an operator certificate).
    Preview(site_ops::PreviewArgs),
    /// The council's own exact figures over a financial year or the
    /// programme to date, as in a site's evaluation report. Never sent to the
    /// hub; needs an operator certificate, and every call is audited.
    Evaluation(site_ops::EvaluationArgs),
    /// Erase every record of one person at a site agent (needs an operator certificate).
    #[command(
        long_about = "Erase every record of one person at a site agent (needs an operator certificate).\n\n\
                      The agent then remembers the person, as pseudonyms only, and refuses their rows if an old export is \
                      imported again; `lacnet import --readmit-erased` lets them back when they really return. \
                      The affected periods are re-aggregated and sent to the hub again.",
        after_help = "Exit codes: 0 erased, 4 no record has that id (nothing was erased), 1 error."
    )]
    Erase(site_ops::EraseArgs),
    #[cfg(feature = "demo")]
    /// Measure `lacnet import` against the agent's own ingest rate (in-process agents).
    BenchImport(bench::BenchArgs),
}

async fn run(command: Command, clock: &dyn Clock) -> Result<Outcome, lacnet_cli::CliError> {
    match command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::command(args, clock).await,
        Command::Generate(args) => generate::command(args, clock.today()),
        Command::Import(args) => import::command(args, clock).await,
        Command::Report(args) => report::command(args, clock).await,
        Command::Keygen(args) => keygen::command(&args),
        Command::Certs(args) => certs::command(args),
        Command::Status(args) => site_ops::status_command(args, clock).await,
        Command::Preview(args) => site_ops::preview_command(args, clock).await,
        Command::Evaluation(args) => site_ops::evaluation_command(args, clock).await,
        Command::Erase(args) => site_ops::erase_command(args, clock).await,
        #[cfg(feature = "demo")]
        Command::BenchImport(args) => bench::command(args, clock).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Quiet by default: the demo runs services in this process, and their
    // info logs would bury its output. RUST_LOG turns them back on.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sled=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The one read of the wall clock: every command gets it from here.
    match runtime.block_on(run(cli.command, &SystemClock)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::RowsRejected) => ExitCode::from(EXIT_REJECTED),
        Ok(Outcome::NotFound) => ExitCode::from(EXIT_NOT_FOUND),
        Ok(Outcome::NothingPublished) => ExitCode::from(EXIT_NOTHING_PUBLISHED),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
