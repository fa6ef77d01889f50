//! The agent's command line and environment (`LACNET_AGENT_*`), parsed by clap.
//!
//! `main.rs` turns a [`Cli`] into [`crate::AgentOptions`] with
//! [`Config::options`]; tests build `AgentOptions` directly. Key material is
//! never held here: only key ids and the paths of the files holding them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lacnet_core::{DisclosurePolicy, Granularity};
use lacnet_server::flags::{ServerArgs, ServiceFlags};

use crate::{AgentError, AgentOptions, HubTarget};

/// The `lacnet-site-agent` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "lacnet-site-agent",
    version,
    about = "The council's LAC site agent"
)]
pub struct Cli {
    /// Settings shared by serving and the maintenance commands.
    #[command(flatten)]
    pub config: Config,
    /// A maintenance command; without one the agent serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Maintenance commands. `retire-key` and `restore` run while the agent is
/// stopped (sled locks its directory); `backup` works either way.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Forget a rotated-out key id: refused while any stored record still uses it.
    /// Afterwards the agent starts without that key's file.
    RetireKey {
        /// The key id to retire.
        id: String,
    },
    /// Change the site's series (its granularity) in the data directory, with
    /// the agent stopped: forgets what was published for the old series, so
    /// the next start publishes the same records as `--to` periods. Do it
    /// together with the hub's registry change, which withdraws the old
    /// series at the hub (README, "Changing a site's series").
    ResetSeries {
        /// The new granularity: month or quarter.
        #[arg(long)]
        to: Granularity,
    },
    /// `backup` and `restore`, the same in every service.
    #[command(flatten)]
    Data(lacnet_server::backups::BackupCommand),
}

/// The agent's environment prefix and server defaults. A StreamRecords
/// import must finish within the request timeout, hence its length.
#[derive(Debug, Clone, Copy)]
pub struct AgentFlags;

impl ServiceFlags for AgentFlags {
    const ENV_PREFIX: &'static str = "LACNET_AGENT_";
    const LISTEN: &'static str = "127.0.0.1:7443";
    const ADMIN_LISTEN: &'static str = "127.0.0.1:9091";
    const REQUEST_TIMEOUT_SECS: u64 = crate::DEFAULT_REQUEST_TIMEOUT.as_secs();
    const MAX_MESSAGE_BYTES: usize = crate::DEFAULT_MAX_MESSAGE_BYTES;
    const DRAIN_TIMEOUT_SECS: u64 = crate::DEFAULT_DRAIN_TIMEOUT.as_secs();
    const DATA_DIR: &'static str = "./lacnet-agent-data";
    const CACHE_MB: u64 = crate::DEFAULT_CACHE_MB;
}

