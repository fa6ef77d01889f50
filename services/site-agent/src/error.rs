//! The site agent's one error type, and how each kind reaches a gRPC caller.
//!
//! No variant ever carries a raw identifier, an exact age, a ward code or key
//! material: messages name files, fields, limits and key ids only. Internal
//! failures are logged in full here and reach the caller as a terse `INTERNAL`.

use std::path::PathBuf;

/// Everything that can go wrong in the site agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable (a bad flag value or a missing setting).
    #[error("configuration: {0}")]
    Config(String),
    /// A key file could not be read or holds an unusable secret.
    #[error("key {id} ({path}): {reason}")]
    Key {
        /// The key id given on the command line.
        id: String,
        /// The key file.
        path: PathBuf,
        /// Why it was refused (never the content).
        reason: String,
    },
    /// The key ring itself is unusable (no key, or two keys with one id).
    #[error("key ring: {0}")]
    KeyRing(String),
    /// Stored records were written with keys the ring lacks: they could not
    /// be matched or erased, so the agent does not start.
    #[error(
        "key ring: stored records were written with key(s) {} that are not in the key ring: \
         add their key files back (after the newest), or run `retire-key` once no record uses them",
        ids.join(", ")
    )]
    KeysMissing {
        /// The key ids the ring lacks.
        ids: Vec<String>,
    },
    /// The data directory holds another series than the agent was started with.
    #[error(
        "data directory {dir}: it holds this site's {was} series, but the agent was started with \
         --granularity {now}. A site publishes one series. Start with --granularity {was}, or change \
         the series: set the site's granularity to {now:?} in the hub's registry and restart the hub \
         (it withdraws the {was} releases), then run `lacnet-site-agent reset-series --to {now}` with \
         the agent stopped (README, \"Changing a site's series\")",
        dir = path.display(), was = recorded.id(), now = configured.id()
    )]
    SeriesMismatch {
        /// The data directory.
        path: PathBuf,
        /// The series it holds.
        recorded: lacnet_core::Granularity,
        /// The series the agent was started with.
        configured: lacnet_core::Granularity,
    },
    /// TLS material is missing or unusable.
    #[error("TLS: {0}")]
    Tls(#[from] lacnet_tls::TlsError),
    /// The data directory could not be opened, or sled failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// The data directory cannot be used; names it and the cause.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The store hit an I/O error and takes no more writes until the agent restarts.
    #[error("{0}")]
    StoreFailed(String),
    /// Stored bytes could not be decoded (corruption or a newer format).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The request is malformed; names the field and the reason.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// What is wrong with it (never its value).
        reason: String,
    },
    /// Nothing matched (e.g. a preview for a period in the future).
    #[error("not found: {0}")]
    NotFound(String),
    /// The agent is shutting down or a background task has stopped.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The gRPC server failed (or its reflection service could not be built).
    #[error("{0}")]
    Serve(#[from] lacnet_server::grpc::ServeError),
    /// No revision number is left above the last one known for a period
    /// (it is already 2^64 − 1): the hub would refuse such a revision anyway.
    #[error("no revision number is left above {last} for {period}")]
    RevisionExhausted {
        /// The period, e.g. `2025-Q1`.
        period: String,
        /// The highest revision known for it.
        last: u64,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl AgentError {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AgentError {
        AgentError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<lacnet_proto::convert::FieldError> for AgentError {
    fn from(e: lacnet_proto::convert::FieldError) -> AgentError {
        AgentError::invalid(e.field, e.reason)
    }
}

impl From<tokio::task::JoinError> for AgentError {
    fn from(e: tokio::task::JoinError) -> Self {
        AgentError::Task(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<AgentError>> for AgentError {
    fn from(e: sled::transaction::TransactionError<AgentError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => AgentError::Storage(e),
        }
    }
}

impl From<AgentError> for tonic::Status {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::InvalidArgument {
                ref field,
                ref reason,
            } => lacnet_proto::status::invalid_argument(field, reason, e.to_string()),
            AgentError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            AgentError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            AgentError::KeyRing(_) | AgentError::KeysMissing { .. } => {
                tonic::Status::failed_precondition(e.to_string())
            }
            AgentError::StoreFailed(reason) => {
                tracing::error!(error = %reason, "write refused: the store has failed");
                tonic::Status::unavailable(
                    "the site agent cannot write to its disk and is restarting; retry later",
                )
            }
            other => {
                // The detail is for operators; callers learn only that it failed.
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error; see the site agent's logs")
            }
        }
    }
}
