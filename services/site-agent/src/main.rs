//! `lacnet-site-agent`: parse the configuration, open the agent, serve until
//! SIGTERM or Ctrl-C. `retire-key <id>`, `reset-series --to G`,
//! `backup --to DIR` and `restore --from DIR` run a maintenance command instead.

use anyhow::Context;
use clap::Parser;
use lacnet_site_agent::backup::Taken;
use lacnet_site_agent::config::{Cli, Command};
use lacnet_site_agent::{Agent, RetireOutcome, SeriesOutcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let c = &cli.config;
    lacnet_server::telemetry::init(c.json_logs, "info,sled=warn,h2=warn");
    if let Some(Command::RetireKey { id }) = &cli.command {
        let cache = c.cache_mb.saturating_mul(1024 * 1024);
        return match lacnet_site_agent::retire_key(&c.data_dir, id, cache)
            .context("retiring the key (is the agent stopped?)")?
        {
            RetireOutcome::Retired => {
                println!("key {id} retired: the agent no longer needs its file");
                Ok(())
            }
            RetireOutcome::StillInUse(n) => anyhow::bail!(
                "key {id} is still used by {n} record(s); they move to the newest key when next written, or go when erased"
            ),
        };
    }
    match &cli.command {
        Some(Command::Backup { to }) => {
            let (taken, summary) = lacnet_site_agent::backup::backup(
                &c.control_socket(),
                &c.data_dir,
                c.cache_bytes(),
                to,
            )
            .await
            .context("backing up")?;
            let by = match taken {
                Taken::Online => "by the running agent",
                Taken::Offline => "from the stopped agent's data directory",
            };
            println!("backup written {by}: {summary}");
            return Ok(());
        }
        Some(Command::Restore { from }) => {
            let summary = lacnet_site_agent::backup::restore(from, &c.data_dir)
                .context("restoring (is the data directory new or empty?)")?;
            println!("restored: {summary}");
            return Ok(());
        }
        Some(Command::ResetSeries { to }) => {
            let name = to.id();
            match lacnet_site_agent::reset_series(&c.data_dir, *to, c.cache_bytes())
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
            return Ok(());
        }
        Some(Command::RetireKey { .. }) | None => {}
    }
    let options = c.options().context("loading the configuration")?;
    let agent = Agent::open(options).context("opening the site agent")?;
    let shutdown = lacnet_server::shutdown::signal_token();
    let admin = tokio::net::TcpListener::bind(c.server.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", c.server.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    let probe = agent.clone();
    tokio::spawn(lacnet_server::admin::serve_with_health(
        admin,
        agent.metrics().registry(),
        std::sync::Arc::new(move || probe.healthy()),
        shutdown.clone(),
    ));
    // Operators' backups of the running agent (`backup --to`) arrive here.
    let control = lacnet_store::control::Control::bind(&c.control_socket())
        .await
        .context("binding the control socket")?;
    tokio::spawn(control.serve(
        lacnet_site_agent::backup::control_fn(agent.store().clone()),
        shutdown.clone().cancelled_owned(),
    ));
    // Scheduled backups take the same path as the operator's `backup --to`.
    if let Some(schedule) = lacnet_server::backups::schedule_of(&c.server, "lacnet-site-agent")? {
        tokio::spawn(lacnet_server::backups::run(
            schedule,
            lacnet_site_agent::backup::control_fn(agent.store().clone()),
            agent.metrics().backups.clone(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(c.server.listen)
        .await
        .with_context(|| format!("binding the gRPC port {}", c.server.listen))?;
    tracing::info!(grpc = %listener.local_addr()?, admin = %admin_addr, "listening");
    let served = lacnet_site_agent::serve(listener, agent, shutdown.cancelled_owned()).await;
    // Cut-off calls may still hold the store; the runtime's end drops them,
    // which closes the store with a last flush.
    served.context("serving")?;
    Ok(())
}
