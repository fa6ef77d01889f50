//! `lacnet-hub`: parse the configuration, start logging, open the hub, and
//! run it through `lacnet_server::run_service` (admin port, control socket,
//! scheduled backups, gRPC) until SIGTERM, then drain and flush.
//! `backup --to DIR` and `restore --from DIR` run a maintenance command instead.

use anyhow::Context;
use clap::Parser;
use lacnet_hub::config::Cli;
use lacnet_hub::{Hub, HubOptions, Registry};
use lacnet_server::ServiceParts;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = &cli.config;
    let server = &config.server;
    lacnet_server::telemetry::init(server.json_logs, lacnet_server::telemetry::DEFAULT_FILTER);
    if let Some(command) = &cli.command {
        let offline = lacnet_hub::backup::offline(&server.data_dir, server.cache_bytes());
        let spec = &lacnet_hub::store::BACKUP_SPEC;
        let said = command.run(server, "hub", spec, offline).await;
        println!("{}", said.context(command.doing())?);
        return Ok(());
    }
    let registry = Registry::load(&config.registry).context("loading the site registry")?;
    let tls = lacnet_tls::PemBundle::load(&server.tls_paths()?).context("loading TLS files")?;
    let mut options = HubOptions::new(&server.data_dir, registry, tls);
    options.sites_see_network = config.sites_see_network;
    options.max_message_bytes = server.max_message_bytes;
    options.request_timeout = server.request_timeout();
    options.drain_timeout = server.drain_timeout();
    options.transport = server.transport();
    options.cache_bytes = server.cache_bytes();
    let hub = Hub::open(options).context("opening the hub")?;
    let probe = hub.clone();
    let parts = ServiceParts {
        name: "lacnet-hub",
        registry: hub.metrics().registry(),
        healthy: std::sync::Arc::new(move || probe.healthy()),
        backup: lacnet_hub::backup::control_fn(hub.clone()),
        backup_metrics: hub.metrics().backups.clone(),
    };
    lacnet_server::run_service(server, parts, |listener, shutdown| {
        lacnet_hub::serve(listener, hub, shutdown)
    })
    .await?;
    Ok(())
}