/// Every setting, each with a `LACNET_AGENT_*` environment variable.
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Listen addresses, limits, data directory, control socket, backups,
    /// the agent's own TLS files and log format.
    #[command(flatten)]
    pub server: ServerArgs<AgentFlags>,
    /// Pseudonymisation key as `id=path`, where the file is one `lacnet keygen` wrote
    /// (`lacnet-key v1`, the same id, and 32 random bytes as 64 hex digits; raw bytes and
    /// passphrases are refused). Repeat, or comma-separate in the env var, newest first:
    /// the first writes, the others only match.
    #[arg(
        long = "key-file",
        env = "LACNET_AGENT_KEY_FILES",
        value_delimiter = ','
    )]
    pub key_files: Vec<String>,
    /// ONS code of this site, e.g. E06000034.
    #[arg(long, env = "LACNET_AGENT_SITE_CODE")]
    pub site_code: Option<String>,
    /// Hub URL (https://...). Without it the agent aggregates and queues but does not push.
    #[arg(long, env = "LACNET_AGENT_HUB_URL")]
    pub hub_url: Option<String>,
    /// Name the hub's certificate must carry.
    #[arg(
        long,
        env = "LACNET_AGENT_HUB_SERVER_NAME",
        default_value = "hub.lacnet"
    )]
    pub hub_server_name: String,
    /// PEM file with the network CA the hub's certificate chains to.
    #[arg(long, env = "LACNET_AGENT_HUB_CA")]
    pub hub_ca: Option<PathBuf>,
    /// PEM file with this site's client certificate for the hub (spiffe://lacnet/site/<code>).
    #[arg(long, env = "LACNET_AGENT_HUB_CERT")]
    pub hub_cert: Option<PathBuf>,
    /// PEM file with the private key of the site certificate.
    #[arg(long, env = "LACNET_AGENT_HUB_KEY")]
    pub hub_key: Option<PathBuf>,
    /// Disclosure control: counts from 1 to this are suppressed.
    #[arg(long, env = "LACNET_AGENT_POLICY_THRESHOLD", default_value_t = lacnet_core::DisclosurePolicy::DEFAULT.threshold)]
    pub policy_threshold: u32,
    /// Disclosure control: other counts are rounded to a multiple of this.
    #[arg(long, env = "LACNET_AGENT_POLICY_ROUNDING_BASE", default_value_t = lacnet_core::DisclosurePolicy::DEFAULT.rounding_base)]
    pub policy_rounding_base: u32,
    /// Disclosure control: complementary suppression in tables.
    #[arg(
        long,
        env = "LACNET_AGENT_POLICY_SECONDARY",
        default_value_t = lacnet_core::DisclosurePolicy::DEFAULT.secondary_suppression,
        action = clap::ArgAction::Set
    )]
    pub policy_secondary: bool,
    /// Reporting period: month or quarter. (The financial year and, with
    /// `--programme-start`, the programme to date are published as well.)
    #[arg(long, env = "LACNET_AGENT_GRANULARITY", default_value = crate::DEFAULT_GRANULARITY.id())]
    pub granularity: Granularity,
    /// Days after a period closes before it is first published (late records
    /// of its last days land in its first release).
    #[arg(
        long,
        env = "LACNET_AGENT_EMBARGO_DAYS",
        default_value_t = crate::DEFAULT_EMBARGO_DAYS,
        value_parser = clap::value_parser!(u32).range(0..=366)
    )]
    pub embargo_days: u32,
    /// The day the site's Local Area Coordination programme started
    /// (YYYY-MM-DD): where "programme to date" figures begin. Without it no
    /// programme-to-date figures are published.
    #[arg(long, env = "LACNET_AGENT_PROGRAMME_START")]
    pub programme_start: Option<String>,
    /// Categories the site never serves, named like their figures (e.g.
    /// age_band.under_18, primary_need.carer, source.police_fire): records in
    /// them are refused, and their figures are published as 0 by policy
    /// instead of being withheld.
    #[arg(long, env = "LACNET_AGENT_NEVER_SERVES", value_delimiter = ',')]
    pub never_serves: Vec<String>,
    /// Months without contact after which an open case stops counting as
    /// active (and counts as gone quiet); 0 keeps open cases active for ever.
    #[arg(long, env = "LACNET_AGENT_INACTIVITY_MONTHS", default_value_t = lacnet_core::aggregate::CountingRules::DEFAULT_INACTIVITY_MONTHS)]
    pub inactivity_months: u32,
    /// Quiet time after ingest before aggregates are recomputed, in milliseconds.
    #[arg(long, env = "LACNET_AGENT_PUBLISH_DEBOUNCE_MS", default_value_t = crate::DEFAULT_PUBLISH_DEBOUNCE.as_millis() as u64)]
    pub publish_debounce_ms: u64,
    /// Scheduled recomputation interval, in seconds.
    #[arg(
        long,
        env = "LACNET_AGENT_PUBLISH_INTERVAL_SECS",
        default_value_t = crate::DEFAULT_PUBLISH_INTERVAL.as_secs()
    )]
    pub publish_interval_secs: u64,
    /// First retry delay after a failed push, in milliseconds.
    #[arg(long, env = "LACNET_AGENT_PUSH_BACKOFF_BASE_MS", default_value_t = crate::DEFAULT_PUSH_BACKOFF_BASE.as_millis() as u64)]
    pub push_backoff_base_ms: u64,
    /// Longest retry delay after failed pushes, in milliseconds.
    #[arg(
        long,
        env = "LACNET_AGENT_PUSH_BACKOFF_CAP_MS",
        default_value_t = crate::DEFAULT_PUSH_BACKOFF_CAP.as_millis() as u64
    )]
    pub push_backoff_cap_ms: u64,
    /// How often to compare this agent's releases with the hub's, in seconds
    /// (anti-entropy: re-send what the hub lacks, report what it holds newer).
    /// Also done at start-up and when the hub's store changes.
    #[arg(
        long,
        env = "LACNET_AGENT_RECONCILE_INTERVAL_SECS",
        default_value_t = crate::DEFAULT_RECONCILE_INTERVAL.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub reconcile_interval_secs: u64,
    /// Most records in one UpsertRecords call.
    #[arg(long, env = "LACNET_AGENT_MAX_BATCH", default_value_t = crate::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
}

