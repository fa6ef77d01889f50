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
    /// Stored records use a key that is not in the ring, or a key cannot be retired yet.
    #[error("key ring: {0}")]
    KeyRing(String),
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
            AgentError::InvalidArgument { .. } => tonic::Status::invalid_argument(e.to_string()),
            AgentError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            AgentError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            AgentError::KeyRing(_) => tonic::Status::failed_precondition(e.to_string()),
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
