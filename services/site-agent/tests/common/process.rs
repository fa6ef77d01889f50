//! The real `lacnet-site-agent` binary as a child process, configured through
//! its environment variables, for tests that need SIGKILL, SIGTERM or a
//! process's own memory and exit status.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::THURROCK;

/// A running agent process.
pub struct AgentProcess {
    pub child: Child,
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// The admin port's `host:port`.
    pub admin: String,
    /// Every log line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    /// Starts the agent on `dir` (which holds the PEM files and `k1`), with
    /// its data in `data`, plus any extra `LACNET_AGENT_*` settings.
    pub fn spawn(dir: &Path, data: &Path, extra: &[(&str, &str)]) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lacnet-site-agent"));
        cmd.env_clear()
            .env("LACNET_AGENT_LISTEN", "127.0.0.1:0")
            .env("LACNET_AGENT_ADMIN_LISTEN", "127.0.0.1:0")
            .env("LACNET_AGENT_DATA_DIR", data)
            .env(
                "LACNET_AGENT_KEY_FILES",
                format!("k1={}", dir.join("k1").display()),
            )
            .env("LACNET_AGENT_SITE_CODE", THURROCK)
            .env("LACNET_AGENT_TLS_CA", dir.join("ca.pem"))
            .env("LACNET_AGENT_TLS_CERT", dir.join("agent.crt"))
            .env("LACNET_AGENT_TLS_KEY", dir.join("agent.key"))
            .env("LACNET_AGENT_JSON_LOGS", "true")
            .env("LACNET_AGENT_CACHE_MB", "16")
            .env("MALLOC_ARENA_MAX", "2")
            .env("RUST_LOG", "info");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = logs.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the child never blocks on a full pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if line.contains("\"listening\"") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "the agent never said it was listening: {:?}",
                    logs.lock().unwrap()
                )
            });
        let field = |name: &str| {
            line.split(&format!("\"{name}\":\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned()
        };
        AgentProcess {
            child,
            url: format!("https://{}", field("grpc")),
            admin: field("admin"),
            logs,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The highest resident set size the process has reached, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// The current resident set size, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// Whether any log line so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The agent's own account of a failed test.
            for line in self.logs.lock().map(|l| l.clone()).unwrap_or_default() {
                if line.contains("\"ERROR\"") || line.contains("\"WARN\"") {
                    eprintln!("agent: {line}");
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
