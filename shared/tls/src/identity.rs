//! Caller identity. Every lacnet client certificate carries exactly one URI SAN, a SPIFFE ID in
//! the `lacnet` trust domain; it is parsed once, here, into a typed [`Peer`] that handlers match
//! on. A certificate with no URI SAN, two of them, or one that is not a well-formed lacnet
//! identity names nobody, and both services refuse it as `UNAUTHENTICATED`.
//! Sits between the TLS handshake (which proved the certificate chains to the lacnet CA) and the
//! per-role checks in each service.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::serve::TlsConnectInfo;

/// The SPIFFE trust-domain prefix shared by every lacnet identity.
const PREFIX: &str = "spiffe://lacnet/";

/// Who is calling, taken from the SPIFFE URI SAN of their client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A council's site agent, by ONS code (`spiffe://lacnet/site/E06000034`).
    Site(String),
    /// An analyst reading reports from the hub (`spiffe://lacnet/analyst/<name>`).
    Analyst(String),
    /// A council case system pushing records to its own site agent
    /// (`spiffe://lacnet/council/<name>`).
    Council(String),
    /// A council operator running its site agent: status, preview and
    /// erasure (`spiffe://lacnet/operator/<name>`).
    Operator(String),
}

impl Peer {
    /// Parses a SPIFFE ID. Returns `None` for another trust domain, an unknown role, a bad ONS
    /// code or name, or any extra path, query or fragment.
    pub fn from_spiffe(uri: &str) -> Option<Peer> {
        let rest = uri.strip_prefix(PREFIX)?;
        let (role, id) = rest.split_once('/')?;
        match role {
            "site" if is_ons_code(id) => Some(Peer::Site(id.to_owned())),
            "analyst" if is_name(id) => Some(Peer::Analyst(id.to_owned())),
            "council" if is_name(id) => Some(Peer::Council(id.to_owned())),
            "operator" if is_name(id) => Some(Peer::Operator(id.to_owned())),
            _ => None,
        }
    }

    /// The SPIFFE ID this peer is issued under, e.g. `spiffe://lacnet/site/E06000034`.
    pub fn spiffe_id(&self) -> String {
        let (role, id) = self.parts();
        format!("{PREFIX}{role}/{id}")
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            Peer::Site(code) => ("site", code),
            Peer::Analyst(name) => ("analyst", name),
            Peer::Council(name) => ("council", name),
            Peer::Operator(name) => ("operator", name),
        }
    }
}

/// `site:E06000034`, `analyst:alice`, `council:durham`, `operator:sam`: safe to log (no personal data).
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (role, id) = self.parts();
        write!(f, "{role}:{id}")
    }
}

/// ONS area code: a country letter then eight digits (`^[EWSN]\d{8}$`).
fn is_ons_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 9
        && matches!(b[0], b'E' | b'W' | b'S' | b'N')
        && b[1..].iter().all(u8::is_ascii_digit)
}

/// Analyst and council names: `[a-z0-9._-]{1,64}`.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Why a certificate does not name a lacnet caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed as X.509.
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    /// The certificate has no URI SAN, so no `spiffe://lacnet/...` identity.
    #[error("certificate has no spiffe://lacnet/ URI SAN")]
    NoIdentity,
    /// The certificate has more than one URI SAN: a SPIFFE certificate names exactly one ID.
    #[error("certificate has {0} URI SANs; exactly one spiffe://lacnet/ identity is allowed")]
    Ambiguous(usize),
    /// The URI SAN is not a well-formed site, analyst, council or operator identity
    /// (shown cut to [`MAX_SHOWN_URI`] characters).
    #[error("certificate has an invalid lacnet identity {0:?}")]
    Invalid(String),
}

/// The most characters of a refused URI SAN kept in an [`IdentityError::Invalid`], which
/// reaches logs and statuses.
pub const MAX_SHOWN_URI: usize = 96;

/// Reads the caller's [`Peer`] from a (verified) end-entity certificate. Exactly one URI SAN
/// is accepted, and it must be a well-formed lacnet identity: a second URI SAN (even in
/// another trust domain) would let one certificate speak for two callers, so it is refused.
pub fn peer_from_certificate(cert: &CertificateDer<'_>) -> Result<Peer, IdentityError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoIdentity),
        [uri] => Peer::from_spiffe(uri)
            .ok_or_else(|| IdentityError::Invalid(uri.chars().take(MAX_SHOWN_URI).collect())),
        many => Err(IdentityError::Ambiguous(many.len())),
    }
}

