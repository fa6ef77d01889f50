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

use crate::config::{ConfigFile, EndpointFile};
use crate::error::CliError;

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

fn gen_err(e: lacnet_tls::TlsError) -> CliError {
    CliError::Generate(e.to_string())
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

fn save(dir: &Path, stem: &str, cert: &IssuedCert) -> Result<Pair, CliError> {
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
        return Err(CliError::Invalid(format!(
            "{} already holds a PKI: add to it with `lacnet certs add-site CODE --out {}` (add-analyst, \
             add-operator), or pass another --out (a new PKI's certificates do not chain to this one's)",
            dir.display(),
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("cannot create", dir, e))?;
    for code in &spec.sites {
        if Peer::from_spiffe(&Peer::Site(code.clone()).spiffe_id()).is_none() {
            return Err(CliError::Invalid(format!(
                "{code:?} is not an ONS code (a letter E, W, S or N and eight digits, e.g. E06000034)"
            )));
        }
    }
    for (what, name) in [
        ("analyst", &spec.analyst),
        ("council", &spec.council),
        ("operator", &spec.operator),
    ] {
        if Peer::from_spiffe(&format!("spiffe://lacnet/{what}/{name}")).is_none() {
            return Err(CliError::Invalid(format!(
                "{what} name {name:?}: use 1 to 64 of a-z 0-9 . _ -"
            )));
        }
    }
    let network = DevCa::new("lacnet development network CA").map_err(gen_err)?;
    let network_ca = dir.join(NETWORK_CA);
    write_file(&network_ca, &network.ca_pem(), false)?;
    let network_ca_key = dir.join(NETWORK_CA_KEY);
    write_file(&network_ca_key, &network.key_pem(), true)?;
    let hub = save(
        dir,
        "hub",
        &network.issue_server(&[&spec.hub_name]).map_err(gen_err)?,
    )?;
    let mut sites = Vec::new();
    for code in &spec.sites {
        let cert = network
            .issue(&Peer::Site(code.clone()), &[])
            .map_err(gen_err)?;
        sites.push((code.clone(), save(dir, &format!("site-{code}"), &cert)?));
    }
    let analyst_cert = network
        .issue(&Peer::Analyst(spec.analyst.clone()), &[])
        .map_err(gen_err)?;
    let analyst = save(dir, &format!("analyst-{}", spec.analyst), &analyst_cert)?;

    let council_ca_dev =
        DevCa::new(&format!("{} council CA (development)", spec.council)).map_err(gen_err)?;
    let council_ca = dir.join(COUNCIL_CA);
    write_file(&council_ca, &council_ca_dev.ca_pem(), false)?;
    let council_ca_key = dir.join(COUNCIL_CA_KEY);
    write_file(&council_ca_key, &council_ca_dev.key_pem(), true)?;
    let agent = save(
        dir,
        "agent",
        &council_ca_dev
            .issue_server(&[&spec.agent_name])
            .map_err(gen_err)?,
    )?;
    let council_cert = council_ca_dev
        .issue(&Peer::Council(spec.council.clone()), &[])
        .map_err(gen_err)?;
    let council = save(dir, &format!("council-{}", spec.council), &council_cert)?;
    let operator_cert = council_ca_dev
        .issue(&Peer::Operator(spec.operator.clone()), &[])
        .map_err(gen_err)?;
    let operator = save(dir, &format!("operator-{}", spec.operator), &operator_cert)?;

    // Paths in lacnet.toml are relative to the file, so the directory can move.
    let rel = |p: &Path| p.file_name().map(PathBuf::from);
    let file = ConfigFile {
        agent: EndpointFile {
            url: Some(crate::config::DEFAULT_AGENT_URL.into()),
            server_name: Some(spec.agent_name.clone()),
            ca: rel(&council_ca),
            cert: rel(&council.cert),
            key: rel(&council.key),
            operator_cert: rel(&operator.cert),
            operator_key: rel(&operator.key),
        },
        hub: EndpointFile {
            url: Some(crate::config::DEFAULT_HUB_URL.into()),
            server_name: Some(spec.hub_name.clone()),
            ca: rel(&network_ca),
            cert: rel(&analyst.cert),
            key: rel(&analyst.key),
            ..EndpointFile::default()
        },
    };
    let config = dir.join("lacnet.toml");
    write_file(
        &config,
        &format!(
            "# lacnet CLI settings: written by `lacnet certs`. Use with --config or LACNET_CONFIG.\n{}",
            file.to_toml()
        ),
        false,
    )?;
    Ok(Issued {
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
        config,
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
    DevCa::load(&read(cert)?, &read(key)?).map_err(gen_err)
}

/// Issues one more certificate from the CA keys kept in `dir` by [`issue`],
/// so a council or analyst joins without re-issuing anyone else's. Refuses
/// to replace an existing certificate unless `force` (renewal).
pub fn add(dir: &Path, addition: &Addition, force: bool) -> Result<Pair, CliError> {
    let (peer, ca, ca_key, stem) = match addition {
        Addition::Site(code) => (
            Peer::Site(code.clone()),
            NETWORK_CA,
            NETWORK_CA_KEY,
            format!("site-{code}"),
        ),
        Addition::Analyst(name) => (
            Peer::Analyst(name.clone()),
            NETWORK_CA,
            NETWORK_CA_KEY,
            format!("analyst-{name}"),
        ),
        Addition::Operator(name) => (
            Peer::Operator(name.clone()),
            COUNCIL_CA,
            COUNCIL_CA_KEY,
            format!("operator-{name}"),
        ),
    };
    if Peer::from_spiffe(&peer.spiffe_id()).is_none() {
        return Err(CliError::Invalid(match addition {
            Addition::Site(code) => format!(
                "{code:?} is not an ONS code (a letter E, W, S or N and eight digits, e.g. E06000034)"
            ),
            Addition::Analyst(n) | Addition::Operator(n) => {
                format!("name {n:?}: use 1 to 64 of a-z 0-9 . _ -")
            }
        }));
    }
    let cert_path = dir.join(format!("{stem}.pem"));
    if cert_path.exists() && !force {
        return Err(CliError::Invalid(format!(
            "{} exists: pass --force to issue a new certificate in its place (renewal)",
            cert_path.display()
        )));
    }
    let ca = load_ca(dir, ca, ca_key)?;
    let cert = ca.issue(&peer, &[]).map_err(gen_err)?;
    save(dir, &stem, &cert)
}
