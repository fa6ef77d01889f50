//! Opening mTLS channels to a site agent or the hub, with errors that say
//! what to fix: a missing or expired certificate, a server that is not
//! there, or a server certificate from another CA.

use std::path::Path;

use lacnet_clock::Clock;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_tls::{PemBundle, TlsError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tonic::transport::Channel;

use crate::config::Endpoint;
use crate::error::{CertificateProblem, CliError, short};

/// Largest reply accepted (a network summary over many sites is a few MB at most).
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Reads the endpoint's TLS files and checks the client certificate's dates
/// against `clock`.
pub fn load_tls(ep: &Endpoint, clock: &dyn Clock) -> Result<PemBundle, CliError> {
    let pem = PemBundle::load(&ep.tls)?;
    check_dates(&ep.tls.cert, &pem.cert, clock.now_unix())?;
    Ok(pem)
}

/// Refuses a certificate that has expired or is not valid yet, before any
/// handshake (where the server would only say "bad certificate"). `now` is
/// in seconds since the Unix epoch.
pub fn check_dates(path: &Path, pem: &[u8], now: i64) -> Result<(), CliError> {
    let bad = |problem: CertificateProblem| CliError::Certificate {
        path: path.to_owned(),
        problem,
    };
    let der = CertificateDer::from_pem_slice(pem)
        .map_err(|e| bad(CertificateProblem::NotPem(e.to_string())))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(CertificateProblem::NotX509(e.to_string())))?;
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(bad(CertificateProblem::Expired(
            validity.not_after.to_string(),
        )));
    }
    if now < validity.not_before.timestamp() {
        return Err(bad(CertificateProblem::NotYetValid(
            validity.not_before.to_string(),
        )));
    }
    Ok(())
}

/// Connects to the endpoint now.
pub async fn channel(ep: &Endpoint, clock: &dyn Clock) -> Result<Channel, CliError> {
    let pem = load_tls(ep, clock)?;
    lacnet_tls::connect(&ep.url, &pem, &ep.server_name)
        .await
        .map_err(|e| connect_error(ep, e))
}

/// A site agent client.
pub async fn agent(ep: &Endpoint, clock: &dyn Clock) -> Result<SiteAgentClient<Channel>, CliError> {
    Ok(SiteAgentClient::new(channel(ep, clock).await?).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// A hub Reports client.
pub async fn reports(ep: &Endpoint, clock: &dyn Clock) -> Result<ReportsClient<Channel>, CliError> {
    Ok(ReportsClient::new(channel(ep, clock).await?).max_decoding_message_size(MAX_REPLY_BYTES))
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

    #[test]
    fn expired_and_future_certificates_are_named() {
        let ca = lacnet_tls::dev::DevCa::new("t").unwrap();
        let leaf = ca.issue_server(&["x"]).unwrap();
        let p = Path::new("client.pem");
        let today = lacnet_clock::MockClock::at_date("2025-06-30").unwrap();
        check_dates(p, leaf.cert_pem.as_bytes(), today.now_unix()).unwrap();
        // rcgen's default validity ends in 4096.
        let far = 2_200 * 365 * 86_400;
        let err = check_dates(p, leaf.cert_pem.as_bytes(), far).unwrap_err();
        assert!(
            matches!(&err, CliError::Certificate { path, problem: CertificateProblem::Expired(_) } if path == p),
            "{err}"
        );
        let err = check_dates(p, leaf.cert_pem.as_bytes(), 0).unwrap_err();
        assert!(
            matches!(
                err,
                CliError::Certificate {
                    problem: CertificateProblem::NotYetValid(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn load_tls_judges_the_certificate_by_the_clock_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let ca = lacnet_tls::dev::DevCa::new("t").unwrap();
        let leaf = ca
            .issue(&lacnet_tls::Peer::Analyst("a".into()), &[])
            .unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ep = Endpoint {
            service: crate::error::Service::Hub,
            url: "https://127.0.0.1:1".into(),
            server_name: "hub.lacnet".into(),
            tls: lacnet_tls::TlsPaths {
                ca: file("ca.pem", &ca.ca_pem()),
                cert: file("analyst.pem", &leaf.cert_pem),
                key: file("analyst.key", &leaf.key_pem),
                crls: Vec::new(),
            },
        };
        let today = lacnet_clock::MockClock::at_date("2025-06-30").unwrap();
        load_tls(&ep, &today).unwrap();
        // The same files, the day after rcgen's default validity ends.
        let later = lacnet_clock::MockClock::at_date("4096-01-02").unwrap();
        let err = load_tls(&ep, &later).unwrap_err();
        assert!(
            matches!(&err, CliError::Certificate { path, problem: CertificateProblem::Expired(_) } if path == &ep.tls.cert),
            "{err}"
        );
    }
}
