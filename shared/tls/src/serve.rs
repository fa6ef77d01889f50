//! mTLS serving for tonic. [`incoming`] turns a bound `TcpListener` into the stream of
//! handshaken connections that `Server::serve_with_incoming_shutdown` consumes; each
//! connection is a [`TlsStream`] whose [`TlsConnectInfo`] (peer address and certificate chain)
//! tonic copies into every request, where [`peer_of`](crate::peer_of) reads it.
//!
//! [`TransportLimits`] keeps slow, silent or numerous clients from holding the
//! server's resources: at most `max_connections` connections are served at
//! once (the rest wait in the kernel's accept queue until one closes), and a
//! connection from which nothing arrives for `idle_timeout` is closed. The
//! HTTP/2 settings (keepalive pings, streams per connection) are applied by
//! the services' tonic builders from the same struct, so a live client always
//! has something to answer within the idle timeout.

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a client may take to finish the TLS handshake before we drop it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic to pick them up.
const QUEUE: usize = 64;

/// Limits on connections and HTTP/2 for one server. The defaults suit a hub
/// serving tens of sites and analysts, and an agent serving one case system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Connections served at once; further clients wait in the accept queue.
    pub max_connections: usize,
    /// A connection from which nothing (not even a keepalive ACK) arrives for
    /// this long is closed. Must exceed `keepalive_interval` plus a round trip.
    pub idle_timeout: Duration,
    /// How often the server PINGs a connection that has sent nothing, so an
    /// idle but live client answers and keeps its connection.
    pub keepalive_interval: Duration,
    /// How long the server waits for a PING's ACK before closing the connection.
    pub keepalive_timeout: Duration,
    /// Concurrent HTTP/2 streams (calls) one connection may open.
    pub max_concurrent_streams: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_connections: 512,
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 256,
        }
    }
}

impl TransportLimits {
    /// Applies the HTTP/2 limits to a tonic server builder (the connection
    /// limit and the idle timeout are applied by [`incoming_with_limits`]).
    pub fn apply<L>(&self, builder: tonic::transport::Server<L>) -> tonic::transport::Server<L> {
        builder
            .http2_keepalive_interval(Some(self.keepalive_interval))
            .http2_keepalive_timeout(Some(self.keepalive_timeout))
            .max_concurrent_streams(Some(self.max_concurrent_streams))
    }
}

/// What a handler can learn about the connection a request arrived on. tonic puts this in
/// every request's extensions.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client's verified certificate chain, leaf first.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The caller the leaf certificate names, read once per connection:
    /// parsing X.509 on every request cost more than some handlers.
    /// `None` when no client certificate was presented.
    pub peer: Option<Result<crate::Peer, crate::IdentityError>>,
}

/// A server-side TLS connection that tonic can serve and read [`TlsConnectInfo`] from.
///
/// It holds one of the server's connection slots until it is dropped, and
/// fails a read with `TimedOut` once nothing has arrived for the idle timeout.
pub struct TlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TlsConnectInfo,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    _slot: OwnedSemaphorePermit,
}

impl TlsStream {
    fn new(
        inner: tokio_rustls::server::TlsStream<TcpStream>,
        remote_addr: SocketAddr,
        idle_timeout: Duration,
        slot: OwnedSemaphorePermit,
        cut: CancellationToken,
    ) -> Self {
        let peer_certificates = inner.get_ref().1.peer_certificates().map(|chain| {
            Arc::new(
                chain
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect::<Vec<_>>(),
            )
        });
        let peer = peer_certificates
            .as_ref()
            .and_then(|chain| chain.first())
            .map(crate::identity::peer_from_certificate);
        TlsStream {
            inner,
            info: TlsConnectInfo {
                remote_addr: Some(remote_addr),
                peer_certificates,
                peer,
            },
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            cut: Box::pin(cut.cancelled_owned()),
            _slot: slot,
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

impl TlsStream {
    /// Fails once the server has cut its connections off; polling registers
    /// the task, so a connection waiting on a quiet client wakes to end.
    fn check_cut(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server cut its connections off at the end of the drain",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let deadline = Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(deadline);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::info!(
                        remote_addr = ?self.info.remote_addr,
                        idle_timeout_ms = self.idle_timeout.as_millis() as u64,
                        "closing a connection that sent nothing for the idle timeout"
                    );
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle for longer than the idle timeout",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// [`incoming_with_limits`] with the default [`TransportLimits`].
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream, io::Error>> + Send + 'static {
    incoming_with_limits(listener, config, TransportLimits::default())
}

/// Accepts TCP connections on `listener` and yields those that complete an mTLS handshake
/// under `config`, at most `limits.max_connections` at a time.
///
/// A connection takes a slot before it is accepted and gives it back when it closes, so
/// beyond the limit clients wait in the kernel's accept queue rather than being served.
/// Each handshake runs in its own task with a [`HANDSHAKE_TIMEOUT`], so a slow or hostile client
/// cannot hold up anyone else. Failed handshakes are logged with the remote address and
/// skipped; the stream never yields an error, so one bad client cannot disturb the server.
/// Dropping the stream (tonic does so on shutdown) stops the accept loop and closes the listener.
pub fn incoming_with_limits(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: TransportLimits,
) -> impl Stream<Item = Result<TlsStream, io::Error>> + Send + 'static {
    incoming_until_cut(listener, config, limits, CancellationToken::new())
}

/// [`incoming_with_limits`], whose connections all fail their reads and
/// writes once `cut` is cancelled. A graceful shutdown waits for calls that a
/// client keeps open; cutting the connections ends them, so the server's
/// connection tasks end too and drop the state they hold.
pub fn incoming_until_cut(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: TransportLimits,
    cut: CancellationToken,
) -> impl Stream<Item = Result<TlsStream, io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        tx,
        limits,
        cut,
    ));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Result<TlsStream, io::Error>>,
    limits: TransportLimits,
    cut: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut full_logged = false;
    loop {
        if slots.available_permits() == 0 && !full_logged {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new clients wait until a connection closes"
            );
        }
        full_logged = slots.available_permits() == 0;
        let slot = tokio::select! {
            () = tx.closed() => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed; stop accepting if it somehow is.
                Err(_) => return,
            },
        };
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
        let cut = cut.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // A send error means the server is shutting down; the connection just drops.
                    let stream =
                        TlsStream::new(stream, remote_addr, limits.idle_timeout, slot, cut);
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::warn!(%remote_addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::warn!(%remote_addr, "TLS handshake timed out"),
            }
        });
    }
}
