//! Where the CLI finds its servers and certificates: one file, `lacnet.toml`,
//! overridden by `LACNET_*` environment variables, overridden by flags. So an
//! operator writes the five certificate paths once, not on every command.
//!
//! ```toml
//! [agent]                      # the council's site agent
//! url = "https://127.0.0.1:7443"
//! server_name = "agent.lacnet" # the name on the agent's server certificate
//! ca = "council-ca.pem"        # relative paths are relative to this file
//! cert = "council-client.pem"  # the case system's identity: import
//! key = "council-client.key"
//! operator_cert = "operator.pem" # an operator's identity: status, preview, erase
//! operator_key = "operator.key"
//!
//! [hub]                        # the network hub (report)
//! url = "https://127.0.0.1:8443"
//! server_name = "hub.lacnet"
//! ca = "network-ca.pem"
//! cert = "analyst.pem"
//! key = "analyst.key"
//! ```
//!
//! The file is `--config`, else `$LACNET_CONFIG`, else `./lacnet.toml` if it exists.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Service, TomlProblem};

/// Default agent URL: the site agent's default listen address.
pub const DEFAULT_AGENT_URL: &str = "https://127.0.0.1:7443";
/// Default hub URL: the hub's default listen address.
pub const DEFAULT_HUB_URL: &str = "https://127.0.0.1:8443";
/// Default name on the agent's server certificate (what `lacnet certs` issues).
pub const DEFAULT_AGENT_NAME: &str = "agent.lacnet";
/// Default name on the hub's server certificate (what `lacnet certs` issues).
pub const DEFAULT_HUB_NAME: &str = "hub.lacnet";

/// One endpoint as written in `lacnet.toml`; every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// `https://host:port`.
    pub url: Option<String>,
    /// Name the server's certificate must carry.
    pub server_name: Option<String>,
    /// CA the server's certificate chains to.
    pub ca: Option<PathBuf>,
    /// This caller's client certificate.
    pub cert: Option<PathBuf>,
    /// This caller's private key.
    pub key: Option<PathBuf>,
    /// The operator's client certificate (agent only: status, preview, erase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_cert: Option<PathBuf>,
    /// The operator's private key (agent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_key: Option<PathBuf>,
}

/// The whole `lacnet.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The council's site agent.
    #[serde(default)]
    pub agent: EndpointFile,
    /// The network hub.
    #[serde(default)]
    pub hub: EndpointFile,
}

