//! The CLI's error type: short messages that say what to do next. Each one
//! names the file, the endpoint or the CSV line and column at fault, and
//! never carries an identifier from the data.

use std::path::PathBuf;

/// Everything a `lacnet` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A connection setting is in no flag, variable or config file.
    #[error(
        "no {service} {key} file: pass {flag}, set {env}, or put `{key} = \"...\"` under [{section}] in lacnet.toml (`lacnet certs` writes one)"
    )]
    MissingSetting {
        /// "site agent" or "hub".
        service: &'static str,
        /// The key in `lacnet.toml`, e.g. `operator_cert`.
        key: &'static str,
        /// The flag that sets it, e.g. `--operator-cert`.
        flag: &'static str,
        /// The variable that sets it, e.g. `LACNET_OPERATOR_CERT`.
        env: &'static str,
        /// The `lacnet.toml` section, `agent` or `hub`.
        section: &'static str,
    },
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "cannot read the CSV file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file does not parse.
    #[error("{path}: {problem}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and what.
        problem: TomlProblem,
    },
    /// A mapping file (`lacnet import --map`) is refused.
    #[error("{path}: {source}")]
    Mapping {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: crate::mapping::MappingError,
    },
    /// The CSV file's header lacks columns lacnet needs.
    #[error("{path}: line 1: {source}")]
    Header {
        /// The CSV file.
        path: PathBuf,
        /// What the header lacks.
        source: crate::csv_format::HeaderError,
    },
    /// The CSV cannot be read at all (as opposed to one bad row, which is rejected).
    #[error("{path}: line {line}: {source}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What the reader said.
        source: csv::Error,
    },
    /// A row the CLI generated itself does not read back (bench): a bug.
    #[error("{path}: line {line}: {}", problems.iter().map(|p| format!("{}: {}", p.field, p.reason)).collect::<Vec<_>>().join("; "))]
    GeneratedRowUnreadable {
        /// The generated file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the row.
        problems: Vec<crate::csv_format::Problem>,
    },
    /// CSV output could not be written.
    #[error("cannot write CSV: {0}")]
    CsvWrite(#[from] csv::Error),
    /// JSON output could not be written.
    #[error("cannot write JSON: {0}")]
    JsonWrite(#[from] serde_json::Error),
    /// Loading or using TLS material failed.
    #[error(transparent)]
    Tls(#[from] lacnet_tls::TlsError),
    /// A certificate cannot be used as it is (expired, not yet valid, not a certificate).
    #[error("{path}: {problem}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        problem: CertificateProblem,
    },
    /// The server could not be reached.
    #[error("cannot reach the {service} at {url}: {detail}. Is it running, and is the URL right?")]
    Unreachable {
        /// "site agent" or "hub".
        service: &'static str,
        /// The URL we tried.
        url: String,
        /// The transport error, shortened.
        detail: String,
    },
    /// The server refused the caller's certificate for this call.
    #[error("the {service} refused this certificate: {detail}. {hint}")]
    Refused {
        /// "site agent" or "hub".
        service: &'static str,
        /// The server's message.
        detail: String,
        /// Which certificate role the call needs.
        hint: &'static str,
    },
    /// The server answered with an error.
    #[error("the {service} answered {code:?}: {detail}")]
    Rpc {
        /// "site agent" or "hub".
        service: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The server's message.
        detail: String,
    },
    /// A period given on the command line does not parse.
    #[error("period {value:?}: {source} (use YYYY-Qn or YYYY-MM)")]
    Period {
        /// What was given.
        value: String,
        /// Why it is not a period.
        source: lacnet_core::period::PeriodError,
    },
    /// A date does not parse or does not exist.
    #[error("{what} {value:?}: {source}")]
    Date {
        /// Which date, e.g. `--until`.
        what: &'static str,
        /// What was given.
        value: String,
        /// Why it is not a date.
        source: lacnet_core::date::DateError,
    },
    /// `lacnet generate` knows no site profile by this name.
    #[error("no site profile {name:?}; profiles: {known}")]
    UnknownProfile {
        /// The name given.
        name: String,
        /// The profiles there are, comma-separated.
        known: String,
    },
    /// A key id the key file format does not allow.
    #[error("key id {id:?}: {source}")]
    KeyId {
        /// The id given.
        id: String,
        /// Why it is refused.
        source: lacnet_core::pseudonym::KeyError,
    },
    /// Fresh key bytes were refused as a key.
    #[error(transparent)]
    Key(#[from] lacnet_core::pseudonym::KeyError),
    /// `lacnet keygen` never overwrites a key without `--force`.
    #[error("{} already exists: a key is never overwritten by accident (pass --force)", path.display())]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// `lacnet certs` never issues a new PKI over an old one.
    #[error(
        "{} already holds a PKI: add to it with `lacnet certs add-site CODE --out {}` (add-analyst, \
         add-operator), or pass another --out (a new PKI's certificates do not chain to this one's)",
        dir.display(),
        dir.display()
    )]
    PkiExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `lacnet certs add-*` never replaces a certificate without `--force`.
    #[error("{} exists: pass --force to issue a new certificate in its place (renewal)", path.display())]
    CertificateExists {
        /// The certificate file.
        path: PathBuf,
    },
    /// A site code for a certificate is not an ONS code.
    #[error("{code:?} is not an ONS code (a letter E, W, S or N and eight digits, e.g. E06000034)")]
    NotAnOnsCode {
        /// What was given.
        code: String,
    },
    /// A name for a certificate identity has characters lacnet does not allow.
    #[error("{role} name {name:?}: use 1 to 64 of a-z 0-9 . _ -")]
    BadName {
        /// "analyst", "council" or "operator".
        role: &'static str,
        /// What was given.
        name: String,
    },
    /// Generating a development certificate failed.
    #[error("{0}")]
    Generate(#[source] lacnet_tls::TlsError),
    /// Starting, running or stopping an in-process service (demo, bench) failed.
    #[error("{what}: {source}")]
    InProcess {
        /// What we were doing, e.g. "opening the hub".
        what: String,
        /// The service's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An in-process service did not answer its health check in time.
    #[error("{service} at {url} did not become ready")]
    NotReady {
        /// The gRPC service name.
        service: String,
        /// Where it should be.
        url: String,
    },
    /// An agent rejected rows the CLI generated itself (demo, bench): a bug.
    #[error("the {agent} agent rejected {rejected} generated rows{}", rejects.as_ref().map(|p| format!("; see {}", p.display())).unwrap_or_default())]
    GeneratedRowsRejected {
        /// Which agent.
        agent: String,
        /// How many rows.
        rejected: u64,
        /// The rejects file, when there is one.
        rejects: Option<PathBuf>,
    },
    /// A demo agent's outbox did not drain in time.
    #[error("the {site} outbox did not drain: {waiting} waiting; last error: {last_error}")]
    OutboxStuck {
        /// The site's name.
        site: String,
        /// Submissions still waiting.
        waiting: u64,
        /// The agent's last push error.
        last_error: String,
    },
    /// A background task of this process failed.
    #[error("{what}: {source}")]
    Task {
        /// Which task, e.g. "the import task failed".
        what: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
    /// `lacnet erase` was given no id to erase by.
    #[error("pass --nhs-number or --case-id")]
    NoPersonId,
    /// The agent confirmed fewer records of an import chunk than were sent.
    #[error(
        "the site agent received {received} of {sent} records in a chunk; nothing after line {first_line} was confirmed"
    )]
    ShortChunk {
        /// Records the agent received.
        received: u64,
        /// Records sent.
        sent: u64,
        /// The chunk's first line in the file.
        first_line: u64,
    },
}

/// Where a TOML file stops parsing, and what the parser said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", position.map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default())]
pub struct TomlProblem {
    /// 1-based line and column, when the parser knows them.
    pub position: Option<(usize, usize)>,
    /// What the parser said.
    pub message: String,
}

impl TomlProblem {
    /// The problem `e` found in `text`.
    pub fn new(text: &str, e: &toml::de::Error) -> TomlProblem {
        let position = e.span().map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            (line, column)
        });
        TomlProblem {
            position,
            message: e.message().to_owned(),
        }
    }
}