/// Reads the caller's [`Peer`] in a tonic handler. Needs a server fed by
/// [`incoming`](crate::incoming), which puts [`TlsConnectInfo`] in every request's extensions.
/// Any failure is `Unauthenticated` with a message saying what was missing.
pub fn peer_of<T>(request: &tonic::Request<T>) -> Result<Peer, tonic::Status> {
    let info = request
        .extensions()
        .get::<TlsConnectInfo>()
        .ok_or_else(|| {
            tonic::Status::unauthenticated("no TLS connection info: the server is not serving mTLS")
        })?;
    let peer = info
        .peer
        .as_ref()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate presented"))?;
    peer.clone().map_err(|e| {
        tonic::Status::unauthenticated(format!("client certificate has no lacnet identity: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_role() {
        assert_eq!(
            Peer::from_spiffe("spiffe://lacnet/site/E06000034"),
            Some(Peer::Site("E06000034".into()))
        );
        assert_eq!(
            Peer::from_spiffe("spiffe://lacnet/analyst/alice.smith"),
            Some(Peer::Analyst("alice.smith".into()))
        );
        assert_eq!(
            Peer::from_spiffe("spiffe://lacnet/council/durham-cc_1"),
            Some(Peer::Council("durham-cc_1".into()))
        );
        assert_eq!(
            Peer::from_spiffe("spiffe://lacnet/operator/sam"),
            Some(Peer::Operator("sam".into()))
        );
        for code in ["W06000001", "S12000033", "N09000001"] {
            assert!(Peer::from_spiffe(&format!("spiffe://lacnet/site/{code}")).is_some());
        }
    }

    #[test]
    fn rejects_edge_cases() {
        for bad in [
            "spiffe://other/site/E06000034",       // wrong trust domain
            "spiffe://lacnet.evil/site/E06000034", // lookalike trust domain
            "SPIFFE://lacnet/site/E06000034",      // we only issue lowercase
            "https://lacnet/site/E06000034",       // wrong scheme
            "spiffe://lacnet/site/E0600003",       // 7 digits
            "spiffe://lacnet/site/E060000345",     // 9 digits
            "spiffe://lacnet/site/X06000034",      // bad country letter
            "spiffe://lacnet/site/e06000034",      // lowercase letter
            "spiffe://lacnet/site/E06000034/x",    // extra path
            "spiffe://lacnet/site/E06000034?a=b",  // query
            "spiffe://lacnet/site/",               // empty
            "spiffe://lacnet/site",                // no id
            "spiffe://lacnet/analyst/Alice",       // uppercase name
            "spiffe://lacnet/analyst/a/b",         // extra path
            "spiffe://lacnet/analyst/",            // empty name
            "spiffe://lacnet/admin/root",          // unknown role
            "spiffe://lacnet//E06000034",          // empty role
            "",
        ] {
            assert_eq!(Peer::from_spiffe(bad), None, "{bad:?} must be rejected");
        }
        let long = "a".repeat(65);
        assert_eq!(
            Peer::from_spiffe(&format!("spiffe://lacnet/analyst/{long}")),
            None
        );
        let max = "a".repeat(64);
        assert!(Peer::from_spiffe(&format!("spiffe://lacnet/analyst/{max}")).is_some());
    }

    #[test]
    fn round_trips_and_displays() {
        for peer in [
            Peer::Site("E06000034".into()),
            Peer::Analyst("alice".into()),
            Peer::Council("durham".into()),
            Peer::Operator("sam".into()),
        ] {
            assert_eq!(Peer::from_spiffe(&peer.spiffe_id()), Some(peer.clone()));
        }
        assert_eq!(Peer::Site("E06000034".into()).to_string(), "site:E06000034");
        assert_eq!(Peer::Analyst("alice".into()).to_string(), "analyst:alice");
        assert_eq!(Peer::Operator("sam".into()).to_string(), "operator:sam");
    }

    #[test]
    fn peer_of_without_connect_info_is_unauthenticated() {
        let status = peer_of(&tonic::Request::new(())).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[cfg(feature = "dev")]
    #[test]
    fn reads_peer_from_issued_certificate() {
        use crate::dev::DevCa;
        use rustls_pki_types::pem::PemObject;
        let ca = DevCa::new("test ca").unwrap();
        let peer = Peer::Site("E06000034".into());
        let issued = ca.issue(&peer, &["site.example"]).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(peer_from_certificate(&der), Ok(peer));

        let der_of = |uris: &[&str]| {
            let issued = ca.issue_with_uris(uris).unwrap();
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
        };
        assert_eq!(
            peer_from_certificate(&der_of(&["spiffe://lacnet/operator/sam"])),
            Ok(Peer::Operator("sam".into()))
        );
        // Two identities, even one outside lacnet, name nobody.
        for two in [
            ["spiffe://lacnet/council/a", "spiffe://lacnet/council/b"],
            ["spiffe://lacnet/council/a", "spiffe://other/council/a"],
            ["spiffe://lacnet/council/a", "https://example.invalid/x"],
        ] {
            assert_eq!(
                peer_from_certificate(&der_of(&two)),
                Err(IdentityError::Ambiguous(2))
            );
        }
        for bad in [
            "spiffe://lacnet/council/Bad Name",
            "spiffe://other/council/a",
            "spiffe://lacnet/root/a",
        ] {
            assert!(matches!(
                peer_from_certificate(&der_of(&[bad])),
                Err(IdentityError::Invalid(_))
            ));
        }
        let long = format!("spiffe://lacnet/council/{}", "x".repeat(1000));
        match peer_from_certificate(&der_of(&[&long])) {
            Err(IdentityError::Invalid(shown)) => assert_eq!(shown.len(), MAX_SHOWN_URI),
            other => panic!("{other:?}"),
        }

        let server = ca.issue_server(&["hub.example"]).unwrap();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert_eq!(peer_from_certificate(&der), Err(IdentityError::NoIdentity));

        let garbage = CertificateDer::from(vec![1u8, 2, 3]);
        assert!(matches!(
            peer_from_certificate(&garbage),
            Err(IdentityError::BadCertificate(_))
        ));
    }
}
