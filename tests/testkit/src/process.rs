//! The real binaries as child processes: `lacnet-hub` and
//! `lacnet-site-agent`, each configured through its `LACNET_*` environment
//! with PEM files, a key file and a data directory in a temp dir, listening on
//! 127.0.0.1:0 and announcing its ports in a JSON `listening` log line.
//!
//! Everything a process writes (stdout and stderr) is kept, so the privacy
//! scan can read every byte the service logged. [`Service::kill`] is SIGKILL;
//! [`Service::terminate`] is SIGTERM and waits for a clean exit.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lacnet_tls::PemBundle;

/// Longest a process may take to say it is listening, or to exit after SIGTERM.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// Where cargo put the service binaries, built on first use.
///
/// `lacnet-e2e` cannot name another package's binaries with
/// `CARGO_BIN_EXE_*`, so the first test to ask runs `cargo build` for them
/// (a no-op when `cargo test --workspace` has already built them) and finds
/// them beside this test binary's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "-p",
            "lacnet-hub",
            "-p",
            "lacnet-site-agent",
            "--bins",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the service binaries");
        assert!(
            status.success(),
            "cargo build of the service binaries failed"
        );
        dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Writes a bundle's files into `dir` as `<stem>-ca.pem`, `<stem>.pem` and
/// `<stem>.key`; returns their paths.
pub fn write_bundle(dir: &Path, stem: &str, pem: &PemBundle) -> BundleFiles {
    let files = BundleFiles {
        ca: dir.join(format!("{stem}-ca.pem")),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&files.ca, &pem.ca).unwrap();
    std::fs::write(&files.cert, &pem.cert).unwrap();
    std::fs::write(&files.key, &pem.key).unwrap();
    files
}

/// The three PEM files of a bundle on disk.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    /// The CA the other side must chain to.
    pub ca: PathBuf,
    /// Our certificate.
    pub cert: PathBuf,
    /// Our private key.
    pub key: PathBuf,
}

/// A running service process.
pub struct Service {
    /// `hub` or the agent's site code, for messages.
    pub name: String,
    child: Child,
    /// The gRPC (mTLS) address.
    pub grpc: SocketAddr,
    /// The admin (plain HTTP) address.
    pub admin: SocketAddr,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Finds `"name":"value"` in a JSON log line.
fn json_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(&format!("\"{name}\":\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
}

impl Service {
    /// Starts `binary` with exactly `env` (nothing inherited but `PATH`) and
    /// waits for its `listening` line.
    pub fn spawn(name: &str, binary: &Path, env: &[(String, String)]) -> Service {
        Service::spawn_in(name, binary, &[], env, None)
    }

    /// [`Service::spawn`] with command-line `args`, run in `dir` (as a
    /// person types a README's command in a directory).
    pub fn spawn_in(
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: Option<&Path>,
    ) -> Service {
        let mut cmd = Command::new(binary);
        cmd.args(args);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("MALLOC_ARENA_MAX", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut stream in streams {
            let sink = output.clone();
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                // Keep draining so the child never blocks on a full pipe.
                let mut line = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            let text = String::from_utf8_lossy(&line).into_owned();
                            if text.contains("\"listening\"") {
                                let _ = tx.send(text);
                            }
                            line.clear();
                        } else if line.len() < 64 * 1024 {
                            line.push(b);
                        }
                    }
                }
            }));
        }
        drop(tx);
        let line = rx.recv_timeout(PROCESS_LIMIT).unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} never said it was listening:\n{}",
                String::from_utf8_lossy(&output.lock().unwrap())
            )
        });
        let addr = |field: &str| -> SocketAddr {
            json_field(&line, field)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no {field} address in {line}"))
        };
        Service {
            name: name.to_owned(),
            grpc: addr("grpc"),
            admin: addr("admin"),
            child,
            output,
            readers,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reaps the process; returns everything it wrote.
    pub fn kill(mut self) -> Vec<u8> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.drain()
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the exit status and
    /// everything the process wrote.
    pub fn terminate(mut self) -> (ExitStatus, Vec<u8>) {
        self.sigterm();
        let Some(status) = self.wait_for_exit(PROCESS_LIMIT) else {
            let _ = self.child.kill();
            panic!("{} did not exit after SIGTERM", self.name);
        };
        (status, self.drain())
    }

    /// Sends SIGTERM and returns at once (see [`Service::wait_for_exit`]).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success(), "kill -TERM {pid}");
    }

    /// SIGKILL, then reaps the process, keeping what it wrote readable.
    pub fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether anything written so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.output()).contains(needle)
    }

    /// A `/proc/<pid>/status` figure in kB (`VmRSS:`, `VmHWM:`), or 0.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Everything written so far.
    pub fn output(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    fn drain(&mut self) -> Vec<u8> {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.output()
    }

    /// A plain HTTP/1.1 GET on the admin port: (status code, body).
    pub fn admin_get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(self.admin, path)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            if std::thread::panicking() {
                let out = self.output();
                let text = String::from_utf8_lossy(&out);
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- last lines of {} ---", self.name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PROCESS_LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head");
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status code");
    (code, raw[head_end + 4..].to_vec())
}