/// Splits `id=path`; the message names the argument's position, not its text.
pub fn parse_key_file(spec: &str) -> Result<(String, PathBuf), AgentError> {
    match spec.split_once('=') {
        Some((id, path)) if !id.is_empty() && !path.is_empty() => {
            Ok((id.to_owned(), PathBuf::from(path)))
        }
        _ => Err(AgentError::Config(
            "--key-file must be id=path (e.g. k2025=/etc/lacnet/keys/k2025)".to_owned(),
        )),
    }
}

impl Config {
    /// The key files as (id, path), newest first.
    pub fn key_files(&self) -> Result<Vec<(String, PathBuf)>, AgentError> {
        if self.key_files.is_empty() {
            return Err(AgentError::Config(
                "no pseudonymisation key: pass --key-file id=path or set LACNET_AGENT_KEY_FILES"
                    .to_owned(),
            ));
        }
        self.key_files.iter().map(|s| parse_key_file(s)).collect()
    }

    /// The disclosure policy, checked.
    pub fn policy(&self) -> Result<DisclosurePolicy, AgentError> {
        let policy = DisclosurePolicy {
            threshold: self.policy_threshold,
            rounding_base: self.policy_rounding_base,
            secondary_suppression: self.policy_secondary,
        };
        policy
            .validate()
            .map_err(|e| AgentError::Config(format!("disclosure policy: {e}")))?;
        Ok(policy)
    }

    /// Everything [`crate::Agent::open`] needs: reads the key and TLS files.
    ///
    /// Settings only serving needs are optional to clap (so `retire-key` runs
    /// with just the data directory) and checked here instead. The hub's TLS
    /// files never fall back to the council's: the network CA and the site
    /// certificate are different trust roots, and guessing would only surface
    /// later as a handshake failure.
    pub fn options(&self) -> Result<AgentOptions, AgentError> {
        let site_code = required(&self.site_code, "--site-code", "LACNET_AGENT_SITE_CODE")?;
        let keys = crate::keys::load_ring(&self.key_files()?)?;
        let paths = self
            .server
            .tls_paths()
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let tls = lacnet_tls::PemBundle::load(&paths)?;
        let hub = match &self.hub_url {
            None => None,
            Some(url) => {
                let pem = lacnet_tls::PemBundle::load(&lacnet_tls::TlsPaths {
                    ca: required(&self.hub_ca, "--hub-ca", "LACNET_AGENT_HUB_CA")?,
                    cert: required(&self.hub_cert, "--hub-cert", "LACNET_AGENT_HUB_CERT")?,
                    key: required(&self.hub_key, "--hub-key", "LACNET_AGENT_HUB_KEY")?,
                    crls: Vec::new(),
                })?;
                Some(HubTarget {
                    url: url.clone(),
                    server_name: self.hub_server_name.clone(),
                    tls: pem,
                })
            }
        };
        let mut o = AgentOptions::new(&self.server.data_dir, &site_code, keys, tls);
        o.hub = hub;
        o.policy = self.policy()?;
        if self.granularity.is_span() {
            return Err(AgentError::Config(format!(
                "--granularity {:?}: the reporting series must be month or quarter (the financial year and programme to date are published as well)",
                self.granularity.label()
            )));
        }
        o.granularity = self.granularity;
        o.embargo_days = self.embargo_days;
        o.programme_start = self
            .programme_start
            .as_deref()
            .map(|s| {
                lacnet_core::Date::parse(s)
                    .map_err(|e| AgentError::Config(format!("--programme-start {s:?}: {e}")))
            })
            .transpose()?;
        if o.programme_start
            .is_some_and(|d| d.year() < lacnet_core::Period::MIN_YEAR)
        {
            return Err(AgentError::Config(format!(
                "--programme-start must not be before {}-01-01",
                lacnet_core::Period::MIN_YEAR
            )));
        }
        o.never_served = lacnet_core::structural::NeverServed::parse(&self.never_serves)
            .map_err(|e| AgentError::Config(format!("--never-serves: {e}")))?;
        o.inactivity_months = self.inactivity_months;
        o.publish_debounce = Duration::from_millis(self.publish_debounce_ms);
        o.publish_interval = Duration::from_secs(self.publish_interval_secs.max(1));
        o.push_backoff_base = Duration::from_millis(self.push_backoff_base_ms.max(1));
        o.push_backoff_cap = Duration::from_millis(self.push_backoff_cap_ms.max(1));
        o.reconcile_interval = Duration::from_secs(self.reconcile_interval_secs.max(1));
        o.max_message_bytes = self.server.max_message_bytes;
        o.max_batch = self.max_batch.max(1);
        o.request_timeout = self.server.request_timeout();
        o.transport = self.server.transport();
        o.cache_bytes = self.server.cache_bytes();
        o.drain_timeout = self.server.drain_timeout();
        Ok(o)
    }
}

