//! The one place lacnet builds rustls configs: PEM files on disk → [`PemBundle`] →
//! [`server_config`] (client certificates required, checked against the CA and CRLs) or
//! [`client_config`]. Both pin the ring provider so no process-wide default is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::TlsError;

/// ALPN for gRPC: HTTP/2 only.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Where a service's TLS material lives on disk (typically a mounted Kubernetes secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM file with the lacnet CA certificate(s) that peers must chain to.
    pub ca: PathBuf,
    /// PEM file with this service's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with this service's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM files with certificate revocation lists issued by the CA; may be empty.
    pub crls: Vec<PathBuf>,
}

/// TLS material held in memory as PEM. Built from files by [`PemBundle::load`], or directly in
/// tests. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBundle {
    /// CA certificate(s) that peers must chain to.
    pub ca: Vec<u8>,
    /// This party's certificate chain, leaf first.
    pub cert: Vec<u8>,
    /// This party's private key.
    pub key: Vec<u8>,
    /// Certificate revocation lists, one PEM document each.
    pub crls: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PemBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemBundle")
            .field("ca_bytes", &self.ca.len())
            .field("cert_bytes", &self.cert.len())
            .field("key", &"<redacted>")
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl PemBundle {
    /// Reads every file and checks it parses, so a bad file fails at startup with its path in
    /// the error rather than later inside a handshake.
    pub fn load(paths: &TlsPaths) -> Result<PemBundle, TlsError> {
        let ca = read("CA", &paths.ca)?;
        let cert = read("certificate", &paths.cert)?;
        let key = read("private key", &paths.key)?;
        let crls = paths
            .crls
            .iter()
            .map(|p| read("CRL", p))
            .collect::<Result<Vec<_>, _>>()?;

        roots(&ca, &paths.ca.display().to_string())?;
        certs(&cert, &paths.cert.display().to_string())?;
        private_key(&key, &paths.key.display().to_string())?;
        for (pem, path) in crls.iter().zip(&paths.crls) {
            crl(pem, &path.display().to_string())?;
        }
        Ok(PemBundle {
            ca,
            cert,
            key,
            crls,
        })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(what: &str, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::BadPem {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

pub(crate) fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(what, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            what: what.to_owned(),
        },
        other => bad_pem(what, other),
    })
}

fn roots(pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(pem, what)? {
        store.add(cert).map_err(|source| TlsError::BadCa {
            what: what.to_owned(),
            source,
        })?;
    }
    Ok(store)
}

fn crl(pem: &[u8], what: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCrl {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(TlsError::BadCrl {
            what: what.to_owned(),
            detail: "no X509 CRL found in PEM".to_owned(),
        });
    }
    Ok(crls)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A server config that requires a client certificate chaining to `pem.ca` and not revoked by
/// any of `pem.crls`, presents `pem.cert`, and speaks only HTTP/2.
pub fn server_config(pem: &PemBundle) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut crls = Vec::new();
    for (i, pem) in pem.crls.iter().enumerate() {
        crls.extend(crl(pem, &format!("CRL #{}", i + 1))?);
    }
    // With CRLs present, webpki rejects a chain whose revocation status it cannot decide, so
    // the CRLs must come from the CA that issues client certificates.
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&pem.ca, "CA")?),
        provider.clone(),
    )
    .with_crls(crls)
    .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&pem.cert, "certificate")?,
            private_key(&pem.key, "private key")?,
        )
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client config that trusts only `pem.ca`, presents `pem.cert` and speaks only HTTP/2.
pub fn client_config(pem: &PemBundle) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(roots(&pem.ca, "CA")?)
        .with_client_auth_cert(
            certs(&pem.cert, "certificate")?,
            private_key(&pem.key, "private key")?,
        )
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_names_the_missing_file() {
        let paths = TlsPaths {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            crls: vec![],
        };
        let err = PemBundle::load(&paths).unwrap_err().to_string();
        assert!(
            err.contains("CA") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn empty_pem_is_a_clear_error() {
        let bundle = PemBundle {
            ca: b"not pem".to_vec(),
            cert: vec![],
            key: vec![],
            crls: vec![],
        };
        let err = server_config(&bundle).unwrap_err();
        assert!(
            matches!(err, TlsError::NoCertificate { ref what } if what == "CA"),
            "{err}"
        );
    }

    #[cfg(feature = "dev")]
    #[test]
    fn configs_build_and_key_is_redacted() {
        let ca = crate::dev::DevCa::new("ca").unwrap();
        let leaf = ca.issue_server(&["hub"]).unwrap();
        let mut bundle = crate::dev::bundle(&ca, &leaf);
        assert!(!format!("{bundle:?}").contains("PRIVATE"));
        let server = server_config(&bundle).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
        client_config(&bundle).unwrap();

        bundle.crls = vec![ca.crl(&[&leaf]).unwrap().into_bytes()];
        server_config(&bundle).unwrap();

        bundle.key = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec();
        assert!(matches!(
            server_config(&bundle),
            Err(TlsError::NoPrivateKey { .. })
        ));

        let other = crate::dev::DevCa::new("other")
            .unwrap()
            .issue_server(&[])
            .unwrap();
        bundle.key = other.key_pem.into_bytes();
        assert!(matches!(server_config(&bundle), Err(TlsError::Config(_))));
    }
}
