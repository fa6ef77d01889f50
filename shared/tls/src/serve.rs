//! mTLS serving for tonic. [`incoming`] turns a bound `TcpListener` into the stream of
//! handshaken connections that `Server::serve_with_incoming_shutdown` consumes; each
//! connection is a [`TlsStream`] whose [`TlsConnectInfo`] (peer address and certificate chain)
//! tonic copies into every request, where [`peer_of`](crate::peer_of) reads it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to finish the TLS handshake before we drop it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic to pick them up.
const QUEUE: usize = 64;

/// What a handler can learn about the connection a request arrived on. tonic puts this in
/// every request's extensions.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client's verified certificate chain, leaf first.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A server-side TLS connection that tonic can serve and read [`TlsConnectInfo`] from.
pub struct TlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl TlsStream {
    fn new(inner: tokio_rustls::server::TlsStream<TcpStream>, remote_addr: SocketAddr) -> Self {
        let peer_certificates = inner
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect()));
        TlsStream {
            inner,
            info: TlsConnectInfo {
                remote_addr: Some(remote_addr),
                peer_certificates,
            },
        }
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("remote_addr", &self.info.remote_addr)
            .finish_non_exhaustive()
    }
}

impl tonic::transport::server::Connected for TlsStream {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts TCP connections on `listener` and yields those that complete an mTLS handshake
/// under `config`.
///
/// Each handshake runs in its own task with a [`HANDSHAKE_TIMEOUT`], so a slow or hostile client
/// cannot hold up anyone else. Failed handshakes are logged with the remote address and
/// skipped; the stream never yields an error, so one bad client cannot disturb the server.
/// Dropping the stream (tonic does so on shutdown) stops the accept loop and closes the listener.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream, io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Result<TlsStream, io::Error>>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote_addr) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Usually out of file descriptors: back off briefly rather than spin, and keep
                // serving the connections we already have.
                tracing::warn!(error = %e, "accepting a TCP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // gRPC replies are small HTTP/2 frames; Nagle's algorithm would hold
        // each one back waiting for the peer's delayed ACK (tens of ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote_addr, error = %e, "setting TCP_NODELAY failed");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // A send error means the server is shutting down; the connection just drops.
                    let _ = tx.send(Ok(TlsStream::new(stream, remote_addr))).await;
                }
                Ok(Err(e)) => tracing::warn!(%remote_addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::warn!(%remote_addr, "TLS handshake timed out"),
            }
        });
    }
}
