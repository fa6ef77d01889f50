//! The crate's error type. Every variant names the file or the piece of configuration that
//! failed, so an operator reading a startup error knows which file to fix. No variant ever
//! carries key material.

use std::path::PathBuf;

/// Everything that can go wrong while loading TLS material, building a rustls config or
/// opening an mTLS channel.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read from disk.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which file this was ("CA", "certificate", "private key", "CRL").
        what: &'static str,
        /// The path we tried to read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM document was malformed.
    #[error("{what}: invalid PEM: {detail}")]
    BadPem {
        /// Where the PEM came from (a path or a label such as "CA bundle").
        what: String,
        /// What the PEM parser said.
        detail: String,
    },
    /// A PEM document that must hold certificates held none.
    #[error("{what}: no certificate found in PEM")]
    NoCertificate {
        /// Where the PEM came from.
        what: String,
    },
    /// The private key PEM held no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("{what}: no private key found in PEM")]
    NoPrivateKey {
        /// Where the PEM came from.
        what: String,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("{what}: bad CA certificate: {source}")]
    BadCa {
        /// Where the PEM came from.
        what: String,
        /// Why rustls rejected it.
        source: rustls::Error,
    },
    /// A certificate revocation list was malformed or empty.
    #[error("{what}: bad CRL: {detail}")]
    BadCrl {
        /// Where the PEM came from.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The client-certificate verifier could not be built (for example a CRL that does not parse).
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (most often: the private key does not match the certificate).
    #[error("invalid TLS configuration (does the private key match the certificate?): {0}")]
    Config(#[source] rustls::Error),
    /// The URL to connect to was not a valid `https://` URL.
    #[error("invalid server URL {url:?}: {detail}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Connecting to the server failed (TCP, TLS handshake or HTTP/2 setup).
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL we tried.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// Generating a certificate, key or CRL failed (feature `dev` only).
    #[error("certificate generation failed: {0}")]
    Generate(String),
}
