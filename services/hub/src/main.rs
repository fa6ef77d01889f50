//! `lacnet-hub`: parse the configuration, start logging, open the hub, serve
//! gRPC and the admin port until SIGTERM, then drain and flush.

use anyhow::Context;
use clap::Parser;
use lacnet_hub::config::Config;
use lacnet_hub::{Hub, HubOptions, Registry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    lacnet_server::telemetry::init(config.json_logs, "info,sled=warn,h2=warn,tower=warn");
    let registry = Registry::load(&config.registry).context("loading the site registry")?;
    let tls = lacnet_tls::PemBundle::load(&config.tls_paths()).context("loading TLS files")?;
    let mut options = HubOptions::new(&config.data_dir, registry, tls);
    options.sites_see_network = config.sites_see_network;
    options.max_message_bytes = config.max_message_bytes;
    options.request_timeout = config.request_timeout();
    options.cache_bytes = config.cache_bytes();
    let hub = Hub::open(options).context("opening the hub")?;

    let shutdown = lacnet_server::shutdown::signal_token();
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", config.admin_listen))?;
    let probe = hub.clone();
    let admin = tokio::spawn(lacnet_server::admin::serve_with_health(
        admin,
        hub.metrics().registry(),
        std::sync::Arc::new(move || probe.healthy()),
        shutdown.clone(),
    ));
    let listener = lacnet_hub::bind_nodelay(config.listen)
        .with_context(|| format!("binding the gRPC port {}", config.listen))?;
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
