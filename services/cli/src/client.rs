//! Opening mTLS channels to a site agent or the hub, with errors that say
//! what to fix: a missing or expired certificate, a server that is not
//! there, or a server certificate from another CA.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_tls::{PemBundle, TlsError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tonic::transport::Channel;

use crate::config::Endpoint;
use crate::error::{CliError, short};

/// Largest reply accepted (a network summary over many sites is a few MB at most).
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Reads the endpoint's TLS files and checks the client certificate's dates.
pub fn load_tls(ep: &Endpoint) -> Result<PemBundle, CliError> {
    let pem = PemBundle::load(&ep.tls)?;
    check_dates(&ep.tls.cert, &pem.cert, SystemTime::now())?;
    Ok(pem)
}

/// Refuses a certificate that has expired or is not valid yet, before any
/// handshake (where the server would only say "bad certificate").
pub fn check_dates(path: &Path, pem: &[u8], now: SystemTime) -> Result<(), CliError> {
    let bad = |detail: String| CliError::Certificate {
        path: path.to_owned(),
        detail,
    };
    let der = CertificateDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(format!("does not parse as X.509: {e}")))?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(bad(format!(
            "the certificate expired on {}: issue a new one (`lacnet certs` for development)",
            validity.not_after
        )));
    }
    if now < validity.not_before.timestamp() {
        return Err(bad(format!(
            "the certificate is not valid until {}: check this machine's clock",
            validity.not_before
        )));
    }
    Ok(())
}

/// Connects to the endpoint now.
pub async fn channel(ep: &Endpoint) -> Result<Channel, CliError> {
    let pem = load_tls(ep)?;
    lacnet_tls::connect(&ep.url, &pem, &ep.server_name)
        .await
        .map_err(|e| connect_error(ep, e))
}

/// A site agent client.
pub async fn agent(ep: &Endpoint) -> Result<SiteAgentClient<Channel>, CliError> {
    Ok(SiteAgentClient::new(channel(ep).await?).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// A hub Reports client.
pub async fn reports(ep: &Endpoint) -> Result<ReportsClient<Channel>, CliError> {
    Ok(ReportsClient::new(channel(ep).await?).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// Whether `e` is rustls refusing the server's certificate, found by type:
/// directly, or inside an `io::Error` (whose `source` skips the error it
/// wraps, so the wrapped error is read with `get_ref`).
fn certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    matches!(tls, Some(rustls::Error::InvalidCertificate(_)))
}

fn connect_error(ep: &Endpoint, e: TlsError) -> CliError {
    let TlsError::Connect { source, .. } = &e else {
        return CliError::Tls(e);
    };
    // The innermost cause is the one that says what happened.
    let mut cause: &dyn std::error::Error = source;
    let mut refused_certificate = certificate_error(cause);
    while let Some(next) = cause.source() {
        cause = next;
        refused_certificate = refused_certificate || certificate_error(cause);
    }
    let detail = short(&cause.to_string());
    let hint = if refused_certificate {
        format!(
            "{detail} (the server's certificate does not chain to {}, or does not name {})",
            ep.tls.ca.display(),
            ep.server_name
        )
    } else {
        detail
    };
    CliError::Unreachable {
        service: ep.service.name(),
        url: ep.url.clone(),
        detail: hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_refusals_are_recognised_by_type_not_text() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(certificate_error(&refused));
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        assert!(certificate_error(&wrapped));
        // Text that merely mentions it is not the error.
        let text = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert!(!certificate_error(&text));
        assert!(!certificate_error(&rustls::Error::DecryptError));
    }
    use std::time::Duration;

    #[test]
    fn expired_and_future_certificates_are_named() {
        let ca = lacnet_tls::dev::DevCa::new("t").unwrap();
        let leaf = ca.issue_server(&["x"]).unwrap();
        let p = Path::new("client.pem");
        check_dates(p, leaf.cert_pem.as_bytes(), SystemTime::now()).unwrap();
        // rcgen's default validity ends in 4096.
        let far = UNIX_EPOCH + Duration::from_secs(2_200 * 365 * 86_400);
        let err = check_dates(p, leaf.cert_pem.as_bytes(), far)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expired") && err.contains("client.pem"),
            "{err}"
        );
        let err = check_dates(p, leaf.cert_pem.as_bytes(), UNIX_EPOCH)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid until"), "{err}");
    }
}
