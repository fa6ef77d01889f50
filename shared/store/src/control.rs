//! The operator's door into a running service: a Unix socket that takes a
//! backup while the service serves.
//!
//! sled locks its directory, so a second process cannot read a running
//! service's database; the snapshot must be taken inside the service. The
//! socket is the narrowest way in: it is not on the network (no port, no
//! NetworkPolicy to get right), it is created with mode 0600 so only the
//! service's own user can connect, and on Kubernetes reaching it takes
//! `kubectl exec` into the pod, which RBAC grants to operators only
//! (`lacnet-site-agent backup --to DIR` run there talks to it).
//!
//! The protocol is one line each way: `backup <absolute path>` and then
//! `ok <summary>` or `error <message>`. Requests are served one at a time, so
//! two backups never run at once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::backup::{BackupError, Summary};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes a backup into the given directory, inside the running service.
pub type BackupFn = Arc<
    dyn Fn(PathBuf) -> Pin<Box<dyn Future<Output = Result<Summary, BackupError>> + Send>>
        + Send
        + Sync,
>;

fn control_err(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Control {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A bound control socket; [`Control::serve`] answers on it.
#[derive(Debug)]
pub struct Control {
    path: PathBuf,
    listener: UnixListener,
}

impl Control {
    /// Binds `path` (mode 0600). A socket file left by a crashed service is
    /// replaced; one that still answers is refused (another service owns it).
    pub async fn bind(path: &Path) -> Result<Control, BackupError> {
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(control_err(path, "another process is answering on it"));
            }
            std::fs::remove_file(path)
                .map_err(|e| control_err(path, format!("cannot remove a stale socket: {e}")))?;
        }
        let listener =
            UnixListener::bind(path).map_err(|e| control_err(path, format!("cannot bind: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| control_err(path, format!("cannot restrict to mode 0600: {e}")))?;
        }
        Ok(Control {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// Answers requests one at a time until `shutdown` completes, then removes
    /// the socket file.
    pub async fn serve(self, backup: BackupFn, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        continue;
                    }
                },
            };
            // A request runs to its end even if shutdown starts meanwhile:
            // a half-written backup has no MANIFEST and is never restored.
            if let Err(e) = answer(stream, &backup).await {
                tracing::warn!(error = %e, "control socket: request failed");
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: UnixStream, backup: &BackupFn) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // Requests are served one at a time: a client that never finishes its
    // line must not hold the socket.
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        BufReader::new(read).take(MAX_LINE).read_line(&mut line),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let reply = match line.trim_end_matches('\n').split_once(' ') {
        Some(("backup", dest)) if !dest.is_empty() => {
            let dest = PathBuf::from(dest);
            tracing::info!(to = %dest.display(), "backup requested on the control socket");
            match backup(dest).await {
                Ok(summary) => {
                    tracing::info!(%summary, "backup written");
                    format!("ok {summary}\n")
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup failed");
                    format!("error {}\n", one_line(&e.to_string()))
                }
            }
        }
        _ => "error expected `backup <absolute path>`\n".to_owned(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Asks the service listening on `socket` to back up into `dest`. `Ok(None)`
/// means no service is listening (the socket is missing or stale), so the
/// caller may open the data directory itself.
pub async fn request_backup(socket: &Path, dest: &Path) -> Result<Option<String>, BackupError> {
    let dest_text = dest
        .to_str()
        .filter(|s| !s.contains(['\n', '\r']))
        .ok_or_else(|| control_err(socket, "the destination must be a one-line UTF-8 path"))?;
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(control_err(socket, format!("cannot connect: {e}"))),
    };
    stream
        .write_all(format!("backup {dest_text}\n").as_bytes())
        .await
        .map_err(|e| control_err(socket, format!("cannot send: {e}")))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .take(MAX_LINE)
        .read_line(&mut reply)
        .await
        .map_err(|e| control_err(socket, format!("cannot read the reply: {e}")))?;
    let reply = reply.trim_end();
    match reply.split_once(' ') {
        Some(("ok", summary)) => Ok(Some(summary.to_owned())),
        Some(("error", message)) => Err(BackupError::Remote(message.to_owned())),
        _ => Err(control_err(
            socket,
            format!("unexpected reply {reply:?} (did the service stop?)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backup_over_the_socket_and_errors_come_back() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("control.sock");
        // No service yet: the caller is told to go offline.
        assert_eq!(request_backup(&sock, Path::new("/x")).await.unwrap(), None);
        let control = Control::bind(&sock).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let backup: BackupFn = Arc::new(|dest: PathBuf| {
            Box::pin(async move {
                if dest == Path::new("/fail") {
                    return Err(BackupError::Store("disk\nfull".into()));
                }
                Ok(Summary {
                    dir: dest,
                    trees: 1,
                    entries: 2,
                    files: 3,
                    bytes: 4,
                })
            })
        });
        let stop = shutdown_pair();
        let server = tokio::spawn(control.serve(backup, stop.1));
        let ok = request_backup(&sock, Path::new("/b1")).await.unwrap();
        assert_eq!(
            ok.as_deref(),
            Some("/b1: 1 tree(s), 2 entries, 3 file(s), 4 bytes")
        );
        let err = request_backup(&sock, Path::new("/fail")).await.unwrap_err();
        assert!(
            matches!(err, BackupError::Remote(ref m) if m == "the service could not take the snapshot: disk full"),
            "{err}"
        );
        // A second service cannot take the socket over.
        assert!(Control::bind(&sock).await.is_err());
        let _ = stop.0.send(());
        server.await.unwrap();
        assert!(!sock.exists(), "the socket file is removed at shutdown");
    }

    /// A shutdown trigger and the future it completes.
    fn shutdown_pair() -> (tokio::sync::oneshot::Sender<()>, impl Future<Output = ()>) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        (tx, async move {
            let _ = rx.await;
        })
    }
}