/// Environment for a hub on `data_dir` serving with `tls` (server bundle
/// files), the `registry` file and optional CRL files; gRPC on `port` (0 for any).
pub fn hub_env(
    data_dir: &Path,
    registry: &Path,
    tls: &BundleFiles,
    crls: &[PathBuf],
    port: u16,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("LACNET_HUB_LISTEN", format!("127.0.0.1:{port}")),
        ("LACNET_HUB_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
        ("LACNET_HUB_DATA_DIR", data_dir.display().to_string()),
        ("LACNET_HUB_REGISTRY", registry.display().to_string()),
        ("LACNET_HUB_TLS_CA", tls.ca.display().to_string()),
        ("LACNET_HUB_TLS_CERT", tls.cert.display().to_string()),
        ("LACNET_HUB_TLS_KEY", tls.key.display().to_string()),
        ("LACNET_HUB_JSON_LOGS", "true".to_owned()),
        ("LACNET_HUB_CACHE_MB", "16".to_owned()),
        // Everything lacnet logs, at its most verbose, for the privacy scan.
        (
            "RUST_LOG",
            "info,lacnet_hub=trace,lacnet_server=trace,lacnet_tls=trace,lacnet_store=trace,lacnet_core=trace"
                .to_owned(),
        ),
    ];
    if !crls.is_empty() {
        let list: Vec<String> = crls.iter().map(|p| p.display().to_string()).collect();
        env.push(("LACNET_HUB_TLS_CRLS", list.join(",")));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Environment for an agent of `site` on `data_dir`: `council` is its
/// server bundle (council CA), `key` its HMAC key file, `hub` the site's client
/// bundle for the hub at `hub_url`. Publishing is quick (debounce 200 ms) and
/// retries fast (50 ms to 500 ms), so tests wait little.
pub fn agent_env(
    site: &str,
    data_dir: &Path,
    key: &Path,
    council: &BundleFiles,
    hub: &BundleFiles,
    hub_url: &str,
) -> Vec<(String, String)> {
    [
        ("LACNET_AGENT_LISTEN", "127.0.0.1:0".to_owned()),
        ("LACNET_AGENT_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
        ("LACNET_AGENT_DATA_DIR", data_dir.display().to_string()),
        ("LACNET_AGENT_KEY_FILES", format!("k1={}", key.display())),
        ("LACNET_AGENT_SITE_CODE", site.to_owned()),
        ("LACNET_AGENT_TLS_CA", council.ca.display().to_string()),
        ("LACNET_AGENT_TLS_CERT", council.cert.display().to_string()),
        ("LACNET_AGENT_TLS_KEY", council.key.display().to_string()),
        ("LACNET_AGENT_HUB_URL", hub_url.to_owned()),
        ("LACNET_AGENT_HUB_SERVER_NAME", crate::HUB_NAME.to_owned()),
        ("LACNET_AGENT_HUB_CA", hub.ca.display().to_string()),
        ("LACNET_AGENT_HUB_CERT", hub.cert.display().to_string()),
        ("LACNET_AGENT_HUB_KEY", hub.key.display().to_string()),
        ("LACNET_AGENT_GRANULARITY", "quarter".to_owned()),
        ("LACNET_AGENT_PUBLISH_DEBOUNCE_MS", "200".to_owned()),
        ("LACNET_AGENT_PUSH_BACKOFF_BASE_MS", "50".to_owned()),
        ("LACNET_AGENT_PUSH_BACKOFF_CAP_MS", "500".to_owned()),
        ("LACNET_AGENT_CACHE_MB", "16".to_owned()),
        ("LACNET_AGENT_JSON_LOGS", "true".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