impl ConfigFile {
    /// Reads `path`, resolving relative certificate paths against its directory.
    pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::io("cannot read the config file", path, e))?;
        let mut file: ConfigFile = toml::from_str(&text).map_err(|e| CliError::Toml {
            path: path.to_owned(),
            problem: TomlProblem::new(&text, &e),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for ep in [&mut file.agent, &mut file.hub] {
            for p in [
                &mut ep.ca,
                &mut ep.cert,
                &mut ep.key,
                &mut ep.operator_cert,
                &mut ep.operator_key,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(file)
    }

    /// Writes the file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Settings that override the file, from flags and `LACNET_*` variables:
/// what [`EndpointFlags::agent`], [`EndpointFlags::operator`] and
/// [`EndpointFlags::hub`] resolve. On the command line each command takes
/// only the flags of the endpoint it talks to ([`AgentFlags`],
/// [`OperatorFlags`], [`HubFlags`]), listed under their own help heading.
#[derive(Debug, Clone, Default)]
pub struct EndpointFlags {
    /// Config file [default: ./lacnet.toml if present].
    pub config: Option<PathBuf>,
    /// Site agent URL.
    pub agent_url: Option<String>,
    /// Name on the site agent's certificate.
    pub agent_server_name: Option<String>,
    /// Council CA the agent's certificate chains to.
    pub agent_ca: Option<PathBuf>,
    /// Council client certificate for import.
    pub agent_cert: Option<PathBuf>,
    /// Council client private key.
    pub agent_key: Option<PathBuf>,
    /// Operator certificate for status, preview, evaluation and erase.
    pub operator_cert: Option<PathBuf>,
    /// Operator private key.
    pub operator_key: Option<PathBuf>,
    /// Hub URL.
    pub hub_url: Option<String>,
    /// Name on the hub's certificate.
    pub hub_server_name: Option<String>,
    /// Network CA the hub's certificate chains to.
    pub hub_ca: Option<PathBuf>,
    /// Analyst client certificate.
    pub hub_cert: Option<PathBuf>,
    /// Analyst client private key.
    pub hub_key: Option<PathBuf>,
}

/// The help heading of every command's connection flags.
const CONNECTION: &str = "Connection (each overrides lacnet.toml; LACNET_* variables too)";

/// Where the site agent is and how to know it: the connection flags that
/// the case system's and the operator's commands share.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = CONNECTION)]
pub struct AgentTarget {
    /// Config file [default: ./lacnet.toml if present].
    #[arg(long, env = "LACNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Site agent URL [default: https://127.0.0.1:7443].
    #[arg(long, env = "LACNET_AGENT_URL")]
    pub agent_url: Option<String>,
    /// Name on the site agent's certificate [default: agent.lacnet].
    #[arg(long, env = "LACNET_AGENT_SERVER_NAME")]
    pub agent_server_name: Option<String>,
    /// Council CA the agent's certificate chains to (PEM).
    #[arg(long, env = "LACNET_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,
}

/// Who a command is at the site agent. The agent lets the case system only
/// push records and an operator only run it, so each holds its own
/// certificate and key, under flags named after the role, and one never
/// stands in for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRole {
    /// The council's case system (`import`): `--agent-cert`, `--agent-key`.
    CaseSystem,
    /// The agent's operator (`status`, `preview`, `evaluation`, `erase`):
    /// `--operator-cert`, `--operator-key`.
    Operator,
}

impl AgentRole {
    /// The word that starts the role's flag names.
    fn name(self) -> &'static str {
        match self {
            AgentRole::CaseSystem => "agent",
            AgentRole::Operator => "operator",
        }
    }

    /// Whose certificate it is, as the help says it.
    fn holder(self) -> &'static str {
        match self {
            AgentRole::CaseSystem => "Council client",
            AgentRole::Operator => "Operator",
        }
    }

    /// The kind of identity in the role's certificate (`spiffe://lacnet/<kind>/<name>`).
    fn identity_kind(self) -> &'static str {
        match self {
            AgentRole::CaseSystem => "council",
            AgentRole::Operator => "operator",
        }
    }

    /// The role's flag for `file` (`cert` or `key`): `--operator-key`, shown
    /// as `<OPERATOR_KEY>` and read from `LACNET_OPERATOR_KEY` too.
    fn arg(self, file: &str, help: String) -> Arg {
        let id = self.id(file);
        let upper = id.to_ascii_uppercase();
        Arg::new(id.clone())
            .long(id.replace('_', "-"))
            .value_name(upper.clone())
            .env(format!("LACNET_{upper}"))
            .help(help)
            .value_parser(clap::value_parser!(PathBuf))
            .action(ArgAction::Set)
    }

    /// The clap id of that flag, e.g. `operator_key`.
    fn id(self, file: &str) -> String {
        format!("{}_{file}", self.name())
    }

    fn cert_help(self) -> String {
        let (holder, kind) = (self.holder(), self.identity_kind());
        format!("{holder} certificate (PEM, spiffe://lacnet/{kind}/<name>)")
    }

    fn key_help(self) -> String {
        format!("{} private key (PEM)", self.holder())
    }

    /// How a missing certificate and key are named to the user: the flag,
    /// the environment variable and the `[agent]` key in `lacnet.toml`.
    fn setting_names(self) -> [(&'static str, &'static str, &'static str); 2] {
        match self {
            AgentRole::CaseSystem => [
                ("--agent-cert", "LACNET_AGENT_CERT", "cert"),
                ("--agent-key", "LACNET_AGENT_KEY", "key"),
            ],
            AgentRole::Operator => [
                ("--operator-cert", "LACNET_OPERATOR_CERT", "operator_cert"),
                ("--operator-key", "LACNET_OPERATOR_KEY", "operator_key"),
            ],
        }
    }
}

/// An [`AgentRole`] as a type, so a command's flags can name the role they
/// take ([`RoleFlags`]) and clap can build them before any value exists.
pub trait RoleType {
    /// The role.
    const ROLE: AgentRole;
}

/// [`AgentRole::CaseSystem`] as a type.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseSystem;

impl RoleType for CaseSystem {
    const ROLE: AgentRole = AgentRole::CaseSystem;
}

