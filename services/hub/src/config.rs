//! The hub's command line and environment (`LACNET_HUB_*`), parsed by clap.
//!
//! `main.rs` turns a [`Config`] into [`crate::HubOptions`]; tests build
//! `HubOptions` directly and never touch this module.

use clap::{Parser, Subcommand};
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

/// Maintenance commands. `restore` runs while the hub is stopped (sled locks
/// its directory); `backup` works either way.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Write a consistent backup into a new or empty directory. A running hub
    /// (found through its control socket) takes it without stopping;
    /// otherwise the data directory is opened directly.
    Backup {
        /// The directory to write the backup into (absolute; new or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into the data directory, which must be new or empty
    /// (run it with the hub stopped, then start the hub on it).
    Restore {
        /// The backup directory (one `backup` wrote).
        #[arg(long)]
        from: PathBuf,
    },
}

/// A setting that serving needs but the maintenance commands do not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} (or {env}) is required to serve")]
pub struct MissingSetting {
    /// The command-line flag.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
}

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
}

/// Every setting, each with a `LACNET_HUB_*` environment variable.
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Listen addresses, request timeout, message size and transport limits.
    #[command(flatten)]
    pub server: ServerArgs<HubFlags>,
    /// Directory for the sled database.
    #[arg(long, env = "LACNET_HUB_DATA_DIR", default_value = "./lacnet-hub-data")]
    pub data_dir: PathBuf,
    /// Site registry (TOML): sites, network disclosure policy, unit costs.
    #[arg(
        long,
        env = "LACNET_HUB_REGISTRY",
        default_value = "/etc/lacnet-hub/registry.toml"
    )]
    pub registry: PathBuf,
    /// PEM file with the network CA that every client certificate must chain to.
    #[arg(long, env = "LACNET_HUB_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file with the hub's certificate chain.
    #[arg(long, env = "LACNET_HUB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the hub's private key.
    #[arg(long, env = "LACNET_HUB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM files with certificate revocation lists (comma-separated).
    #[arg(long, env = "LACNET_HUB_TLS_CRLS", value_delimiter = ',')]
    pub tls_crls: Vec<PathBuf>,
    /// Log JSON lines (for Kubernetes) instead of human-readable text.
    #[arg(long, env = "LACNET_HUB_JSON_LOGS")]
    pub json_logs: bool,
    /// Whether sites may see the network comparison (otherwise only their own rows).
    #[arg(
        long,
        env = "LACNET_HUB_SITES_SEE_NETWORK",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sites_see_network: bool,
    /// sled page cache, in MiB (bounds resident memory).
    #[arg(long, env = "LACNET_HUB_CACHE_MB", default_value_t = lacnet_hub_default_cache_mb())]
    pub cache_mb: u64,
    /// Unix socket on which the running hub takes backups (`backup --to`);
    /// mode 0600, so only the hub's own user can use it. Default: `control.sock`
    /// in the data directory.
    #[arg(long, env = "LACNET_HUB_CONTROL_SOCKET")]
    pub control_socket: Option<PathBuf>,
}

const fn lacnet_hub_default_cache_mb() -> u64 {
    crate::DEFAULT_CACHE_BYTES / (1024 * 1024)
}

impl Config {
    /// Where the TLS files are. Optional to clap (so `backup` and `restore`
    /// run with just the data directory) and checked here instead.
    pub fn tls_paths(&self) -> Result<lacnet_tls::TlsPaths, MissingSetting> {
        let required =
            |v: &Option<PathBuf>, flag, env| v.clone().ok_or(MissingSetting { flag, env });
        Ok(lacnet_tls::TlsPaths {
            ca: required(&self.tls_ca, "--tls-ca", "LACNET_HUB_TLS_CA")?,
            cert: required(&self.tls_cert, "--tls-cert", "LACNET_HUB_TLS_CERT")?,
            key: required(&self.tls_key, "--tls-key", "LACNET_HUB_TLS_KEY")?,
            crls: self.tls_crls.clone(),
        })
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| crate::backup::default_socket(&self.data_dir))
    }

    /// The sled page cache in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
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
            "ca",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ];
        let c = Cli::try_parse_from(base).unwrap().config;
        assert!(c.sites_see_network);
        assert_eq!(c.server.request_timeout(), Duration::from_secs(30));
        // The same flag as the agent's; calls end within the request timeout, so 5 s more.
        assert_eq!(c.server.drain_timeout(), Duration::from_secs(35));
        assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.server.transport(), lacnet_tls::TransportLimits::default());
        assert!(c.tls_crls.is_empty());
        assert_eq!(c.cache_bytes(), crate::DEFAULT_CACHE_BYTES);
        let mut args = base.to_vec();
        args.extend(["--sites-see-network", "false", "--tls-crls", "a.pem,b.pem"]);
        let c = Cli::try_parse_from(args).unwrap().config;
        assert!(!c.sites_see_network);
        assert_eq!(c.tls_paths().unwrap().crls.len(), 2);
    }

    #[test]
    fn backup_and_restore_need_only_the_data_dir() {
        let cli = Cli::try_parse_from(["lacnet-hub", "--data-dir", "/d", "backup", "--to", "/b"])
            .unwrap();
        assert!(matches!(cli.command, Some(Command::Backup { ref to }) if to.as_os_str() == "/b"));
        assert_eq!(
            cli.config.control_socket(),
            PathBuf::from("/d/control.sock")
        );
        let err = cli.config.tls_paths().unwrap_err().to_string();
        assert!(
            err.contains("--tls-ca") && err.contains("LACNET_HUB_TLS_CA"),
            "{err}"
        );
        let cli = Cli::try_parse_from(["lacnet-hub", "restore", "--from", "/b"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Restore { ref from }) if from.as_os_str() == "/b")
        );
        assert!(Cli::try_parse_from(["lacnet-hub", "restore"]).is_err());
    }
}
