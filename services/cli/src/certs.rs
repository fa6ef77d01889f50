//! `lacnet certs`: a development PKI on disk, made with rcgen (through
//! `lacnet_tls::dev`). Not for production keys. The CA private keys are kept
//! beside the certificates (mode 0600) so that a trial network can grow:
//! `lacnet certs add-site`, `add-analyst` and `add-operator` issue from them,
//! and nothing already deployed has to be issued again.
//!
//! Two trust roots, as in a real deployment:
//! - the **network CA** signs the hub's server certificate, each site's client
//!   certificate (`spiffe://lacnet/site/<ONS code>`, what the agent pushes to
//!   the hub with) and analysts' (`spiffe://lacnet/analyst/<name>`);
//! - a **council CA** signs the site agent's server certificate, the council
//!   case system's client certificate (`spiffe://lacnet/council/<name>`, which
//!   may only push records) and an operator's (`spiffe://lacnet/operator/<name>`,
//!   for status, preview and erasure).

use std::path::{Path, PathBuf};

use lacnet_tls::Peer;
use lacnet_tls::dev::{DevCa, IssuedCert};

use crate::Outcome;
use crate::config::{ConfigFile, EndpointFile};
use crate::error::CliError;

/// `lacnet certs`'s flags: a whole PKI, or with `add-*` one more certificate.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub add: Option<CertsAdd>,
    /// Directory to write into (and, with add-*, the PKI to issue from).
    #[arg(long, short, default_value = "lacnet-dev-pki", global = true)]
    pub out: PathBuf,
    /// ONS code of a site to issue a hub client certificate for (repeat).
    #[arg(long = "site", default_values_t = ["E06000034".to_owned()])]
    pub sites: Vec<String>,
    /// Analyst name.
    #[arg(long, default_value = "analyst")]
    pub analyst: String,
    /// Council (case system) name.
    #[arg(long, default_value = "council")]
    pub council: String,
    /// Operator name (status, preview and erase use the operator's certificate).
    #[arg(long, default_value = "operator")]
    pub operator: String,
    /// DNS name on the hub's certificate.
    #[arg(long, default_value = "hub.lacnet")]
    pub hub_name: String,
    /// DNS name on the site agent's certificate.
    #[arg(long, default_value = "agent.lacnet")]
    pub agent_name: String,
}

/// Certificates issued later from the CA keys `lacnet certs` kept.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertsAdd {
    /// A hub client certificate for a new site (network CA): site-CODE.pem and .key.
    #[command(name = "add-site")]
    Site {
        /// The site's ONS code, e.g. E06000046.
        code: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
    /// A client certificate for a new analyst (network CA): analyst-NAME.pem and .key.
    #[command(name = "add-analyst")]
    Analyst {
        /// The analyst's name (a-z 0-9 . _ -).
        name: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
    /// A client certificate for a new council operator (council CA): operator-NAME.pem and .key.
    #[command(name = "add-operator")]
    Operator {
        /// The operator's name (a-z 0-9 . _ -).
        name: String,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        force: bool,
    },
}

/// `lacnet certs`: issues the PKI (or one more certificate) and lists what it wrote.
pub fn command(args: CertsArgs) -> Result<Outcome, CliError> {
    let out = &args.out;
    if let Some(add) = args.add {
        let (addition, force, what) = match add {
            CertsAdd::Site { code, force } => (Addition::Site(code), force, "site"),
            CertsAdd::Analyst { name, force } => (Addition::Analyst(name), force, "analyst"),
            CertsAdd::Operator { name, force } => (Addition::Operator(name), force, "operator"),
        };
        let pair = self::add(out, &addition, force)?;
        println!(
            "{what} certificate {} (+ .key), issued from the CA kept in {}",
            pair.cert.display(),
            out.display()
        );
        return Ok(Outcome::Done);
    }
    let issued = issue(
        out,
        &CertSpec {
            sites: args.sites,
            analyst: args.analyst,
            council: args.council,
            operator: args.operator,
            hub_name: args.hub_name,
            agent_name: args.agent_name,
        },
    )?;
    print_issued(&issued, out);
    Ok(Outcome::Done)
}

/// Lists every file [`issue`] wrote, and warns about the CA keys.
fn print_issued(issued: &Issued, out: &Path) {
    println!(
        "development PKI written to {} (not for production keys):",
        out.display()
    );
    println!("  network CA     {}", issued.network_ca.display());
    let pair = |what: &str, p: &Pair| println!("  {what:<14} {} (+ .key)", p.cert.display());
    pair("hub", &issued.hub);
    for (code, p) in &issued.sites {
        println!("  site {code} {} (+ .key)", p.cert.display());
    }
    pair("analyst", &issued.analyst);
    println!("  council CA     {}", issued.council_ca.display());
    pair("site agent", &issued.agent);
    pair("council client", &issued.council);
    pair("operator", &issued.operator);
    println!(
        "  CLI settings   {}  (export LACNET_CONFIG={})",
        issued.config.display(),
        issued.config.display()
    );
    println!(
        "warning: the CA keys {} and {} (mode 0600) can issue any identity in this network. \
         Keep them private and never commit them; `lacnet certs add-site CODE --out {}` \
         (add-analyst, add-operator) issues from them.",
        issued.network_ca_key.display(),
        issued.council_ca_key.display(),
        out.display()
    );
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// ONS codes of the sites to issue hub client certificates for.
    pub sites: Vec<String>,
    /// Analyst name.
    pub analyst: String,
    /// Council (case system) name.
    pub council: String,
    /// Operator name.
    pub operator: String,
    /// DNS name on the hub's certificate.
    pub hub_name: String,
    /// DNS name on the site agent's certificate.
    pub agent_name: String,
}

/// Paths of a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// Every file [`issue`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The network CA certificate.
    pub network_ca: PathBuf,
    /// The network CA's private key (mode 0600).
    pub network_ca_key: PathBuf,
    /// The hub's server certificate.
    pub hub: Pair,
    /// Each site's client certificate for the hub, by ONS code.
    pub sites: Vec<(String, Pair)>,
    /// The analyst's client certificate.
    pub analyst: Pair,
    /// The council CA certificate.
    pub council_ca: PathBuf,
    /// The council CA's private key (mode 0600).
    pub council_ca_key: PathBuf,
    /// The site agent's server certificate.
    pub agent: Pair,
    /// The council case system's client certificate.
    pub council: Pair,
    /// The operator's client certificate.
    pub operator: Pair,
    /// A `lacnet.toml` naming the council, operator and analyst certificates.
    pub config: PathBuf,
}