/// [`AgentRole::Operator`] as a type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Operator;

impl RoleType for Operator {
    const ROLE: AgentRole = AgentRole::Operator;
}

/// Connection flags of a command that talks to the site agent in role `R`:
/// where the agent is, and `R`'s certificate and key. The clap impls are
/// written by hand because the derive cannot take a flag's name from `R`.
#[derive(Debug, Clone, Default)]
pub struct RoleFlags<R: RoleType> {
    /// Where the agent is and how to know it.
    pub target: AgentTarget,
    /// The role's client certificate.
    pub cert: Option<PathBuf>,
    /// The role's private key.
    pub key: Option<PathBuf>,
    role: PhantomData<R>,
}

impl<R: RoleType> RoleFlags<R> {
    /// Moves the role's files from `matches` into `self`; a file that
    /// `matches` lacks keeps its value, as clap's updates expect.
    fn take_files(&mut self, matches: &mut ArgMatches) {
        for (file, path) in [("cert", &mut self.cert), ("key", &mut self.key)] {
            if let Some(p) = matches.remove_one::<PathBuf>(&R::ROLE.id(file)) {
                *path = Some(p);
            }
        }
    }
}

impl<R: RoleType> Args for RoleFlags<R> {
    fn augment_args(cmd: Command) -> Command {
        let role = R::ROLE;
        AgentTarget::augment_args(cmd)
            .next_help_heading(CONNECTION)
            .arg(role.arg("cert", role.cert_help()))
            .arg(role.arg("key", role.key_help()))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<R: RoleType> FromArgMatches for RoleFlags<R> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = RoleFlags {
            target: AgentTarget::from_arg_matches_mut(matches)?,
            cert: None,
            key: None,
            role: PhantomData,
        };
        flags.take_files(matches);
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.update_from_arg_matches_mut(&mut matches.clone())
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.target.update_from_arg_matches_mut(matches)?;
        self.take_files(matches);
        Ok(())
    }
}

/// Connection flags of a command that pushes records as the case system (`import`).
pub type AgentFlags = RoleFlags<CaseSystem>;

/// Connection flags of a command that runs a site agent as its operator
/// (`status`, `preview`, `evaluation`, `erase`).
pub type OperatorFlags = RoleFlags<Operator>;

/// Connection flags of a command that reads the hub as an analyst (`report`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = CONNECTION)]
pub struct HubFlags {
    /// Config file [default: ./lacnet.toml if present].
    #[arg(long, env = "LACNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Hub URL [default: https://127.0.0.1:8443].
    #[arg(long, env = "LACNET_HUB_URL")]
    pub hub_url: Option<String>,
    /// Name on the hub's certificate [default: hub.lacnet].
    #[arg(long, env = "LACNET_HUB_SERVER_NAME")]
    pub hub_server_name: Option<String>,
    /// Network CA the hub's certificate chains to (PEM).
    #[arg(long, env = "LACNET_HUB_CA")]
    pub hub_ca: Option<PathBuf>,
    /// Analyst client certificate (PEM, spiffe://lacnet/analyst/<name>).
    #[arg(long, env = "LACNET_HUB_CERT")]
    pub hub_cert: Option<PathBuf>,
    /// Analyst client private key (PEM).
    #[arg(long, env = "LACNET_HUB_KEY")]
    pub hub_key: Option<PathBuf>,
}

impl From<AgentTarget> for EndpointFlags {
    fn from(f: AgentTarget) -> EndpointFlags {
        EndpointFlags {
            config: f.config,
            agent_url: f.agent_url,
            agent_server_name: f.agent_server_name,
            agent_ca: f.agent_ca,
            ..EndpointFlags::default()
        }
    }
}

impl<R: RoleType> From<RoleFlags<R>> for EndpointFlags {
    fn from(f: RoleFlags<R>) -> EndpointFlags {
        let target = EndpointFlags::from(f.target);
        match R::ROLE {
            AgentRole::CaseSystem => EndpointFlags {
                agent_cert: f.cert,
                agent_key: f.key,
                ..target
            },
            AgentRole::Operator => EndpointFlags {
                operator_cert: f.cert,
                operator_key: f.key,
                ..target
            },
        }
    }
}

