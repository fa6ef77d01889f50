//! The hub's command line and environment (`LACNET_HUB_*`), parsed by clap.
//!
//! `main.rs` turns a [`Config`] into [`crate::HubOptions`]; tests build
//! `HubOptions` directly and never touch this module.

use clap::Parser;
use lacnet_server::flags::{ServerArgs, ServiceFlags};
use std::path::PathBuf;

/// The `lacnet-hub` command line.
#[derive(Debug, Clone, Parser)]
#[command(name = "lacnet-hub", version, about = "The LAC Network hub")]
pub struct Cli {
    /// Settings shared by serving and the maintenance commands.
    #[command(flatten)]
    pub config: Config,
    /// A maintenance command; without one the hub serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Maintenance commands, the same in every service: `backup` and `restore`.
pub type Command = lacnet_server::backups::BackupCommand;

/// The hub's environment prefix and server defaults.
#[derive(Debug, Clone, Copy)]
pub struct HubFlags;

impl ServiceFlags for HubFlags {
    const ENV_PREFIX: &'static str = "LACNET_HUB_";
    const LISTEN: &'static str = "127.0.0.1:8443";
    const ADMIN_LISTEN: &'static str = "127.0.0.1:9090";
    const REQUEST_TIMEOUT_SECS: u64 = crate::DEFAULT_REQUEST_TIMEOUT.as_secs();
    const MAX_MESSAGE_BYTES: usize = crate::DEFAULT_MAX_MESSAGE_BYTES;
    const DRAIN_TIMEOUT_SECS: u64 = crate::DEFAULT_DRAIN_TIMEOUT.as_secs();
    const DATA_DIR: &'static str = "./lacnet-hub-data";
    const CACHE_MB: u64 = crate::DEFAULT_CACHE_BYTES / (1024 * 1024);
}

/// Every setting, each with a `LACNET_HUB_*` environment variable.
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Listen addresses, limits, data directory, control socket, backups,
    /// TLS files and log format.
    #[command(flatten)]
    pub server: ServerArgs<HubFlags>,
    /// Site registry (TOML): sites, network disclosure policy, unit costs.
    #[arg(
        long,
        env = "LACNET_HUB_REGISTRY",
        default_value = "/etc/lacnet-hub/registry.toml"
    )]
    pub registry: PathBuf,
    /// Whether sites may see the network comparison (otherwise only their own rows).
    #[arg(
        long,
        env = "LACNET_HUB_SITES_SEE_NETWORK",
        default_value_t = crate::DEFAULT_SITES_SEE_NETWORK,
        action = clap::ArgAction::Set
    )]
    pub sites_see_network: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_and_switch() {
        let base = [
            "lacnet-hub",
            "--tls-ca",
            "network-ca.pem",
            "--tls-cert",
            "hub.pem",
            "--tls-key",
            "hub.key",
        ];
        let c = Cli::try_parse_from(base).unwrap().config;
        assert!(c.sites_see_network);
        assert_eq!(c.server.request_timeout(), Duration::from_secs(30));
        // The same flag as the agent's; calls end within the request timeout, so 5 s more.
        assert_eq!(c.server.drain_timeout(), Duration::from_secs(35));
        assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.server.transport(), lacnet_tls::TransportLimits::default());
        assert!(c.server.tls_crls.is_empty());
        assert_eq!(c.server.cache_bytes(), crate::DEFAULT_CACHE_BYTES);
        let mut args = base.to_vec();
        args.extend(["--sites-see-network", "false", "--tls-crls", "a.pem,b.pem"]);
        let c = Cli::try_parse_from(args).unwrap().config;
        assert!(!c.sites_see_network);
        assert_eq!(c.server.tls_paths().unwrap().crls.len(), 2);
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let c = Cli::try_parse_from(["lacnet-hub"]).unwrap().config;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/registry.toml");
        let registry = crate::Registry::load(path.as_ref()).unwrap();
        let pem = lacnet_tls::PemBundle {
            ca: Vec::new(),
            cert: Vec::new(),
            key: Vec::new(),
            crls: Vec::new(),
        };
        let o = crate::HubOptions::new(&c.server.data_dir, registry, pem);
        assert_eq!(c.sites_see_network, o.sites_see_network);
        assert_eq!(c.server.max_message_bytes, o.max_message_bytes);
        assert_eq!(c.server.request_timeout(), o.request_timeout);
        assert_eq!(c.server.drain_timeout(), o.drain_timeout);
        assert_eq!(c.server.cache_bytes(), o.cache_bytes);
        assert_eq!(c.server.transport(), o.transport);
    }

    #[test]
    fn backup_and_restore_need_only_the_data_dir() {
        let cli = Cli::try_parse_from(["lacnet-hub", "--data-dir", "/d", "backup", "--to", "/b"])
            .unwrap();
        assert!(matches!(cli.command, Some(Command::Backup { ref to }) if to.as_os_str() == "/b"));
        assert_eq!(
            cli.config.server.control_socket(),
            PathBuf::from("/d/control.sock")
        );
        let err = cli.config.server.tls_paths().unwrap_err();
        assert_eq!(
            (err.flag, err.env.as_str()),
            ("--tls-ca", "LACNET_HUB_TLS_CA")
        );
        let cli = Cli::try_parse_from(["lacnet-hub", "restore", "--from", "/b"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Restore { ref from }) if from.as_os_str() == "/b")
        );
        assert!(Cli::try_parse_from(["lacnet-hub", "restore"]).is_err());
    }
}
