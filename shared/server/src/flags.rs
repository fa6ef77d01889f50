//! The server flags every lacnet service takes, written once: listen and
//! admin addresses, request and drain timeouts, message size, transport
//! limits, the data directory and its cache, the control socket, scheduled
//! backups, the server's TLS files and the log format.
//!
//! A service flattens [`ServerArgs`] into its clap config
//! (`#[command(flatten)] server: ServerArgs<HubFlags>`). The flag names are
//! the same everywhere (`--listen`, `--keepalive-interval-secs`); the
//! environment variable is the service's prefix plus the flag's name in
//! capitals (`LACNET_HUB_LISTEN`, `LACNET_AGENT_KEEPALIVE_INTERVAL_SECS`), so
//! the names Kubernetes manifests use stay as they were. Defaults that differ
//! between services (ports, timeouts, message size, data directory, cache)
//! come from the service's [`ServiceFlags`]; the transport defaults are
//! [`TransportLimits::default`].

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use lacnet_tls::TransportLimits;

/// What one service fixes about the shared flags: its environment prefix and
/// the defaults that differ between services.
pub trait ServiceFlags {
    /// Prepended to each flag's name in capitals, e.g. `LACNET_HUB_`.
    const ENV_PREFIX: &'static str;
    /// Default gRPC listen address.
    const LISTEN: &'static str;
    /// Default admin listen address.
    const ADMIN_LISTEN: &'static str;
    /// Default per-request timeout, in seconds.
    const REQUEST_TIMEOUT_SECS: u64;
    /// Default largest gRPC message accepted, in bytes.
    const MAX_MESSAGE_BYTES: usize;
    /// Default time in-flight calls get to finish on SIGTERM, in seconds.
    const DRAIN_TIMEOUT_SECS: u64;
    /// Default data directory.
    const DATA_DIR: &'static str;
    /// Default sled page cache, in MiB.
    const CACHE_MB: u64;
}

/// A setting that serving needs but the maintenance commands do not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} (or {env}) is required to serve")]
pub struct MissingSetting {
    /// The command-line flag.
    pub flag: &'static str,
    /// The environment variable.
    pub env: String,
}

/// The shared flags themselves. Use [`ServerArgs`] in a service's config:
/// it adds the service's environment variables and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServerFlags {
    /// gRPC (mTLS) listen address.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Admin (Prometheus /metrics, /healthz) listen address; plain HTTP, keep it cluster-internal.
    #[arg(long)]
    pub admin_listen: SocketAddr,
    /// Per-request timeout, in seconds.
    #[arg(long)]
    pub request_timeout_secs: u64,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long)]
    pub max_message_bytes: usize,
    /// On SIGTERM, how long in-flight calls may take to finish before they are
    /// cut off, in seconds (keep it under Kubernetes' termination grace period).
    #[arg(long)]
    pub drain_timeout_secs: u64,
    /// Connections served at once; further clients wait in the accept queue.
    #[arg(long, default_value_t = TransportLimits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds without any bytes from a client after which its connection is closed.
    #[arg(long, default_value_t = TransportLimits::default().idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
    /// Seconds between HTTP/2 keepalive PINGs to a quiet client.
    #[arg(long, default_value_t = TransportLimits::default().keepalive_interval.as_secs())]
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a PING's ACK before closing the connection.
    #[arg(long, default_value_t = TransportLimits::default().keepalive_timeout.as_secs())]
    pub keepalive_timeout_secs: u64,
    /// Concurrent calls (HTTP/2 streams) one connection may have in flight.
    #[arg(long, default_value_t = TransportLimits::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Take a backup this often, through the same in-service path as the
    /// `backup` command (e.g. `6h`, `30m`, `90s`, `1d`; a bare number is
    /// seconds). The first is taken at start-up. Unset: no scheduled backups.
    #[arg(long, value_parser = parse_every)]
    pub backup_every: Option<Duration>,
    /// Scheduled backups to keep in --backup-dir; older ones are deleted.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub backup_keep: u32,
    /// Directory for scheduled backups (on Kubernetes, the backups volume);
    /// each is a subdirectory named after the service and the time.
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// Directory for the sled database and the files kept beside it.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// sled page cache, in MiB (bounds resident memory).
    #[arg(long)]
    pub cache_mb: u64,
    /// Unix socket on which the running service takes backups (`backup --to`);
    /// mode 0600, so only the service's own user can use it. Default:
    /// `control.sock` in the data directory.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// PEM file with the CA(s) that every client certificate must chain to.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// PEM file with the server's certificate chain.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the server's private key.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM files with certificate revocation lists from that CA (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tls_crls: Vec<PathBuf>,
    /// Log JSON lines (for Kubernetes) instead of human-readable text.
    #[arg(long)]
    pub json_logs: bool,
}