impl From<HubFlags> for EndpointFlags {
    fn from(f: HubFlags) -> EndpointFlags {
        EndpointFlags {
            config: f.config,
            hub_url: f.hub_url,
            hub_server_name: f.hub_server_name,
            hub_ca: f.hub_ca,
            hub_cert: f.hub_cert,
            hub_key: f.hub_key,
            ..EndpointFlags::default()
        }
    }
}

/// A fully resolved endpoint: where to connect and with which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Which service this is.
    pub service: Service,
    /// `https://host:port`.
    pub url: String,
    /// Name the server's certificate must carry.
    pub server_name: String,
    /// TLS files.
    pub tls: lacnet_tls::TlsPaths,
}

impl EndpointFlags {
    /// The config file, if one is named or `./lacnet.toml` exists.
    fn file(&self) -> Result<ConfigFile, CliError> {
        match &self.config {
            Some(path) => ConfigFile::load(path),
            None if Path::new("lacnet.toml").is_file() => {
                ConfigFile::load(Path::new("lacnet.toml"))
            }
            None => Ok(ConfigFile::default()),
        }
    }

    /// The site agent endpoint as the case system (import): flags, then
    /// env, then the file, then defaults.
    pub fn agent(&self) -> Result<Endpoint, CliError> {
        self.agent_as(AgentRole::CaseSystem)
    }

    /// The site agent endpoint as its operator (status, preview, erase): the
    /// agent's URL and CA, with the operator's certificate and key. The case
    /// system's certificate may only push records, so it is never a fallback.
    pub fn operator(&self) -> Result<Endpoint, CliError> {
        self.agent_as(AgentRole::Operator)
    }

    /// The site agent endpoint with `role`'s certificate and key, and no
    /// other role's.
    fn agent_as(&self, role: AgentRole) -> Result<Endpoint, CliError> {
        let file = self.file()?.agent;
        let (cert, key, file_cert, file_key) = match role {
            AgentRole::CaseSystem => (&self.agent_cert, &self.agent_key, &file.cert, &file.key),
            AgentRole::Operator => (
                &self.operator_cert,
                &self.operator_key,
                &file.operator_cert,
                &file.operator_key,
            ),
        };
        let [cert_names, key_names] = role.setting_names();
        resolve(
            Service::Agent,
            [
                (&self.agent_url, &self.agent_server_name),
                (&file.url, &file.server_name),
            ],
            [
                (
                    &self.agent_ca,
                    &file.ca,
                    "--agent-ca",
                    "LACNET_AGENT_CA",
                    "ca",
                ),
                (cert, file_cert, cert_names.0, cert_names.1, cert_names.2),
                (key, file_key, key_names.0, key_names.1, key_names.2),
            ],
        )
    }

    /// The hub endpoint: flags, then env, then the file, then defaults.
    pub fn hub(&self) -> Result<Endpoint, CliError> {
        let file = self.file()?.hub;
        resolve(
            Service::Hub,
            [
                (&self.hub_url, &self.hub_server_name),
                (&file.url, &file.server_name),
            ],
            [
                (&self.hub_ca, &file.ca, "--hub-ca", "LACNET_HUB_CA", "ca"),
                (
                    &self.hub_cert,
                    &file.cert,
                    "--hub-cert",
                    "LACNET_HUB_CERT",
                    "cert",
                ),
                (
                    &self.hub_key,
                    &file.key,
                    "--hub-key",
                    "LACNET_HUB_KEY",
                    "key",
                ),
            ],
        )
    }
}

type PathSource<'a> = (
    &'a Option<PathBuf>,
    &'a Option<PathBuf>,
    &'static str,
    &'static str,
    &'static str,
);

