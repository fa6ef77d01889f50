//! The hub's command line and environment (`LACNET_HUB_*`), parsed by clap.
//!
//! `main.rs` turns a [`Config`] into [`crate::HubOptions`]; tests build
//! `HubOptions` directly and never touch this module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Configuration of the `lacnet-hub` binary.
#[derive(Debug, Clone, Parser)]
#[command(name = "lacnet-hub", version, about = "The LAC Network hub")]
pub struct Config {
    /// gRPC (mTLS) listen address.
    #[arg(long, env = "LACNET_HUB_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Admin (Prometheus /metrics, /healthz) listen address; plain HTTP, keep it cluster-internal.
    #[arg(
        long,
        env = "LACNET_HUB_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,
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
    pub tls_ca: PathBuf,
    /// PEM file with the hub's certificate chain.
    #[arg(long, env = "LACNET_HUB_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM file with the hub's private key.
    #[arg(long, env = "LACNET_HUB_TLS_KEY")]
    pub tls_key: PathBuf,
    /// PEM files with certificate revocation lists (comma-separated).
    #[arg(long, env = "LACNET_HUB_TLS_CRLS", value_delimiter = ',')]
    pub tls_crls: Vec<PathBuf>,
    /// Log JSON lines (for Kubernetes) instead of human-readable text.
    #[arg(long, env = "LACNET_HUB_JSON_LOGS")]
    pub json_logs: bool,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "LACNET_HUB_MAX_MESSAGE_BYTES", default_value_t = crate::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Per-request timeout, in seconds.
    #[arg(long, env = "LACNET_HUB_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
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
}

const fn lacnet_hub_default_cache_mb() -> u64 {
    crate::DEFAULT_CACHE_BYTES / (1024 * 1024)
}

impl Config {
    /// Where the TLS files are.
    pub fn tls_paths(&self) -> lacnet_tls::TlsPaths {
        lacnet_tls::TlsPaths {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            crls: self.tls_crls.clone(),
        }
    }

    /// The sled page cache in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Config::try_parse_from(base).unwrap();
        assert!(c.sites_see_network);
        assert_eq!(c.request_timeout(), Duration::from_secs(30));
        assert!(c.tls_crls.is_empty());
        assert_eq!(c.cache_bytes(), crate::DEFAULT_CACHE_BYTES);
        let mut args = base.to_vec();
        args.extend(["--sites-see-network", "false", "--tls-crls", "a.pem,b.pem"]);
        let c = Config::try_parse_from(args).unwrap();
        assert!(!c.sites_see_network);
        assert_eq!(c.tls_paths().crls.len(), 2);
    }
}