/// Parses `--backup-every`: a whole number with an optional unit (`s`, `m`,
/// `h`, `d`), at least a minute apart in production but any non-zero span
/// is accepted (tests back up every second).
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a whole number with an optional unit (s, m, h, d)")
    })?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    }
    .ok_or_else(|| format!("{text:?} is too long"))?;
    if secs == 0 {
        return Err("must be more than zero (leave it unset for no scheduled backups)".into());
    }
    Ok(Duration::from_secs(secs))
}

impl ServerFlags {
    /// The request timeout (at least a second: zero would refuse every call).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// How long in-flight calls may run once shutdown begins.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The transport limits. Zeroes are raised to one, since a limit of
    /// zero connections, streams or seconds would serve nothing.
    pub fn transport(&self) -> TransportLimits {
        TransportLimits {
            max_connections: self.max_connections.max(1),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_secs.max(1)),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_secs.max(1)),
            max_concurrent_streams: self.max_concurrent_streams.max(1),
        }
    }

    /// The control socket's path.
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| crate::backups::default_socket(&self.data_dir))
    }

    /// The sled page cache in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}

impl<S: ServiceFlags> ServerArgs<S> {
    /// Where the server's TLS files are. Optional to clap (so the
    /// maintenance commands run with just the data directory) and checked
    /// here instead, naming the flag and `S`'s environment variable.
    pub fn tls_paths(&self) -> Result<lacnet_tls::TlsPaths, MissingSetting> {
        let required = |v: &Option<PathBuf>, flag: &'static str, id: &str| {
            v.clone().ok_or_else(|| MissingSetting {
                flag,
                env: format!("{}{id}", S::ENV_PREFIX),
            })
        };
        Ok(lacnet_tls::TlsPaths {
            ca: required(&self.tls_ca, "--tls-ca", "TLS_CA")?,
            cert: required(&self.tls_cert, "--tls-cert", "TLS_CERT")?,
            key: required(&self.tls_key, "--tls-key", "TLS_KEY")?,
            crls: self.tls_crls.clone(),
        })
    }
}

/// [`ServerFlags`] with the environment variables and defaults of service `S`.
pub struct ServerArgs<S> {
    flags: ServerFlags,
    service: PhantomData<fn() -> S>,
}

impl<S> Deref for ServerArgs<S> {
    type Target = ServerFlags;

    fn deref(&self) -> &ServerFlags {
        &self.flags
    }
}

impl<S> std::fmt::Debug for ServerArgs<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.flags.fmt(f)
    }
}

impl<S> Clone for ServerArgs<S> {
    fn clone(&self) -> Self {
        ServerArgs {
            flags: self.flags.clone(),
            service: PhantomData,
        }
    }
}

