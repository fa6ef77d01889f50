//! `lacnet-site-agent`: parse the configuration, open the agent, and run it
//! through `lacnet_server::run_service` (admin port, control socket,
//! scheduled backups, gRPC) until SIGTERM or Ctrl-C. `retire-key <id>`,
//! `reset-series --to G`, `backup --to DIR` and `restore --from DIR` run a
//! maintenance command instead.

use anyhow::Context;
use clap::Parser;
use lacnet_server::ServiceParts;
use lacnet_server::flags::ServerFlags;
use lacnet_site_agent::config::{Cli, Command};
use lacnet_site_agent::{Agent, RetireOutcome, SeriesOutcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let c = &cli.config;
    let server = &c.server;
    lacnet_server::telemetry::init(server.json_logs, lacnet_server::telemetry::DEFAULT_FILTER);
    match &cli.command {
        Some(Command::RetireKey { id }) => return retire_key(server, id),
        Some(Command::ResetSeries { to }) => return reset_series(server, *to),
        Some(Command::Data(command)) => {
            let offline =
                lacnet_site_agent::backup::offline(&server.data_dir, server.cache_bytes());
            let spec = &lacnet_site_agent::store::BACKUP_SPEC;
            let said = command.run(server, "agent", spec, offline).await;
            println!("{}", said.context(command.doing())?);
            return Ok(());
        }
        None => {}
    }
    let options = c.options().context("loading the configuration")?;
    let agent = Agent::open(options).context("opening the site agent")?;
    let probe = agent.clone();
    let parts = ServiceParts {
        name: "lacnet-site-agent",
        registry: agent.metrics().registry(),
        healthy: std::sync::Arc::new(move || probe.healthy()),
        backup: lacnet_site_agent::backup::control_fn(agent.store().clone()),
        backup_metrics: agent.metrics().backups.clone(),
    };
    // Cut-off calls may still hold the store when this returns; the
    // runtime's end drops them, which closes the store with a last flush.
    lacnet_server::run_service(server, parts, |listener, shutdown| {
        lacnet_site_agent::serve(listener, agent, shutdown)
    })
    .await?;
    Ok(())
}

fn retire_key(server: &ServerFlags, id: &str) -> anyhow::Result<()> {
    match lacnet_site_agent::retire_key(&server.data_dir, id, server.cache_bytes())
        .context("retiring the key (is the agent stopped?)")?
    {
        RetireOutcome::Retired => {
            println!("key {id} retired: the agent no longer needs its file");
            Ok(())
        }
        RetireOutcome::StillInUse(n) => anyhow::bail!(
            "key {id} is still used by {n} record(s); they move to the newest key when next written, or go when erased"
        ),
    }
}

fn reset_series(server: &ServerFlags, to: lacnet_core::Granularity) -> anyhow::Result<()> {
    let name = to.id();
    match lacnet_site_agent::reset_series(&server.data_dir, to, server.cache_bytes())
        .context("changing the series (is the agent stopped?)")?
    {
        SeriesOutcome::Unchanged => {
            println!("the data directory already holds the {name} series")
        }
        SeriesOutcome::Changed { from, forgotten } => println!(
            "series changed from {} to {name}: forgot {forgotten} published period(s) of the old series; \
             start the agent with --granularity {name} (the hub's registry must say {name:?} too)",
            from.map_or("unrecorded", lacnet_core::Granularity::id)
        ),
    }
    Ok(())
}