/// Writes `text` to `path`, private keys with mode 0600.
pub fn write_file(path: &Path, text: &str, private: bool) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| CliError::io("cannot write", path, e))
}

/// Writes a certificate and its key as `<stem>.pem` and `<stem>.key` (mode 0600) in `dir`.
pub(crate) fn save(dir: &Path, stem: &str, cert: &IssuedCert) -> Result<Pair, CliError> {
    let pair = Pair {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    write_file(&pair.cert, &cert.cert_pem, false)?;
    write_file(&pair.key, &cert.key_pem, true)?;
    Ok(pair)
}

/// Issues the whole development PKI into `dir` (created if missing); refuses
/// a directory that already holds one.
pub fn issue(dir: &Path, spec: &CertSpec) -> Result<Issued, CliError> {
    // A new CA over an old one orphans every certificate already deployed:
    // exactly the re-issue-everything that keeping the CA keys avoids.
    if dir.join(NETWORK_CA).exists() || dir.join(NETWORK_CA_KEY).exists() {
        return Err(CliError::PkiExists {
            dir: dir.to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("cannot create", dir, e))?;
    for code in &spec.sites {
        check_identity(&Peer::Site(code.clone()))?;
    }
    check_identity(&Peer::Analyst(spec.analyst.clone()))?;
    check_identity(&Peer::Council(spec.council.clone()))?;
    check_identity(&Peer::Operator(spec.operator.clone()))?;
    let network = DevCa::new("lacnet development network CA").map_err(CliError::Generate)?;
    let (network_ca, network_ca_key) = keep_ca(dir, &network, NETWORK_CA, NETWORK_CA_KEY)?;
    let hub = issue_server(dir, &network, "hub", &spec.hub_name)?;
    let mut sites = Vec::new();
    for code in &spec.sites {
        let pair = issue_client(dir, &network, Peer::Site(code.clone()))?;
        sites.push((code.clone(), pair));
    }
    let analyst = issue_client(dir, &network, Peer::Analyst(spec.analyst.clone()))?;

    let council_ca_dev = DevCa::new(&format!("{} council CA (development)", spec.council))
        .map_err(CliError::Generate)?;
    let (council_ca, council_ca_key) = keep_ca(dir, &council_ca_dev, COUNCIL_CA, COUNCIL_CA_KEY)?;
    let agent = issue_server(dir, &council_ca_dev, "agent", &spec.agent_name)?;
    let council = issue_client(dir, &council_ca_dev, Peer::Council(spec.council.clone()))?;
    let operator = issue_client(dir, &council_ca_dev, Peer::Operator(spec.operator.clone()))?;
    let issued = Issued {
        network_ca,
        network_ca_key,
        hub,
        sites,
        analyst,
        council_ca,
        council_ca_key,
        agent,
        council,
        operator,
        config: dir.join("lacnet.toml"),
    };
    write_config(&issued, spec)?;
    Ok(issued)
}

/// Writes a CA's certificate and (mode 0600) private key into `dir`.
fn keep_ca(dir: &Path, ca: &DevCa, cert: &str, key: &str) -> Result<(PathBuf, PathBuf), CliError> {
    let (cert, key) = (dir.join(cert), dir.join(key));
    write_file(&cert, &ca.ca_pem(), false)?;
    write_file(&key, &ca.key_pem(), true)?;
    Ok((cert, key))
}

/// A server certificate for `name`, saved as `<stem>.pem` and `.key`.
fn issue_server(dir: &Path, ca: &DevCa, stem: &str, name: &str) -> Result<Pair, CliError> {
    let cert = ca.issue_server(&[name]).map_err(CliError::Generate)?;
    save(dir, stem, &cert)
}

/// A client certificate for `peer`, saved under the peer's file stem
/// (`site-CODE`, `analyst-NAME`, ...).
fn issue_client(dir: &Path, ca: &DevCa, peer: Peer) -> Result<Pair, CliError> {
    let cert = ca.issue(&peer, &[]).map_err(CliError::Generate)?;
    save(dir, &stem(&peer), &cert)
}

/// The file stem of a peer's certificate and key.
fn stem(peer: &Peer) -> String {
    match peer {
        Peer::Site(code) => format!("site-{code}"),
        Peer::Analyst(name) => format!("analyst-{name}"),
        Peer::Council(name) => format!("council-{name}"),
        Peer::Operator(name) => format!("operator-{name}"),
    }
}

/// The `lacnet.toml` naming the council, operator and analyst certificates.
fn write_config(issued: &Issued, spec: &CertSpec) -> Result<(), CliError> {
    // Paths in lacnet.toml are relative to the file, so the directory can move.
    let rel = |p: &Path| p.file_name().map(PathBuf::from);
    let file = ConfigFile {
        agent: EndpointFile {
            url: Some(crate::config::DEFAULT_AGENT_URL.into()),
            server_name: Some(spec.agent_name.clone()),
            ca: rel(&issued.council_ca),
            cert: rel(&issued.council.cert),
            key: rel(&issued.council.key),
            operator_cert: rel(&issued.operator.cert),
            operator_key: rel(&issued.operator.key),
        },
        hub: EndpointFile {
            url: Some(crate::config::DEFAULT_HUB_URL.into()),
            server_name: Some(spec.hub_name.clone()),
            ca: rel(&issued.network_ca),
            cert: rel(&issued.analyst.cert),
            key: rel(&issued.analyst.key),
            ..EndpointFile::default()
        },
    };
    write_file(
        &issued.config,
        &format!(
            "# lacnet CLI settings: written by `lacnet certs`. Use with --config or LACNET_CONFIG.\n{}",
            file.to_toml()
        ),
        false,
    )
}

/// Refuses an identity that would not survive its own SPIFFE URI: a site
/// code that is not an ONS code, or a name with characters lacnet does not allow.
fn check_identity(peer: &Peer) -> Result<(), CliError> {
    if Peer::from_spiffe(&peer.spiffe_id()).is_some() {
        return Ok(());
    }
    Err(match peer {
        Peer::Site(code) => CliError::NotAnOnsCode { code: code.clone() },
        Peer::Analyst(name) => CliError::BadName {
            role: "analyst",
            name: name.clone(),
        },
        Peer::Council(name) => CliError::BadName {
            role: "council",
            name: name.clone(),
        },
        Peer::Operator(name) => CliError::BadName {
            role: "operator",
            name: name.clone(),
        },
    })
}

const NETWORK_CA: &str = "network-ca.pem";
const NETWORK_CA_KEY: &str = "network-ca.key";
const COUNCIL_CA: &str = "council-ca.pem";
const COUNCIL_CA_KEY: &str = "council-ca.key";

/// What to add to an existing development PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addition {
    /// A site's hub client certificate (network CA).
    Site(String),
    /// An analyst's client certificate (network CA).
    Analyst(String),
    /// A council operator's client certificate (council CA).
    Operator(String),
}

fn load_ca(dir: &Path, cert: &str, key: &str) -> Result<DevCa, CliError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            CliError::io(
                "cannot read (run `lacnet certs --out DIR` first; it keeps the CA keys there)",
                &path,
                e,
            )
        })
    };
    DevCa::load(&read(cert)?, &read(key)?).map_err(CliError::Generate)
}

/// Issues one more certificate from the CA keys kept in `dir` by [`issue`],
/// so a council or analyst joins without re-issuing anyone else's. Refuses
/// to replace an existing certificate unless `force` (renewal).
pub fn add(dir: &Path, addition: &Addition, force: bool) -> Result<Pair, CliError> {
    let (peer, ca, ca_key) = match addition {
        Addition::Site(code) => (Peer::Site(code.clone()), NETWORK_CA, NETWORK_CA_KEY),
        Addition::Analyst(name) => (Peer::Analyst(name.clone()), NETWORK_CA, NETWORK_CA_KEY),
        Addition::Operator(name) => (Peer::Operator(name.clone()), COUNCIL_CA, COUNCIL_CA_KEY),
    };
    check_identity(&peer)?;
    let cert_path = dir.join(format!("{}.pem", stem(&peer)));
    if cert_path.exists() && !force {
        return Err(CliError::CertificateExists { path: cert_path });
    }
    issue_client(dir, &load_ca(dir, ca, ca_key)?, peer)
}