/// Adds `S`'s environment variables and defaults to the shared flags in `cmd`.
fn for_service<S: ServiceFlags>(mut cmd: Command) -> Command {
    // The ids come from clap's own view of the struct, so a new field gets
    // its environment variable without a list to keep in step.
    let ids: Vec<String> = ServerFlags::augment_args(Command::new("ids"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let env = format!("{}{}", S::ENV_PREFIX, id.to_ascii_uppercase());
        cmd = cmd.mut_arg(id, |a| a.env(env));
    }
    let defaults = [
        ("listen", S::LISTEN.to_owned()),
        ("admin_listen", S::ADMIN_LISTEN.to_owned()),
        ("request_timeout_secs", S::REQUEST_TIMEOUT_SECS.to_string()),
        ("max_message_bytes", S::MAX_MESSAGE_BYTES.to_string()),
        ("drain_timeout_secs", S::DRAIN_TIMEOUT_SECS.to_string()),
        ("data_dir", S::DATA_DIR.to_owned()),
        ("cache_mb", S::CACHE_MB.to_string()),
    ];
    for (id, default) in defaults {
        cmd = cmd.mut_arg(id, |a| a.required(false).default_value(default));
    }
    cmd
}

impl<S: ServiceFlags> Args for ServerArgs<S> {
    fn augment_args(cmd: Command) -> Command {
        for_service::<S>(ServerFlags::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        for_service::<S>(ServerFlags::augment_args_for_update(cmd))
    }

    fn group_id() -> Option<clap::Id> {
        ServerFlags::group_id()
    }
}

impl<S> FromArgMatches for ServerArgs<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServerArgs {
            flags: ServerFlags::from_arg_matches(matches)?,
            service: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.flags.update_from_arg_matches(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    struct Svc;
    impl ServiceFlags for Svc {
        const ENV_PREFIX: &'static str = "LACNET_FLAGS_TEST_";
        const LISTEN: &'static str = "127.0.0.1:1443";
        const ADMIN_LISTEN: &'static str = "127.0.0.1:1090";
        const REQUEST_TIMEOUT_SECS: u64 = 7;
        const MAX_MESSAGE_BYTES: usize = 1234;
        const DRAIN_TIMEOUT_SECS: u64 = 9;
        const DATA_DIR: &'static str = "./svc-data";
        const CACHE_MB: u64 = 3;
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs<Svc>,
        #[arg(long, default_value_t = 0)]
        other: u32,
    }

    #[test]
    fn backup_every_takes_units_and_refuses_nonsense() {
        assert_eq!(parse_every("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_every("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_every("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_every("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "0",
            "0h",
            "h",
            "5w",
            "-1",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        let cli =
            Cli::try_parse_from(["svc", "--backup-every", "2h", "--backup-keep", "3"]).unwrap();
        assert_eq!(cli.server.backup_every, Some(Duration::from_secs(7200)));
        assert_eq!(cli.server.backup_keep, 3);
        assert!(Cli::try_parse_from(["svc", "--backup-keep", "0"]).is_err());
        let cli = Cli::try_parse_from(["svc"]).unwrap();
        assert_eq!((cli.server.backup_every, cli.server.backup_keep), (None, 7));
    }

    #[test]
    fn defaults_come_from_the_service_and_the_transport_limits() {
        let cli = Cli::try_parse_from(["svc"]).unwrap();
        assert_eq!(cli.server.listen, "127.0.0.1:1443".parse().unwrap());
        assert_eq!(cli.server.admin_listen, "127.0.0.1:1090".parse().unwrap());
        assert_eq!(cli.server.request_timeout(), Duration::from_secs(7));
        assert_eq!(cli.server.max_message_bytes, 1234);
        assert_eq!(cli.server.drain_timeout(), Duration::from_secs(9));
        assert_eq!(cli.server.transport(), TransportLimits::default());
        assert_eq!(cli.server.data_dir, PathBuf::from("./svc-data"));
        assert_eq!(cli.server.cache_bytes(), 3 * 1024 * 1024);
        assert_eq!(
            cli.server.control_socket(),
            PathBuf::from("./svc-data/control.sock")
        );
        assert!(!cli.server.json_logs);
    }

    #[test]
    fn tls_files_are_checked_only_when_asked_for_and_name_the_env_var() {
        let cli = Cli::try_parse_from(["svc", "--tls-ca", "ca.pem"]).unwrap();
        assert_eq!(
            cli.server.tls_paths(),
            Err(MissingSetting {
                flag: "--tls-cert",
                env: "LACNET_FLAGS_TEST_TLS_CERT".into()
            })
        );
        let cli = Cli::try_parse_from([
            "svc",
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-crls",
            "a.pem,b.pem",
            "--control-socket",
            "/run/svc.sock",
        ])
        .unwrap();
        let paths = cli.server.tls_paths().unwrap();
        assert_eq!(paths.key, PathBuf::from("k.pem"));
        assert_eq!(paths.crls.len(), 2);
        assert_eq!(cli.server.control_socket(), PathBuf::from("/run/svc.sock"));
    }

    #[test]
    fn flags_parse_and_each_has_the_prefixed_env_var() {
        let cli = Cli::try_parse_from([
            "svc",
            "--listen",
            "0.0.0.0:9",
            "--keepalive-interval-secs",
            "3",
            "--max-concurrent-streams",
            "0",
            "--other",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.server.listen, "0.0.0.0:9".parse().unwrap());
        assert_eq!(
            cli.server.transport().keepalive_interval,
            Duration::from_secs(3)
        );
        assert_eq!(cli.server.transport().max_concurrent_streams, 1);
        assert_eq!(cli.other, 2);
        let cmd = <Cli as clap::CommandFactory>::command();
        let envs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for env in [
            "LACNET_FLAGS_TEST_LISTEN",
            "LACNET_FLAGS_TEST_ADMIN_LISTEN",
            "LACNET_FLAGS_TEST_REQUEST_TIMEOUT_SECS",
            "LACNET_FLAGS_TEST_MAX_MESSAGE_BYTES",
            "LACNET_FLAGS_TEST_DRAIN_TIMEOUT_SECS",
            "LACNET_FLAGS_TEST_MAX_CONNECTIONS",
            "LACNET_FLAGS_TEST_IDLE_TIMEOUT_SECS",
            "LACNET_FLAGS_TEST_KEEPALIVE_INTERVAL_SECS",
            "LACNET_FLAGS_TEST_KEEPALIVE_TIMEOUT_SECS",
            "LACNET_FLAGS_TEST_MAX_CONCURRENT_STREAMS",
            "LACNET_FLAGS_TEST_BACKUP_EVERY",
            "LACNET_FLAGS_TEST_BACKUP_KEEP",
            "LACNET_FLAGS_TEST_BACKUP_DIR",
            "LACNET_FLAGS_TEST_DATA_DIR",
            "LACNET_FLAGS_TEST_CACHE_MB",
            "LACNET_FLAGS_TEST_CONTROL_SOCKET",
            "LACNET_FLAGS_TEST_TLS_CA",
            "LACNET_FLAGS_TEST_TLS_CERT",
            "LACNET_FLAGS_TEST_TLS_KEY",
            "LACNET_FLAGS_TEST_TLS_CRLS",
            "LACNET_FLAGS_TEST_JSON_LOGS",
        ] {
            assert!(envs.iter().any(|e| e == env), "{env} missing from {envs:?}");
        }
    }
}
