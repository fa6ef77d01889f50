//! lacnet-tls: every rustls config lacnet uses, mTLS serving for tonic, and caller identity.
//!
//! Sits under both services: the hub and each site agent serve gRPC only over mutual TLS,
//! and every caller is identified by the SPIFFE URI SAN of its client certificate
//! (`spiffe://lacnet/site/<ONS code>`, `.../analyst/<name>`, `.../council/<name>`), parsed once
//! into a [`Peer`].
//!
//! Serving (certificates from files, client certificates required, CRLs honoured):
//!
//! ```no_run
//! # async fn demo(router: tonic::transport::server::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use lacnet_tls::{PemBundle, TlsPaths};
//! let pem = PemBundle::load(&TlsPaths {
//!     ca: "/tls/ca.pem".into(),
//!     cert: "/tls/tls.crt".into(),
//!     key: "/tls/tls.key".into(),
//!     crls: vec!["/tls/crl.pem".into()],
//! })?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let shutdown = async { /* e.g. cancellation_token.cancelled().await */ };
//! // `router` is `Server::builder().add_service(...)`.
//! router
//!     .serve_with_incoming_shutdown(
//!         lacnet_tls::incoming(listener, lacnet_tls::server_config(&pem)?),
//!         shutdown,
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! In a handler, `let peer = lacnet_tls::peer_of(&request)?;` gives the caller, or
//! `Unauthenticated`.
//!
//! Connecting (the server's certificate must name `server_name`):
//!
//! ```no_run
//! # async fn demo(pem: lacnet_tls::PemBundle) -> Result<(), lacnet_tls::TlsError> {
//! let channel = lacnet_tls::connect("https://hub.lacnet:8443", &pem, "hub.lacnet").await?;
//! // or, for a channel that connects on first use and reconnects by itself:
//! let lazy = lacnet_tls::lazy_channel("https://hub.lacnet:8443", &pem, "hub.lacnet")?;
//! # Ok(()) }
//! ```
//!
//! No process-wide rustls crypto provider is needed: our configs pin ring, and tonic's client
//! connector falls back to ring by itself.
//!
//! Feature `dev` adds [`dev`]: a throwaway CA for tests and `lacnet certs`.

mod client;
mod config;
#[cfg(feature = "dev")]
pub mod dev;
mod error;
mod identity;
mod serve;

pub use client::{CONNECT_TIMEOUT, connect, endpoint, lazy_channel};
pub use config::{PemBundle, TlsPaths, client_config, server_config};
pub use error::TlsError;
pub use identity::{IdentityError, Peer, peer_from_certificate, peer_of};
pub use serve::{
    HANDSHAKE_TIMEOUT, TlsConnectInfo, TlsStream, TransportLimits, incoming, incoming_until_cut,
    incoming_with_limits,
};
