//! The real `lacnet-site-agent` binary as a child process, configured through
//! its environment variables, for tests that need SIGKILL, SIGTERM or a
//! process's own memory and exit status. Spawning, log capture and signals
//! are `crate::process`'s; this adds the agent's settings.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use crate::process::Service;

use super::THURROCK;

/// A running agent process.
pub struct AgentProcess {
    /// The process.
    pub service: Service,
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// The admin port's `host:port`.
    pub admin: String,
}

impl AgentProcess {
    /// Starts the agent on `dir` (which holds the PEM files and `k1`), with
    /// its data in `data`, plus any extra `LACNET_AGENT_*` settings.
    pub fn spawn(dir: &Path, data: &Path, extra: &[(&str, &str)]) -> AgentProcess {
        let path = |p: &Path| p.display().to_string();
        let mut env: Vec<(String, String)> = [
            ("LACNET_AGENT_LISTEN", "127.0.0.1:0".to_owned()),
            ("LACNET_AGENT_ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
            ("LACNET_AGENT_DATA_DIR", path(data)),
            (
                "LACNET_AGENT_KEY_FILES",
                format!("k1={}", dir.join("k1").display()),
            ),
            ("LACNET_AGENT_SITE_CODE", THURROCK.to_owned()),
            ("LACNET_AGENT_TLS_CA", path(&dir.join("ca.pem"))),
            ("LACNET_AGENT_TLS_CERT", path(&dir.join("agent.crt"))),
            ("LACNET_AGENT_TLS_KEY", path(&dir.join("agent.key"))),
            ("LACNET_AGENT_JSON_LOGS", "true".to_owned()),
            ("LACNET_AGENT_CACHE_MB", "16".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // Later settings win: clap reads the last value of a variable.
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let service = Service::spawn("agent", &crate::process::binary("lacnet-site-agent"), &env);
        AgentProcess {
            url: service.url(),
            admin: service.admin.to_string(),
            service,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.service.sigterm();
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        self.service.sigkill();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.service.wait_for_exit(limit)
    }

    /// The highest resident set size the process has reached, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.service.status_kib("VmHWM:")
    }

    /// The current resident set size, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.service.status_kib("VmRSS:")
    }

    /// Whether any log line so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.service.logged(needle)
    }
}
