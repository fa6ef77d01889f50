//! `lacnet-testkit`: the integration-test infrastructure the hub's tests, the
//! agent's tests and the whole-network tests (`lacnet-e2e`) share, as
//! linkerd2-proxy keeps its in `linkerd/app/test`.
//!
//! - [`TestHub`] and [`TestAgent`]: the real services, served by their own
//!   `serve` on 127.0.0.1:0 over mTLS, ready once gRPC health says `SERVING`.
//! - [`wait_serving`] and [`poll`]: bounded waits for readiness and eventual
//!   consistency, never timing assertions.
//! - [`LogCapture`]: every log line of the test process, for privacy scans.
//! - [`tmpfs`]: a small file system to fill up, for disk-full tests.
//! - [`process`]: the real binaries as child processes, every byte they log kept.
//! - [`copy_dir`]: copies a closed data directory.
//!
//! - [`agent`], [`hub`], [`network`]: each suite's certificates (from
//!   `lacnet_tls::dev`, rcgen), options and builders: the site agent's
//!   tests, the hub's tests, and the whole-network tests with their
//!   independent reference model.

// Each suite starts the services its own way through a small trait of its
// module (`agent::StartAgent`, `hub::StartHub`, `network::StartAgent`);
// only our tests call them, and none needs their futures to be `Send`.
#![allow(async_fn_in_trait)]

pub mod agent;
pub mod hub;
pub mod network;
pub mod process;
pub mod tmpfs;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lacnet_hub::{Hub, HubError, HubOptions};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1 as hub_pb;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_site_agent::{Agent, AgentError, AgentOptions};
use lacnet_tls::PemBundle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Name on the hub's server certificate in every suite.
pub const HUB_NAME: &str = "hub.lacnet";
/// Name on each agent's server certificate in every suite.
pub const AGENT_NAME: &str = "agent.lacnet";
/// Longest any bounded poll waits before failing the test. Generous: a
/// monthly site publishes dozens of linked releases in one round, each
/// protected by integer programs, and debug builds are slow.
pub const POLL_LIMIT: Duration = Duration::from_secs(60);

/// Calls `check` every 20 ms until it gives `Some`, failing the test after
/// [`POLL_LIMIT`]. Readiness and eventual consistency only: never a timing assertion.
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + POLL_LIMIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll`] for a condition that needs no async work.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    poll(what, || std::future::ready(done().then_some(()))).await
}

/// Polls gRPC health on `url` until `service` is SERVING (bounded).
pub async fn wait_serving(url: &str, pem: &PemBundle, server_name: &str, service: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    poll(
        &format!("{service} at {url} to be SERVING"),
        move || async move {
            let channel = lacnet_tls::connect(url, pem, server_name).await.ok()?;
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .ok()?;
            (reply.into_inner().status == ServingStatus::Serving as i32).then_some(())
        },
    )
    .await
}

/// A service served by its own `serve` on 127.0.0.1:0 until stopped.
struct Served<E> {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), E>>,
}

impl<E: Send + 'static> Served<E> {
    async fn start<F>(serve: impl FnOnce(tokio::net::TcpListener, CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, stop.clone()));
        Served { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// The real hub, served on 127.0.0.1:0.
pub struct TestHub {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The open hub.
    pub hub: Hub,
    server_name: String,
    served: Served<HubError>,
}

impl TestHub {
    /// Opens the hub and serves it; returns once health, asked with `pem`
    /// for a server named `server_name`, says SERVING.
    pub async fn serve(options: HubOptions, pem: &PemBundle, server_name: &str) -> TestHub {
        let hub = Hub::open(options).unwrap_or_else(|e| panic!("could not open the hub: {e}"));
        let serving = hub.clone();
        let served = Served::start(move |listener, stop| {
            lacnet_hub::serve(listener, serving, stop.cancelled_owned())
        })
        .await;
        let t = TestHub {
            addr: served.addr,
            hub,
            server_name: server_name.to_owned(),
            served,
        };
        wait_serving(&t.url(), pem, server_name, "lacnet.hub.v1.Submissions").await;
        t
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// An mTLS channel with `pem`.
    pub async fn channel(&self, pem: &PemBundle) -> Channel {
        lacnet_tls::connect(&self.url(), pem, &self.server_name)
            .await
            .unwrap()
    }

    /// A Submissions client with `pem`.
    pub async fn submissions(&self, pem: &PemBundle) -> SubmissionsClient<Channel> {
        SubmissionsClient::new(self.channel(pem).await)
    }

    /// A Reports client with `pem`.
    pub async fn reports(&self, pem: &PemBundle) -> ReportsClient<Channel> {
        ReportsClient::new(self.channel(pem).await)
    }

    /// Submits with `pem`; a connection that fails (rejected certificate) is an `UNAVAILABLE` status.
    pub async fn submit(
        &self,
        pem: &PemBundle,
        sub: pb::Submission,
    ) -> Result<hub_pb::SubmitReceipt, tonic::Status> {
        let channel = lacnet_tls::connect(&self.url(), pem, &self.server_name)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        SubmissionsClient::new(channel)
            .submit(hub_pb::SubmitRequest {
                submission: Some(sub),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits (bounded) for `serve` to return on its own, and gives its result.
    pub async fn finished(self, limit: Duration) -> Result<(), HubError> {
        tokio::time::timeout(limit, self.served.task)
            .await
            .expect("serve did not return on its own")
            .unwrap()
    }

    /// Stops serving (draining calls, flushing sled) and hands back the hub.
    pub async fn stop(self) -> Hub {
        self.served.stop.cancel();
        self.served.task.await.unwrap().unwrap();
        self.hub
    }
}

/// The real site agent, served on 127.0.0.1:0.
pub struct TestAgent {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The open agent.
    pub agent: Agent,
    served: Served<AgentError>,
}

impl TestAgent {
    /// Opens the agent and serves it; returns once health, asked with
    /// `pem` (a council certificate), says SERVING.
    pub async fn serve(options: AgentOptions, pem: &PemBundle) -> TestAgent {
        let agent =
            Agent::open(options).unwrap_or_else(|e| panic!("could not open the agent: {e}"));
        let serving = agent.clone();
        let served = Served::start(move |listener, stop| {
            lacnet_site_agent::serve(listener, serving, stop.cancelled_owned())
        })
        .await;
        let t = TestAgent {
            addr: served.addr,
            agent,
            served,
        };
        wait_serving(&t.url(), pem, AGENT_NAME, "lacnet.site.v1.SiteAgent").await;
        t
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// A SiteAgent client with `pem` (the council's or the operator's).
    pub async fn client(&self, pem: &PemBundle) -> SiteAgentClient<Channel> {
        let channel = lacnet_tls::connect(&self.url(), pem, AGENT_NAME)
            .await
            .unwrap();
        SiteAgentClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// Stops serving (draining, flushing) and hands back the agent.
    pub async fn stop(self) -> Agent {
        self.served.stop.cancel();
        self.served.task.await.unwrap().unwrap();
        self.agent
    }
}

/// Copies a (closed) data directory, e.g. to play a backup back later.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Captures every log line of the process (hub and agents alike) for the privacy scan.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a global subscriber writing to this capture: lacnet crates at
    /// TRACE, everything else at INFO. Call once per test binary.
    pub fn install(&self) {
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,lacnet_hub=trace,lacnet_site_agent=trace,lacnet_tls=trace,lacnet_core=trace,lacnet_server=trace",
            ))
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
            .try_init()
            .unwrap();
    }

    /// Everything logged so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