/// A setting clap leaves optional but serving needs, or an error naming it.
fn required<T: Clone>(value: &Option<T>, flag: &str, env: &str) -> Result<T, AgentError> {
    value
        .clone()
        .ok_or_else(|| AgentError::Config(format!("{flag} (or {env}) is required to serve")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lacnet_server::backups::BackupCommand;
    use std::path::Path;

    const BASE: &[&str] = &[
        "lacnet-site-agent",
        "--site-code",
        "E06000034",
        "--tls-ca",
        "ca",
        "--tls-cert",
        "c",
        "--tls-key",
        "k",
    ];

    #[test]
    fn key_files_are_required_and_ordered() {
        let cli = Cli::try_parse_from(BASE).unwrap();
        let err = cli.config.key_files().unwrap_err().to_string();
        assert!(err.contains("--key-file"), "{err}");
        let mut args = BASE.to_vec();
        args.extend(["--key-file", "k2=/a", "--key-file", "k1=/b"]);
        let cli = Cli::try_parse_from(args).unwrap();
        let keys = cli.config.key_files().unwrap();
        assert_eq!(keys[0], ("k2".to_owned(), PathBuf::from("/a")));
        assert_eq!(keys[1].0, "k1");
        assert!(parse_key_file("nokey").is_err());
        assert!(cli.command.is_none());
    }

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let c = Cli::try_parse_from(BASE).unwrap().config;
        use lacnet_core::pseudonym::{KeyId, KeyRing, Secret};
        let key = (KeyId::new("k1").unwrap(), Secret::new(vec![7; 32]).unwrap());
        let keys = KeyRing::new(vec![key]).unwrap();
        let pem = lacnet_tls::PemBundle {
            ca: Vec::new(),
            cert: Vec::new(),
            key: Vec::new(),
            crls: Vec::new(),
        };
        let o = AgentOptions::new(&c.server.data_dir, "E06000034", keys, pem);
        assert_eq!(c.policy().unwrap(), o.policy);
        assert_eq!(c.granularity, o.granularity);
        assert_eq!(c.server.drain_timeout(), o.drain_timeout);
        assert_eq!(c.server.request_timeout(), o.request_timeout);
        assert_eq!(c.server.max_message_bytes, o.max_message_bytes);
        assert_eq!(c.server.cache_bytes(), o.cache_bytes);
        assert_eq!(c.server.transport(), o.transport);
        assert_eq!(
            (c.embargo_days, c.inactivity_months),
            (o.embargo_days, o.inactivity_months)
        );
        assert_eq!(c.max_batch, o.max_batch);
        assert_eq!(
            Duration::from_millis(c.publish_debounce_ms),
            o.publish_debounce
        );
        assert_eq!(
            Duration::from_secs(c.publish_interval_secs),
            o.publish_interval
        );
        assert_eq!(
            Duration::from_millis(c.push_backoff_base_ms),
            o.push_backoff_base
        );
        assert_eq!(
            Duration::from_millis(c.push_backoff_cap_ms),
            o.push_backoff_cap
        );
        assert_eq!(
            Duration::from_secs(c.reconcile_interval_secs),
            o.reconcile_interval
        );
    }

    #[test]
    fn key_file_help_says_what_a_key_file_is() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("lacnet keygen") && help.contains("raw bytes and"),
            "{help}"
        );
        assert!(!help.contains("at least 32 secret bytes"), "{help}");
    }

    #[test]
    fn policy_and_granularity_parse_and_validate() {
        let mut args = BASE.to_vec();
        args.extend([
            "--granularity",
            "month",
            "--policy-rounding-base",
            "0",
            "retire-key",
            "k1",
        ]);
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.config.granularity, Granularity::Month);
        assert!(cli.config.policy().is_err());
        assert!(matches!(cli.command, Some(Command::RetireKey { ref id }) if id == "k1"));
    }

    #[test]
    fn retire_key_needs_only_the_data_dir() {
        let cli = Cli::try_parse_from([
            "lacnet-site-agent",
            "--data-dir",
            "/data",
            "retire-key",
            "k1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::RetireKey { ref id }) if id == "k1"));
        let err = cli.config.options().unwrap_err().to_string();
        assert!(
            err.contains("--site-code") && err.contains("LACNET_AGENT_SITE_CODE"),
            "{err}"
        );
    }

    #[test]
    fn backup_and_restore_need_only_the_data_dir() {
        let cli = Cli::try_parse_from([
            "lacnet-site-agent",
            "--data-dir",
            "/data",
            "backup",
            "--to",
            "/backups/b1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Data(BackupCommand::Backup { ref to })) if to == Path::new("/backups/b1"))
        );
        assert_eq!(
            cli.config.server.control_socket(),
            Path::new("/data/control.sock")
        );
        let cli = Cli::try_parse_from([
            "lacnet-site-agent",
            "--control-socket",
            "/run/agent.sock",
            "restore",
            "--from",
            "/backups/b1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Data(BackupCommand::Restore { ref from })) if from == Path::new("/backups/b1"))
        );
        assert_eq!(
            cli.config.server.control_socket(),
            Path::new("/run/agent.sock")
        );
        assert!(Cli::try_parse_from(["lacnet-site-agent", "backup"]).is_err());
    }

    #[test]
    fn hub_tls_files_never_fall_back_to_the_council_ones() {
        let dir = tempfile::tempdir().unwrap();
        let council = lacnet_tls::dev::DevCa::new("council").unwrap();
        let server = council.issue_server(&["agent.test"]).unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca = write("ca.pem", &council.ca_pem());
        let cert = write("agent.pem", &server.cert_pem);
        let key = write("agent.key", &server.key_pem);
        let secret = dir.path().join("k1");
        let raw: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(7));
        std::fs::write(&secret, crate::keys::encode_key_file("k1", &raw, &[])).unwrap();
        let mut args: Vec<String> = [
            "lacnet-site-agent",
            "--site-code",
            "E06000034",
            "--hub-url",
            "https://hub.test:8443",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, path) in [
            ("--tls-ca", &ca),
            ("--tls-cert", &cert),
            ("--tls-key", &key),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args.push("--key-file".into());
        args.push(format!("k1={}", secret.display()));
        let cli = Cli::try_parse_from(&args).unwrap();
        let err = cli.config.options().unwrap_err().to_string();
        assert!(err.contains("--hub-ca"), "{err}");
    }
}
