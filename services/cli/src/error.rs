//! The CLI's error type: short messages that say what to do next. Each one
//! names the file, the endpoint or the CSV line and column at fault, and
//! never carries an identifier from the data.

use std::path::PathBuf;

/// Everything a `lacnet` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A setting is missing or contradicts another.
    #[error("{0}")]
    Config(String),
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
    /// A TOML file (the config or a mapping) does not parse.
    #[error("{path}: {detail}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The CSV cannot be read at all (as opposed to one bad row, which is rejected).
    #[error("{path}: line {line}: {detail}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// Loading or using TLS material failed.
    #[error(transparent)]
    Tls(#[from] lacnet_tls::TlsError),
    /// A certificate cannot be used as it is (expired, not yet valid, no lacnet identity).
    #[error("{path}: {detail}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        detail: String,
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
    /// A value given on the command line is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Generating keys or certificates failed.
    #[error("{0}")]
    Generate(String),
    /// Starting or stopping an in-process service (demo, bench) failed.
    #[error("{0}")]
    Service(String),
}

impl CliError {
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
