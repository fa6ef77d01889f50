//! The hub's one error type, and how each kind reaches a caller as a gRPC status.
//!
//! Refusals (bad identity, wrong role, invalid or non-disclosive input) say
//! exactly what was wrong, naming the field or the metric and the rule.
//! Internal failures (storage, corrupt records) are logged in full with
//! `tracing::error!` and reach the caller only as a terse `INTERNAL`.

use std::path::PathBuf;

/// Everything that can go wrong in the hub, at startup or per request.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The caller presented no usable lacnet identity.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but its role may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A request field is missing or malformed; names the field and the reason.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field path, e.g. `submission.period`.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// A submission breaks the disclosure policy; each entry names a cell and a rule.
    #[error("disclosure policy violated: {}", .0.join("; "))]
    PolicyViolation(Vec<String>),
    /// The period is not of the series the registry fixes for the site.
    #[error("wrong series: {0}")]
    WrongSeries(String),
    /// The same site, period and revision was already stored with other content.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The site registry file could not be read or is invalid.
    #[error("site registry {path}: {reason}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS material could not be loaded or used.
    #[error("TLS: {0}")]
    Tls(#[from] lacnet_tls::TlsError),
    /// The sled database failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record could not be decoded (a bug or disk corruption).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Opening the data directory failed.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed (or its reflection service could not be built).
    #[error("{0}")]
    Serve(#[from] lacnet_server::grpc::ServeError),
    /// The store cannot write (an I/O error or a hung flush); the hub needs a restart.
    #[error("the hub's store cannot write: {0}")]
    Unavailable(String),
}

impl HubError {
    /// A shorthand for [`HubError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> HubError {
        HubError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The kind of error, for metric labels and audit entries.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HubError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            HubError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            HubError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            HubError::PolicyViolation(_) => ErrorKind::PolicyViolation,
            HubError::Conflict(_) => ErrorKind::Conflict,
            HubError::WrongSeries(_) => ErrorKind::WrongSeries,
            HubError::Registry { .. }
            | HubError::Tls(_)
            | HubError::Storage(_)
            | HubError::Corrupt(_)
            | HubError::DataDir { .. }
            | HubError::Serve(_)
            | HubError::Unavailable(_) => ErrorKind::Internal,
        }
    }

    /// Whether this is a refusal of the caller's request (as opposed to our own failure).
    pub fn is_refusal(&self) -> bool {
        self.kind() != ErrorKind::Internal
    }
}

lacnet_server::closed_label! {
    /// What kind of error a [`HubError`] is: a refusal of the caller's
    /// request, named as in metric labels and the audit log, or our own
    /// failure (`internal`).
    pub enum ErrorKind {
        /// No usable lacnet identity.
        Unauthenticated = "unauthenticated",
        /// The caller's role may not do this.
        PermissionDenied = "permission_denied",
        /// A request field is missing or malformed.
        InvalidArgument = "invalid_argument",
        /// Disclosive figures.
        PolicyViolation = "policy_violation",
        /// The revision is held with other content.
        Conflict = "conflict",
        /// Not the site's series.
        WrongSeries = "wrong_series",
        /// A failure inside the hub.
        Internal = "internal",
    }
}

impl From<lacnet_proto::convert::FieldError> for HubError {
    fn from(e: lacnet_proto::convert::FieldError) -> HubError {
        HubError::invalid(e.field, e.reason)
    }
}

impl From<HubError> for tonic::Status {
    fn from(e: HubError) -> tonic::Status {
        match e {
            HubError::Unauthenticated(_) => tonic::Status::unauthenticated(e.to_string()),
            HubError::PermissionDenied(_) => tonic::Status::permission_denied(e.to_string()),
            HubError::InvalidArgument {
                ref field,
                ref reason,
            } => lacnet_proto::status::invalid_argument(field, reason, e.to_string()),
            HubError::PolicyViolation(_) => tonic::Status::failed_precondition(e.to_string()),
            HubError::Conflict(_) => tonic::Status::already_exists(e.to_string()),
            HubError::WrongSeries(_) => tonic::Status::failed_precondition(e.to_string()),
            // Retryable: a restarted hub on a disk with space accepts the same call.
            HubError::Unavailable(_) => {
                tracing::error!(error = %e, "write refused");
                tonic::Status::unavailable(
                    "the hub cannot write to its disk; it is restarting, retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                tonic::Status::internal("internal error; see the hub's logs")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_and_internal_detail_stays_in_the_logs() {
        let s: tonic::Status = HubError::invalid("submission.period", "is in the future").into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            lacnet_proto::status::refused_fields(&s),
            vec!["submission.period"]
        );
        assert!(s.message().contains("is in the future"));
        let s: tonic::Status = HubError::PolicyViolation(vec!["metric a: x".into()]).into();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("metric a"));
        let s: tonic::Status = HubError::Corrupt("key 0xdeadbeef".into()).into();
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("deadbeef"));
        let s: tonic::Status = HubError::PermissionDenied("no".into()).into();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
    }
}
