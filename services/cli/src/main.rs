//! `lacnet`: parse the command line and run one command. Exit codes: 0 done,
//! 1 error, 2 usage error, 3 import finished but rows were rejected, 4 erase
//! found nobody with that id, 5 a report found no published figure at all.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lacnet_cli::config::{AgentFlags, EndpointFlags, HubFlags, OperatorFlags};
use lacnet_cli::report::{self, Format, model};
use lacnet_cli::{bench, certs, client, demo, generate, import, keygen, mapping, site_ops};
use lacnet_core::{Date, Period};

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
    /// Run a whole network on this machine (hub + Derby, Thurrock, Swansea agents), import, report.
    Demo {
        /// Leave the network running until Ctrl-C, keep its directory, and print commands that talk to it.
        #[arg(long)]
        keep: bool,
        /// Where to write the HTML report [default: <temp dir>/lacnet-demo-report.html].
        #[arg(long)]
        report: Option<PathBuf>,
        /// Rows per site instead of each profile's own numbers.
        #[arg(long)]
        rows: Option<usize>,
        /// Random seed for the generated records.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write synthetic records for a site profile as lacnet CSV.
    Generate {
        /// Site profile: derby, thurrock or swansea (or its ONS code).
        #[arg(long)]
        site: String,
        /// Random seed: the same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Last introduction date (YYYY-MM-DD) [default: the end of the profile's published first window].
        #[arg(long)]
        until: Option<String>,
        /// Exactly this many rows over the same span (e.g. 1000000 for a load test).
        #[arg(long)]
        rows: Option<usize>,
        /// Output file [default: standard output].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Stream a CSV file into a site agent (needs a council certificate).
    #[command(
        after_help = "The CSV columns and the codes each one accepts: `lacnet import --columns`.\n\
                      Rejected rows go to the rejects file with the reasons and the original row: fix them there and import that file alone.\n\
                      Exit codes: 0 every row accepted, 3 some rows rejected, 1 the import failed."
    )]
    Import {
        /// The CSV file (lacnet's format, or a case system's export with --map).
        #[arg(required_unless_present = "columns")]
        file: Option<PathBuf>,
        /// Print the CSV columns and the accepted codes, then exit.
        #[arg(long, conflicts_with_all = ["map", "rejects"])]
        columns: bool,
        /// Mapping file (TOML) from a case system's columns and codes onto lacnet's.
        #[arg(long)]
        map: Option<PathBuf>,
        /// Where rejected rows go [default: <file>.rejects.csv beside the input].
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Rows per StreamRecords call.
        #[arg(long, default_value_t = import::DEFAULT_CHUNK_ROWS)]
        chunk_rows: usize,
        /// Never draw the progress bar.
        #[arg(long)]
        quiet: bool,
        /// Re-admit people erased at the agent, who are otherwise refused
        /// (use only when a person has really returned, not to re-load an old export).
        #[arg(long)]
        readmit_erased: bool,
        /// The file is the council's latest full export, re-imported after
        /// the agent lost state (`lacnet status` lists lost periods): once
        /// every row is accepted, tell the agent, which then publishes those
        /// periods again over the hub's releases.
        #[arg(long)]
        full_export: bool,
        #[command(flatten)]
        conn: AgentFlags,
    },
    /// Pull a report from the hub (needs an analyst certificate).
    #[command(
        after_help = "The report's first lines say which period it shows and why, and, when a period has no \
                      figures, why not (not published yet, not a kind of period the network publishes, or a \
                      council that did not exist then).\n\n\
                      Exit codes: 0 figures found, 5 no site had published anything for what was asked \
                      (the report still says why), 1 error."
    )]
    Report {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// The network summary for this period: a quarter (YYYY-Qn), month
        /// (YYYY-MM), financial year (FY2024 = April 2024 to March 2025) or
        /// programme to date at a financial-year end (PTD2025-03) [default:
        /// the latest month or quarter that at least half of the sites have
        /// published].
        #[arg(long, conflicts_with = "metric")]
        period: Option<String>,
        /// Wait up to this many seconds for figures to arrive when there are
        /// none yet (an agent publishes a few seconds after an import settles).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// Show Level 2 alone (longer-term support: the like-for-like figure sites quote).
        #[arg(long, conflicts_with = "metric")]
        level_2: bool,
        /// One metric across sites over --from..--to, e.g. outcome.volunteering.
        #[arg(long, requires_all = ["from", "to"])]
        metric: Option<String>,
        /// First period of the range (with --metric).
        #[arg(long)]
        from: Option<String>,
        /// Last period of the range (with --metric).
        #[arg(long)]
        to: Option<String>,
        /// Quarters (or months) of trend lines in a summary report.
        #[arg(long, default_value_t = 8)]
        trend_periods: u32,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: HubFlags,
    },
    /// Write a new HMAC pseudonymisation key file (mode 0600) for a site agent.
    Keygen {
        /// Key id, e.g. k2025 (what the agent's --key-file id=path names it).
        #[arg(long)]
        id: String,
        /// The key file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Issue a development PKI: network CA, hub, site and analyst certificates; council CA, agent, council (case system) and operator certificates.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "The CA keys (network-ca.key, council-ca.key) are kept in the directory, mode 0600: \
                      `lacnet certs add-site CODE` (add-analyst, add-operator) issues from them later. \
                      Anyone holding them can issue any identity: never commit them, and keep real CAs offline."
    )]
    Certs {
        #[command(subcommand)]
        add: Option<CertsAdd>,
        /// Directory to write into (and, with add-*, the PKI to issue from).
        #[arg(long, short, default_value = "lacnet-dev-pki", global = true)]
        out: PathBuf,
        /// ONS code of a site to issue a hub client certificate for (repeat).
        #[arg(long = "site", default_values_t = ["E06000034".to_owned()])]
        sites: Vec<String>,
        /// Analyst name.
        #[arg(long, default_value = "analyst")]
        analyst: String,
        /// Council (case system) name.
        #[arg(long, default_value = "council")]
        council: String,
        /// Operator name (status, preview and erase use the operator's certificate).
        #[arg(long, default_value = "operator")]
        operator: String,
        /// DNS name on the hub's certificate.
        #[arg(long, default_value = "hub.lacnet")]
        hub_name: String,
        /// DNS name on the site agent's certificate.
        #[arg(long, default_value = "agent.lacnet")]
        agent_name: String,
    },
    /// Show a site agent's state: records, outbox, last push, key ids (needs an operator certificate).
    Status {
        #[command(flatten)]
        conn: OperatorFlags,
    },
    /// Show exactly what a site agent would send the hub for a period (needs an operator certificate).
    Preview {
        /// The period, e.g. 2016-Q1 or 2016-03.
        #[arg(long)]
        period: String,
        #[command(flatten)]
        conn: OperatorFlags,
    },
    /// The council's own exact figures over a financial year or the
    /// programme to date, as in a site's evaluation report. Never sent to the
    /// hub; needs an operator certificate, and every call is audited.
    Evaluation {
        /// The span: a financial year (FY2024 = April 2024 to March 2025) or
        /// the programme to date (PTD2024-09, from the programme start to the
        /// end of September 2024).
        #[arg(long)]
        span: String,
        /// Write JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: OperatorFlags,
    },
    /// Erase every record of one person at a site agent (needs an operator certificate).
    #[command(
        long_about = "Erase every record of one person at a site agent (needs an operator certificate).\n\n\
                      The agent then remembers the person, as pseudonyms only, and refuses their rows if an old export is \
                      imported again; `lacnet import --readmit-erased` lets them back when they really return. \
                      The affected periods are re-aggregated and sent to the hub again.",
        after_help = "Exit codes: 0 erased, 4 no record has that id (nothing was erased), 1 error."
    )]
    Erase {
        /// The person's NHS number.
        #[arg(long, conflicts_with = "case_id", required_unless_present = "case_id")]
        nhs_number: Option<String>,
        /// A local case id of the person.
        #[arg(long)]
        case_id: Option<String>,
        #[command(flatten)]
        conn: OperatorFlags,
    },
    /// Measure `lacnet import` against the agent's own ingest rate (in-process agents).
    BenchImport {
        /// Rows to import.
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Certificates issued later from the CA keys `lacnet certs` kept.
#[derive(Debug, Subcommand)]
enum CertsAdd {
    /// A hub client certificate for a new site (network CA): site-CODE.pem and .key.
    #[command(name = "add-site")]
    Site {
        /// The site's ONS code, e.g. E06000046.
        code: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
    /// A client certificate for a new analyst (network CA): analyst-NAME.pem and .key.
    #[command(name = "add-analyst")]
    Analyst {
        /// The analyst's name (a-z 0-9 . _ -).
        name: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
    /// A client certificate for a new council operator (council CA): operator-NAME.pem and .key.
    #[command(name = "add-operator")]
    Operator {
        /// The operator's name (a-z 0-9 . _ -).
        name: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
}

fn period(s: &str) -> anyhow::Result<Period> {
    Period::parse(s).map_err(|e| anyhow::anyhow!("period {s:?}: {e} (use YYYY-Qn or YYYY-MM)"))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo {
            keep,
            report,
            rows,
            seed,
        } => {
            let report =
                report.unwrap_or_else(|| std::env::temp_dir().join("lacnet-demo-report.html"));
            demo::run(&demo::DemoOptions {
                keep,
                report,
                rows,
                seed,
                progress: true,
            })
            .await?;
        }
        Command::Generate {
            site,
            seed,
            until,
            rows,
            out,
        } => {
            let until = until
                .map(|u| Date::parse(&u).map_err(|e| anyhow::anyhow!("--until {u:?}: {e}")))
                .transpose()?;
            let plan = generate::Plan {
                profile: generate::profile(&site)?,
                seed,
                until,
                rows,
            };
            let today = Date::from_unix_seconds(demo::now_unix());
            let n = match &out {
                Some(path) => {
                    let f = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    generate::write_csv(&plan, std::io::BufWriter::new(f), today)?
                }
                None => generate::write_csv(&plan, std::io::stdout().lock(), today)?,
            };
            if let Some(path) = out {
                eprintln!(
                    "wrote {n} rows for {} to {}",
                    plan.profile.name,
                    path.display()
                );
            }
        }
        Command::Import {
            file,
            columns,
            map,
            rejects,
            chunk_rows,
            quiet,
            readmit_erased,
            full_export,
            conn,
        } => {
            let Some(file) = file.filter(|_| !columns) else {
                print!("{}", lacnet_cli::csv_format::columns_help());
                return Ok(ExitCode::SUCCESS);
            };
            let endpoint = EndpointFlags::from(conn).agent()?;
            let mut opts = import::ImportOptions::new(&file);
            if let Some(m) = map {
                opts.mapping = mapping::Mapping::load(&m)?;
            }
            if let Some(r) = rejects {
                opts.rejects = r;
            }
            opts.chunk_rows = chunk_rows;
            opts.progress = !quiet;
            opts.readmit_erased = readmit_erased;
            let c = client::agent(&endpoint).await?;
            let r = import::import(c.clone(), &endpoint.url, &opts).await?;
            println!(
                "{} rows: {} accepted, {} rejected ({} here, {} by the agent) in {:.1} s, {:.0} rows/s",
                r.rows,
                r.accepted,
                r.rejected,
                r.rejected_locally,
                r.rejected - r.rejected_locally,
                r.elapsed.as_secs_f64(),
                r.rate()
            );
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(path) = r.rejects {
                println!(
                    "rejected rows (line, column, field, reason, then the row as it was): {}",
                    path.display()
                );
                println!("fix them there and import that file alone (with the same --map, if any)");
                if full_export {
                    println!(
                        "not confirmed as a full export: fix the rejected rows and import the file again"
                    );
                }
                return Ok(ExitCode::from(EXIT_REJECTED));
            }
            if full_export {
                let released = site_ops::confirm_full_import(&mut c.clone(), &endpoint.url).await?;
                if released.is_empty() {
                    println!("full export confirmed: no period was held back");
                } else {
                    println!(
                        "full export confirmed: {} publish again from the re-imported records",
                        released.join(", ")
                    );
                }
            }
        }
        Command::Report {
            format,
            period: p,
            level_2,
            metric,
            from,
            to,
            trend_periods,
            wait,
            out,
            conn,
        } => {
            let endpoint = EndpointFlags::from(conn).hub()?;
            let request = match metric {
                Some(metric) => model::Request::Metric {
                    metric,
                    from: period(from.as_deref().unwrap_or_default())?,
                    to: period(to.as_deref().unwrap_or_default())?,
                },
                None => model::Request::Summary {
                    period: p.as_deref().map(period).transpose()?,
                    trend_periods: trend_periods.max(1),
                    level_2,
                },
            };
            let mut c = client::reports(&endpoint).await?;
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_secs(wait.unwrap_or(0));
            let r = loop {
                let r = model::fetch(&mut c, &endpoint.url, &request, demo::now_unix()).await?;
                if !r.nothing_found() || std::time::Instant::now() >= deadline {
                    break r;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            };
            let text = report::render(&r, format)?;
            if format != Format::Table || out.is_some() {
                // The table prints them first; other formats carry them in
                // their data, and a reader of the terminal still sees why.
                for note in r.period_rule.iter().chain(&r.notes) {
                    eprintln!("{note}");
                }
            }
            match out {
                Some(path) => {
                    certs::write_file(&path, &text, false)?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            if r.nothing_found() {
                return Ok(ExitCode::from(EXIT_NOTHING_PUBLISHED));
            }
        }
        Command::Keygen { id, out, force } => {
            let k = keygen::write_key(&id, &out, force)?;
            println!("wrote key {} to {} (mode 0600)", k.id, out.display());
            println!(
                "fingerprint {} (safe to share; `lacnet status` shows it for the active key)",
                k.fingerprint
            );
            println!("start the agent with --key-file {}={}", k.id, out.display());
        }
        Command::Certs {
            add: Some(add),
            out,
            ..
        } => {
            let (addition, force, what) = match add {
                CertsAdd::Site { code, force } => (certs::Addition::Site(code), force, "site"),
                CertsAdd::Analyst { name, force } => {
                    (certs::Addition::Analyst(name), force, "analyst")
                }
                CertsAdd::Operator { name, force } => {
                    (certs::Addition::Operator(name), force, "operator")
                }
            };
            let pair = certs::add(&out, &addition, force)?;
            println!(
                "{what} certificate {} (+ .key), issued from the CA kept in {}",
                pair.cert.display(),
                out.display()
            );
        }
        Command::Certs {
            add: None,
            out,
            sites,
            analyst,
            council,
            operator,
            hub_name,
            agent_name,
        } => {
            let issued = certs::issue(
                &out,
                &certs::CertSpec {
                    sites,
                    analyst,
                    council,
                    operator,
                    hub_name,
                    agent_name,
                },
            )?;
            println!(
                "development PKI written to {} (not for production keys):",
                out.display()
            );
            println!("  network CA     {}", issued.network_ca.display());
            println!("  hub            {} (+ .key)", issued.hub.cert.display());
            for (code, pair) in &issued.sites {
                println!("  site {code} {} (+ .key)", pair.cert.display());
            }
            println!(
                "  analyst        {} (+ .key)",
                issued.analyst.cert.display()
            );
            println!("  council CA     {}", issued.council_ca.display());
            println!("  site agent     {} (+ .key)", issued.agent.cert.display());
            println!(
                "  council client {} (+ .key)",
                issued.council.cert.display()
            );
            println!(
                "  operator       {} (+ .key)",
                issued.operator.cert.display()
            );
            println!(
                "  CLI settings   {}  (export LACNET_CONFIG={})",
                issued.config.display(),
                issued.config.display()
            );
            println!(
                "warning: the CA keys {} and {} (mode 0600) can issue any identity in this network. \
                 Keep them private and never commit them; `lacnet certs add-site CODE --out {}` \
                 (add-analyst, add-operator) issues from them.",
                issued.network_ca_key.display(),
                issued.council_ca_key.display(),
                out.display()
            );
        }
        Command::Status { conn } => {
            let endpoint = EndpointFlags::from(conn).operator()?;
            let mut c = client::agent(&endpoint).await?;
            let s = site_ops::status(&mut c, &endpoint.url).await?;
            print!("{}", site_ops::render_status(&s, demo::now_unix()));
        }
        Command::Preview { period: p, conn } => {
            let endpoint = EndpointFlags::from(conn).operator()?;
            let mut c = client::agent(&endpoint).await?;
            let s = site_ops::preview(&mut c, &endpoint.url, period(&p)?).await?;
            print!("{}", site_ops::render_preview(&s));
        }
        Command::Evaluation { span, json, conn } => {
            let endpoint = EndpointFlags::from(conn).operator()?;
            let mut c = client::agent(&endpoint).await?;
            let e = site_ops::evaluation(&mut c, &endpoint.url, period(&span)?).await?;
            print!("{}", site_ops::render_evaluation(&e, json)?);
        }
        Command::Erase {
            nhs_number,
            case_id,
            conn,
        } => {
            let endpoint = EndpointFlags::from(conn).operator()?;
            let who = match (nhs_number, case_id) {
                (Some(n), _) => site_ops::Who::Nhs(n),
                (None, Some(c)) => site_ops::Who::Case(c),
                (None, None) => anyhow::bail!("pass --nhs-number or --case-id"),
            };
            let what = match &who {
                site_ops::Who::Nhs(_) => "that NHS number",
                site_ops::Who::Case(_) => "that case id",
            };
            let mut c = client::agent(&endpoint).await?;
            let n = site_ops::erase(&mut c, &endpoint.url, who).await?;
            if n == 0 {
                eprintln!(
                    "error: no record at this site agent has {what}: nothing was erased. \
                     Check the id (a case id must match exactly, and the person may already be erased)."
                );
                return Ok(ExitCode::from(EXIT_NOT_FOUND));
            }
            println!("erased {n} record(s); the affected periods are re-aggregated and sent again");
            println!(
                "the agent now refuses this person's rows if an old export is imported again \
                 (`lacnet import --readmit-erased` lets them back if they return)"
            );
        }
        Command::BenchImport { rows, seed } => {
            let r = bench::run(rows, seed).await?;
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
        }
    }
    Ok(ExitCode::SUCCESS)
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