fn resolve(
    service: Service,
    names: [(&Option<String>, &Option<String>); 2],
    paths: [PathSource<'_>; 3],
) -> Result<Endpoint, CliError> {
    let (section, default_url, default_name) = match service {
        Service::Agent => ("agent", DEFAULT_AGENT_URL, DEFAULT_AGENT_NAME),
        Service::Hub => ("hub", DEFAULT_HUB_URL, DEFAULT_HUB_NAME),
    };
    let url = names[0]
        .0
        .clone()
        .or_else(|| names[1].0.clone())
        .unwrap_or_else(|| default_url.to_owned());
    let server_name = names[0]
        .1
        .clone()
        .or_else(|| names[1].1.clone())
        .unwrap_or_else(|| default_name.to_owned());
    let pick = |(flag, file, flag_name, env, key): PathSource<'_>| {
        flag.clone()
            .or_else(|| file.clone())
            .ok_or(CliError::MissingSetting {
                service: service.name(),
                key,
                flag: flag_name,
                env,
                section,
            })
    };
    let [ca, cert, key] = paths;
    let (ca, cert, key) = (pick(ca)?, pick(cert)?, pick(key)?);
    Ok(Endpoint {
        service,
        url,
        server_name,
        tls: lacnet_tls::TlsPaths {
            ca,
            cert,
            key,
            crls: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_override_the_file_and_relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lacnet.toml");
        std::fs::write(
            &path,
            "[agent]\nurl = \"https://10.0.0.1:7443\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
        )
        .unwrap();
        let mut flags = EndpointFlags {
            config: Some(path),
            ..EndpointFlags::default()
        };
        let ep = flags.agent().unwrap();
        assert_eq!(ep.url, "https://10.0.0.1:7443");
        assert_eq!(ep.server_name, DEFAULT_AGENT_NAME);
        assert_eq!(ep.tls.ca, dir.path().join("ca.pem"));
        flags.agent_url = Some("https://127.0.0.1:1".into());
        flags.agent_key = Some("/abs/k.key".into());
        let ep = flags.agent().unwrap();
        assert_eq!(ep.url, "https://127.0.0.1:1");
        assert_eq!(ep.tls.key, PathBuf::from("/abs/k.key"));
        let err = flags.hub().unwrap_err();
        assert!(
            matches!(
                err,
                CliError::MissingSetting {
                    flag: "--hub-ca",
                    env: "LACNET_HUB_CA",
                    ..
                }
            ),
            "{err}"
        );
        // Status, preview and erase need the operator's certificate, never the case system's.
        let err = flags.operator().unwrap_err();
        assert!(
            matches!(
                err,
                CliError::MissingSetting {
                    flag: "--operator-cert",
                    key: "operator_cert",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(
            dir.path().join("lacnet.toml"),
            "[agent]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n\
             operator_cert = \"op.pem\"\noperator_key = \"op.key\"\n",
        )
        .unwrap();
        let ep = flags.operator().unwrap();
        assert_eq!(ep.tls.cert, dir.path().join("op.pem"));
        // --agent-key is the case system's key and does not leak into the operator's endpoint.
        assert_eq!(ep.tls.key, dir.path().join("op.key"));
    }

    /// The role decides which names parse and where the files land: the
    /// case system's certificate must never reach the operator's endpoint.
    #[test]
    fn each_role_takes_only_its_own_certificate_flags() {
        #[derive(clap::Parser)]
        struct Cli<R: RoleType> {
            #[command(flatten)]
            conn: RoleFlags<R>,
        }
        let parse = |args: &[&str]| {
            let op = Cli::<Operator>::try_parse_from(args).map(|c| EndpointFlags::from(c.conn));
            let cs = Cli::<CaseSystem>::try_parse_from(args).map(|c| EndpointFlags::from(c.conn));
            (op.ok(), cs.ok())
        };
        let (op, cs) = parse(&[
            "lacnet",
            "--operator-cert",
            "o.pem",
            "--operator-key",
            "o.key",
        ]);
        let op = op.unwrap();
        assert_eq!(op.operator_cert, Some(PathBuf::from("o.pem")));
        assert_eq!(op.operator_key, Some(PathBuf::from("o.key")));
        assert_eq!((op.agent_cert, op.agent_key), (None, None));
        assert!(cs.is_none());
        let (op, cs) = parse(&["lacnet", "--agent-cert", "c.pem", "--agent-key", "c.key"]);
        let cs = cs.unwrap();
        assert_eq!(cs.agent_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(cs.agent_key, Some(PathBuf::from("c.key")));
        assert_eq!((cs.operator_cert, cs.operator_key), (None, None));
        assert!(op.is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lacnet.toml");
        std::fs::write(&path, "[agent]\nurll = \"x\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(
            matches!(&err, CliError::Toml { path: p, problem } if p == &path
                && problem.position == Some((2, 1)) && problem.message.contains("urll")),
            "{err}"
        );
    }
}