/// Why a certificate file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// The file holds no PEM certificate.
    #[error("not a PEM certificate: {0}")]
    NotPem(String),
    /// The certificate does not parse.
    #[error("does not parse as X.509: {0}")]
    NotX509(String),
    /// Its validity ended.
    #[error("the certificate expired on {0}: issue a new one (`lacnet certs` for development)")]
    Expired(String),
    /// Its validity has not started.
    #[error("the certificate is not valid until {0}: check this machine's clock")]
    NotYetValid(String),
}

impl CliError {
    /// An error of an in-process service, while doing `what`.
    pub fn in_process(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CliError {
        CliError::InProcess {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> CliError {
        CliError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Which side of the network a call goes to, so errors can say what certificate it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A council's site agent: needs a council certificate.
    Agent,
    /// The network hub: needs an analyst (or site) certificate.
    Hub,
}

impl Service {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Agent => "site agent",
            Service::Hub => "hub",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Service::Agent => {
                "Site agent calls need a council client certificate (spiffe://lacnet/council/<name>) from the council CA"
            }
            Service::Hub => {
                "Reports need an analyst certificate (spiffe://lacnet/analyst/<name>) from the network CA"
            }
        }
    }

    /// Turns a failed call into a short, actionable error.
    pub fn status_error(self, url: &str, status: tonic::Status) -> CliError {
        use tonic::Code;
        let detail = short(status.message());
        match status.code() {
            Code::Unavailable => CliError::Unreachable {
                service: self.name(),
                url: url.to_owned(),
                detail,
            },
            Code::PermissionDenied | Code::Unauthenticated => CliError::Refused {
                service: self.name(),
                detail,
                hint: self.hint(),
            },
            code => CliError::Rpc {
                service: self.name(),
                code,
                detail,
            },
        }
    }
}

/// The first line of a message, capped, so a nested transport error stays readable.
pub fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    if line.chars().count() > 200 {
        let cut: String = line.chars().take(200).collect();
        format!("{cut}...")
    } else if line.is_empty() {
        "no detail".to_owned()
    } else {
        line.to_owned()
    }
}
