//! mTLS channels to lacnet servers: the site agent's pusher to the hub, analysts' tools, and
//! council systems calling their site agent. Uses tonic's own rustls connector, which falls
//! back to the ring provider itself, so no process-wide crypto provider has to be installed.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{PemBundle, TlsError, client_config};

/// How long to wait for TCP + TLS + HTTP/2 setup before giving up on one attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An `Endpoint` for `url` (must be `https://`) that trusts only `pem.ca`, presents `pem.cert`,
/// and expects the server certificate to name `server_name`. Use it to add your own settings
/// (timeouts, keep-alive) before connecting.
pub fn endpoint(url: &str, pem: &PemBundle, server_name: &str) -> Result<Endpoint, TlsError> {
    let bad_url = |detail: String| TlsError::BadUrl {
        url: url.to_owned(),
        detail,
    };
    // An http:// URL would make tonic silently skip TLS.
    if !url.starts_with("https://") {
        return Err(bad_url("must start with https://".to_owned()));
    }
    // Parse everything now so a bad file fails here with a clear error, not inside a connect.
    client_config(pem)?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pem.ca))
        .identity(Identity::from_pem(&pem.cert, &pem.key))
        .domain_name(server_name);
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad_url(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_config(tls)
        .map_err(|e| bad_url(e.to_string()))
}

/// Connects now, failing if the server cannot be reached or the handshake fails.
///
/// With TLS 1.3 a server that rejects our certificate may only say so after the handshake,
/// so a rejected client can see `connect` succeed and its first call fail.
pub async fn connect(url: &str, pem: &PemBundle, server_name: &str) -> Result<Channel, TlsError> {
    endpoint(url, pem, server_name)?
        .connect()
        .await
        .map_err(|source| TlsError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// A channel that connects on first use and reconnects by itself after failures.
pub fn lazy_channel(url: &str, pem: &PemBundle, server_name: &str) -> Result<Channel, TlsError> {
    Ok(endpoint(url, pem, server_name)?.connect_lazy())
}
