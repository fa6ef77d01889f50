//! `lacnet-hub`: parse the configuration, start logging, open the hub, serve
//! gRPC and the admin port until SIGTERM, then drain and flush.
//! `backup --to DIR` and `restore --from DIR` run a maintenance command instead.

use anyhow::Context;
use clap::Parser;
use lacnet_hub::backup::Taken;
use lacnet_hub::config::{Cli, Command};
use lacnet_hub::{Hub, HubOptions, Registry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = &cli.config;
    lacnet_server::telemetry::init(config.json_logs, "info,sled=warn,h2=warn,tower=warn");
    match &cli.command {
        Some(Command::Backup { to }) => {
            let (taken, summary) = lacnet_hub::backup::backup(
                &config.control_socket(),
                &config.data_dir,
                config.cache_bytes(),
                to,
            )
            .await
            .context("backing up")?;
            let by = match taken {
                Taken::Online => "by the running hub",
                Taken::Offline => "from the stopped hub's data directory",
            };
            println!("backup written {by}: {summary}");
            return Ok(());
        }
        Some(Command::Restore { from }) => {
            let summary = lacnet_hub::backup::restore(from, &config.data_dir)
                .context("restoring (is the data directory new or empty?)")?;
            println!("restored: {summary}");
            return Ok(());
        }
        None => {}
    }
    let registry = Registry::load(&config.registry).context("loading the site registry")?;
    let tls = lacnet_tls::PemBundle::load(&config.tls_paths()?).context("loading TLS files")?;
    let mut options = HubOptions::new(&config.data_dir, registry, tls);
    options.sites_see_network = config.sites_see_network;
    options.max_message_bytes = config.server.max_message_bytes;
    options.request_timeout = config.server.request_timeout();
    options.drain_timeout = config.server.drain_timeout();
    options.transport = config.server.transport();
    options.cache_bytes = config.cache_bytes();
    let hub = Hub::open(options).context("opening the hub")?;

    let shutdown = lacnet_server::shutdown::signal_token();
    let admin = tokio::net::TcpListener::bind(config.server.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", config.server.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    let probe = hub.clone();
    let admin = tokio::spawn(lacnet_server::admin::serve_with_health(
        admin,
        hub.metrics().registry(),
        std::sync::Arc::new(move || probe.healthy()),
        shutdown.clone(),
    ));
    // Operators' backups of the running hub (`backup --to`) arrive here.
    let control = lacnet_store::control::Control::bind(&config.control_socket())
        .await
        .context("binding the control socket")?;
    tokio::spawn(control.serve(
        lacnet_hub::backup::control_fn(hub.clone()),
        shutdown.clone().cancelled_owned(),
    ));
    // Scheduled backups take the same path as the operator's `backup --to`.
    if let Some(schedule) = lacnet_server::backups::schedule_of(&config.server, "lacnet-hub")? {
        tokio::spawn(lacnet_server::backups::run(
            schedule,
            lacnet_hub::backup::control_fn(hub.clone()),
            hub.metrics().backups.clone(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    let listener = lacnet_hub::bind_nodelay(config.server.listen)
        .with_context(|| format!("binding the gRPC port {}", config.server.listen))?;
    // With port 0 (tests, several hubs on one host) this is how callers learn the ports.
    tracing::info!(grpc = %listener.local_addr()?, admin = %admin_addr, "listening");
    let served = lacnet_hub::serve(listener, hub, shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    served.context("serving gRPC")?;
    admin
        .await
        .context("admin task")?
        .context("serving the admin port")?;
    tracing::info!("hub stopped cleanly");
    Ok(())
}
