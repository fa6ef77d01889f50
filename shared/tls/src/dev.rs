//! A throwaway certificate authority for tests and for `lacnet certs` on a laptop: a CA, leaf
//! certificates carrying lacnet SPIFFE identities, and CRLs. Not for production keys.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Peer, PemBundle, TlsError};

fn gen_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// A self-signed CA held in memory.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A leaf certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl DevCa {
    /// Generates a new CA key and self-signed certificate with the given common name.
    pub fn new(common_name: &str) -> Result<DevCa, TlsError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(gen_err)?;
        let ca_pem = params.self_signed(&key).map_err(gen_err)?.pem();
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            ca_pem,
        })
    }

    /// A CA written earlier by [`DevCa::ca_pem`] and [`DevCa::key_pem`], so
    /// a trial network can grow: certificates it issues now chain to the
    /// same root as the ones already deployed.
    pub fn load(ca_pem: &str, key_pem: &str) -> Result<DevCa, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(gen_err)?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, key).map_err(gen_err)?;
        Ok(DevCa {
            issuer,
            ca_pem: ca_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The CA's private key (PKCS#8 PEM): whoever holds it can issue any
    /// identity in the network, so it is written with mode 0600 or not at all.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a certificate for `peer` (its SPIFFE ID as a URI SAN) that also names
    /// `dns_names`, `localhost` and `127.0.0.1`, usable as both client and server.
    pub fn issue(&self, peer: &Peer, dns_names: &[&str]) -> Result<IssuedCert, TlsError> {
        self.leaf(&peer.to_string(), &[peer.spiffe_id()], dns_names)
    }

    /// Issues a certificate carrying exactly `uris` as URI SANs, well-formed or not, so tests
    /// can check that servers refuse certificates naming two identities or a malformed one.
    pub fn issue_with_uris(&self, uris: &[&str]) -> Result<IssuedCert, TlsError> {
        let uris: Vec<String> = uris.iter().map(|u| (*u).to_owned()).collect();
        self.leaf("test identity", &uris, &[])
    }

    /// Issues a server certificate with no lacnet identity, naming `dns_names`, `localhost`
    /// and `127.0.0.1`.
    pub fn issue_server(&self, dns_names: &[&str]) -> Result<IssuedCert, TlsError> {
        self.leaf(
            dns_names.first().copied().unwrap_or("localhost"),
            &[],
            dns_names,
        )
    }

    /// Issues a certificate for `peer` that expired long ago (valid only in
    /// 2000), so tests can check that servers refuse it at the handshake.
    pub fn issue_expired(&self, peer: &Peer) -> Result<IssuedCert, TlsError> {
        self.leaf_valid(&peer.to_string(), &[peer.spiffe_id()], &[], true)
    }

    fn leaf(&self, cn: &str, uris: &[String], dns_names: &[&str]) -> Result<IssuedCert, TlsError> {
        self.leaf_valid(cn, uris, dns_names, false)
    }

    fn leaf_valid(
        &self,
        cn: &str,
        uris: &[String],
        dns_names: &[&str],
        expired: bool,
    ) -> Result<IssuedCert, TlsError> {
        let mut names: Vec<String> = dns_names.iter().map(|s| (*s).to_owned()).collect();
        for always in ["localhost", "127.0.0.1"] {
            if !names.iter().any(|n| n == always) {
                names.push(always.to_owned());
            }
        }
        let mut params = CertificateParams::new(names).map_err(gen_err)?;
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into().map_err(gen_err)?));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CRL, signed by this CA, revoking `revoked` (which must have been issued by this CA).
    pub fn crl(&self, revoked: &[&IssuedCert]) -> Result<String, TlsError> {
        let revoked_certs = revoked
            .iter()
            .map(|cert| {
                let der =
                    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).map_err(gen_err)?;
                let (_, x509) =
                    x509_parser::parse_x509_certificate(der.as_ref()).map_err(gen_err)?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(x509.raw_serial()),
                    revocation_time: date_time_ymd(2000, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, TlsError>>()?;
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2000, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .map_err(gen_err)?
            .pem()
            .map_err(gen_err)
    }
}

/// A [`PemBundle`] trusting `ca` and presenting `cert`, with no CRLs.
pub fn bundle(ca: &DevCa, cert: &IssuedCert) -> PemBundle {
    PemBundle {
        ca: ca.ca_pem().into_bytes(),
        cert: cert.cert_pem.clone().into_bytes(),
        key: cert.key_pem.clone().into_bytes(),
        crls: Vec::new(),
    }
}
