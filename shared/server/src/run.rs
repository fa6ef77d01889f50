//! One bootstrap for every lacnet service, with one shutdown path (as
//! mini-redis's `server::run`): bind the admin port, the gRPC port and the
//! control socket, start scheduled backups, serve until SIGTERM or Ctrl-C,
//! then wait for every task before returning.
//!
//! ```text
//! signal ──▶ token ──┬─▶ serve: NOT_SERVING, stop accepting, drain, flush (the service's own end)
//!                    ├─▶ admin port: stops accepting
//!                    ├─▶ control socket: finishes the backup in hand, removes the socket
//!                    └─▶ scheduled backups: stop
//! run_service returns once all four have ended.
//! ```
//!
//! If `serve` ends on its own (a store failure), the token is cancelled
//! too, so the other tasks stop with it and the process exits non-zero.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use lacnet_store::backup::BackupError;
use lacnet_store::control::{BackupFn, Control};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::admin::HealthCheck;
use crate::backups::NoBackupDir;
use crate::flags::ServerFlags;
use crate::metrics::{BackupMetrics, Registry};

/// What [`run_service`] needs from a service besides its `serve`.
#[derive(Clone)]
pub struct ServiceParts {
    /// The binary's name (`lacnet-hub`), which names scheduled backups.
    pub name: &'static str,
    /// The metrics the admin port serves.
    pub registry: Arc<Registry>,
    /// Whether the service is fit to serve (`/readyz`).
    pub healthy: HealthCheck,
    /// A backup inside the running service, for the control socket and the
    /// schedule alike, so both take the same path as `backup --to`.
    pub backup: BackupFn,
    /// Where scheduled backups are counted.
    pub backup_metrics: BackupMetrics,
}

impl std::fmt::Debug for ServiceParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceParts")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why [`run_service`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A port could not be bound (in use, or not an address of this host).
    #[error("binding the {port} port {addr}: {source}")]
    Bind {
        /// Which port: `admin` or `gRPC`.
        port: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be bound.
    #[error("binding the control socket: {0}")]
    ControlSocket(#[source] BackupError),
    /// `--backup-every` without `--backup-dir`.
    #[error(transparent)]
    NoBackupDir(#[from] NoBackupDir),
    /// The gRPC server (or the flush after it) failed.
    #[error("serving gRPC: {0}")]
    Serve(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The admin port failed.
    #[error("serving the admin port: {0}")]
    Admin(#[source] std::io::Error),
    /// A task beside the server panicked.
    #[error("a task beside the server failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs a service until SIGTERM or Ctrl-C, and returns once every task it
/// started has ended.
///
/// `serve` is the service's own `serve(listener, state, shutdown)`: given
/// the bound gRPC listener and the shutdown future, it serves, drains and
/// flushes. The `listening` log line carries both bound addresses, which is
/// how callers learn them when the flags ask for port 0.
pub async fn run_service<F, Fut, E>(
    flags: &ServerFlags,
    parts: ServiceParts,
    serve: F,
) -> Result<(), RunError>
where
    F: FnOnce(TcpListener, WaitForCancellationFutureOwned) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    // Everything that can refuse to start does so before anything runs.
    let schedule = crate::backups::schedule_of(flags, parts.name)?;
    let admin = TcpListener::bind(flags.admin_listen)
        .await
        .map_err(bind_error("admin", flags.admin_listen))?;
    let listener = bind_nodelay(flags.listen).map_err(bind_error("gRPC", flags.listen))?;
    let control = Control::bind(&flags.control_socket())
        .await
        .map_err(RunError::ControlSocket)?;
    let admin_addr = admin
        .local_addr()
        .map_err(bind_error("admin", flags.admin_listen))?;
    let grpc_addr = listener
        .local_addr()
        .map_err(bind_error("gRPC", flags.listen))?;

    let shutdown = crate::shutdown::signal_token();
    let admin = tokio::spawn(crate::admin::serve_with_health(
        admin,
        parts.registry,
        parts.healthy,
        shutdown.clone(),
    ));
    let mut beside: Vec<JoinHandle<()>> = vec![tokio::spawn(
        control.serve(parts.backup.clone(), shutdown.clone().cancelled_owned()),
    )];
    if let Some(schedule) = schedule {
        beside.push(tokio::spawn(crate::backups::run(
            schedule,
            parts.backup,
            parts.backup_metrics,
            shutdown.clone().cancelled_owned(),
        )));
    }
    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, "listening");
    let served = serve(listener, shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    let admin = admin.await;
    for task in beside {
        task.await?;
    }
    served.map_err(|e| RunError::Serve(Box::new(e)))?;
    admin?.map_err(RunError::Admin)?;
    tracing::info!(service = parts.name, "stopped cleanly");
    Ok(())
}

fn bind_error(port: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> RunError {
    move |source| RunError::Bind { port, addr, source }
}

/// Binds a listener with `SO_REUSEADDR`, so a restarted service can take
/// its port back at once while the old connections sit in `TIME_WAIT`, and
/// `TCP_NODELAY` (which `lacnet_tls::incoming` also sets on every accepted
/// connection: small HTTP/2 frames must not wait on Nagle).
pub fn bind_nodelay(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_service_takes_its_port_back_at_once() {
        let first = bind_nodelay("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        // A connection closed by the server first leaves TIME_WAIT behind.
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = first.accept().await.unwrap();
        drop(accepted);
        drop(first);
        drop(client);
        let again = bind_nodelay(addr).unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_typed_startup_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = taken.local_addr().unwrap().to_string();
        let data = std::env::temp_dir().display().to_string();
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: ServerFlags,
        }
        let Cli { flags } = clap::Parser::try_parse_from([
            "svc",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &admin,
            "--request-timeout-secs",
            "1",
            "--max-message-bytes",
            "1024",
            "--drain-timeout-secs",
            "1",
            "--data-dir",
            &data,
            "--cache-mb",
            "1",
        ])
        .unwrap();
        let parts = ServiceParts {
            name: "lacnet-test",
            registry: Arc::new(Registry::new()),
            healthy: Arc::new(|| true),
            backup: Arc::new(|_| Box::pin(async { Err(BackupError::Store("none".into())) })),
            backup_metrics: BackupMetrics::register(&Registry::new()),
        };
        let served =
            run_service(&flags, parts, |_, _| async { Ok::<(), std::io::Error>(()) }).await;
        assert!(
            matches!(served, Err(RunError::Bind { port: "admin", .. })),
            "{served:?}"
        );
    }
}
