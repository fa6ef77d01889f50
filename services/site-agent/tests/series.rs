//! One series per site, at the agent: the data directory records its
//! granularity and the agent refuses to start with another; `reset-series`
//! changes it, and with the hub's registry change the old series is
//! withdrawn at the hub and the new one published.

use std::path::Path;
use std::time::Duration;

use lacnet_core::{Granularity, Period};
use lacnet_site_agent::{Agent, AgentError, AgentOptions, SeriesOutcome};
use lacnet_testkit::agent::*;
use tokio_util::sync::CancellationToken;

/// Opening `options` fails; the error's text.
async fn refused(options: AgentOptions) -> String {
    // A just-dropped agent may still hold the sled lock for a moment.
    for _ in 0..300 {
        match Agent::open(options.clone()) {
            Ok(_) => panic!("the agent opened with another granularity"),
            Err(e @ AgentError::SeriesMismatch { .. }) => return e.to_string(),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("the agent never said why it refused");
}

#[tokio::test]
async fn another_granularity_is_refused_until_the_series_is_reset() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let data = dir.path().join("data");
    let mut o = options(&pki, &data, ring(&[("k1", &k1)]));
    o.granularity = Granularity::Quarter;
    drop(open(o.clone()).await);

    let mut monthly = o.clone();
    monthly.granularity = Granularity::Month;
    let err = refused(monthly.clone()).await;
    for needle in [
        "quarter series",
        "--granularity month",
        "reset-series --to month",
        "registry",
        data.to_str().unwrap(),
    ] {
        assert!(err.contains(needle), "{err:?} should say {needle:?}");
    }

    // The explicit change, then the new series starts and the old one is refused.
    let outcome = lacnet_site_agent::reset_series(&data, Granularity::Month, 8 << 20).unwrap();
    assert_eq!(
        outcome,
        SeriesOutcome::Changed {
            from: Some(Granularity::Quarter),
            forgotten: 0
        }
    );
    assert_eq!(
        lacnet_site_agent::reset_series(&data, Granularity::Month, 8 << 20).unwrap(),
        SeriesOutcome::Unchanged
    );
    drop(open(monthly).await);
    let err = refused(o).await;
    assert!(err.contains("month series"), "{err}");
}

/// The real hub with `registry`, served on 127.0.0.1:0.
struct Hub {
    hub: lacnet_hub::Hub,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), lacnet_hub::HubError>>,
}

impl Hub {
    async fn start(pki: &Pki, dir: &Path, registry: lacnet_hub::Registry) -> Hub {
        let options = lacnet_hub::HubOptions::new(dir, registry, pki.hub_bundle());
        let mut opened = None;
        for _ in 0..300 {
            match lacnet_hub::Hub::open(options.clone()) {
                Ok(h) => {
                    opened = Some(h);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let hub = opened.expect("the hub opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(lacnet_hub::serve(
            listener,
            hub.clone(),
            stop.clone().cancelled_owned(),
        ));
        wait_serving_named(&url, &pki.site, "hub.lacnet", "lacnet.hub.v1.Submissions").await;
        Hub {
            hub,
            url,
            stop,
            task,
        }
    }

    fn target(&self, pki: &Pki) -> lacnet_site_agent::HubTarget {
        lacnet_site_agent::HubTarget {
            url: self.url.clone(),
            server_name: "hub.lacnet".into(),
            tls: pki.site.clone(),
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn registry(thurrock: &str) -> lacnet_hub::Registry {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../hub/registry.toml"))
            .unwrap();
    let quarterly = "adult_population = 134_700\ngranularity = \"quarter\"";
    assert!(text.contains(quarterly));
    let text = text.replace(
        quarterly,
        &format!("adult_population = 134_700\ngranularity = \"{thurrock}\""),
    );
    lacnet_hub::Registry::parse(&text).unwrap()
}

fn pushing(pki: &Pki, data: &Path, keys: &Path, hub: &Hub, g: Granularity) -> AgentOptions {
    let mut o = options(pki, data, ring(&[("k1", keys)]));
    o.policy = lacnet_core::DisclosurePolicy::default();
    o.granularity = g;
    o.hub = Some(hub.target(pki));
    o.publish_debounce = Duration::from_millis(20);
    o.push_backoff_base = Duration::from_millis(20);
    o.push_backoff_cap = Duration::from_millis(200);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_series_withdraws_the_old_one_at_the_hub() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let k1 = key_file(dir.path(), "k1", 1);
    let (data, hub_dir) = (dir.path().join("agent"), dir.path().join("hub"));
    let q1 = Period::parse("2025-Q1").unwrap();
    let jan = Period::parse("2025-01").unwrap();

    // Quarters, published and current at the hub.
    let hub = Hub::start(&pki, &hub_dir, registry("quarter")).await;
    let agent = TestAgent::start(&pki, pushing(&pki, &data, &k1, &hub, Granularity::Quarter)).await;
    let mut c = agent.client(&pki.council).await;
    let records: Vec<_> = (0..30)
        .map(|i| rec(&format!("S-{i}"), "", "2025-01-10"))
        .collect();
    upsert(&mut c, records).await;
    let store = agent.agent.store().clone();
    wait_until("Q1 at the hub", || {
        store.outbox_len() == 0
            && store.last_submission(q1).unwrap().map(|s| s.revision)
                == hub.hub.current_revision(THURROCK, q1)
            && hub.hub.current_revision(THURROCK, q1).is_some()
    })
    .await;
    drop((c, store));
    drop(agent.stop().await);
    hub.stop().await;

    // The registry now says months: the hub withdraws Thurrock's quarters.
    let hub = Hub::start(&pki, &hub_dir, registry("month")).await;
    assert_eq!(hub.hub.current_revision(THURROCK, q1), None);
    assert!(hub.hub.revisions(THURROCK, q1).unwrap().is_empty());
    let log = hub.hub.audit_log().unwrap();
    assert!(
        log.iter()
            .any(|e| e.outcome == "withdrawn" && e.period.as_deref() == Some("2025-Q1")),
        "{log:?}"
    );

    // The agent's side of the change, then months flow.
    match lacnet_site_agent::reset_series(&data, Granularity::Month, 8 << 20).unwrap() {
        SeriesOutcome::Changed { from, forgotten } => {
            assert_eq!(from, Some(Granularity::Quarter));
            assert!(forgotten >= 1, "Q1 was published");
        }
        other => panic!("{other:?}"),
    }
    let agent = TestAgent::start(&pki, pushing(&pki, &data, &k1, &hub, Granularity::Month)).await;
    let store = agent.agent.store().clone();
    assert!(store.last_submission(q1).unwrap().is_none(), "Q1 forgotten");
    wait_until("January at the hub", || {
        store.outbox_len() == 0
            && store.last_submission(jan).unwrap().map(|s| s.revision)
                == hub.hub.current_revision(THURROCK, jan)
            && hub.hub.current_revision(THURROCK, jan).is_some()
    })
    .await;
    assert_eq!(hub.hub.current_revision(THURROCK, q1), None);
    assert!(store.dead_len() == 0, "nothing refused");
    drop(store);
    drop(agent.stop().await);
    hub.stop().await;
}

/// Runs the agent binary with `args` and the test's settings; it must exit
/// within 60 s. Returns (success, stdout + stderr).
fn run_binary(dir: &Path, data: &Path, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lacnet-site-agent"));
    cmd.args(args)
        .env_clear()
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
        .env("LACNET_AGENT_CACHE_MB", "16")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (out.status.success(), text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("the agent {args:?} did not exit: it should have refused to start");
}

#[test]
fn the_binary_refuses_a_passphrase_key_and_another_granularity() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    let data = dir.path().join("data");

    // A passphrase is not a key: refused with how to make one.
    std::fs::write(dir.path().join("k1"), "Thurrock LAC 2025 passphrase\n").unwrap();
    let (ok, out) = run_binary(dir.path(), &data, &[], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("not a lacnet key file") && out.contains("lacnet keygen"),
        "{out}"
    );
    assert!(
        !out.contains("passphrase\n") && !out.contains("LAC 2025"),
        "{out}"
    );

    // A key as `lacnet keygen` writes it; the series is recorded as quarters.
    key_file(dir.path(), "k1", 5);
    let (ok, out) = run_binary(dir.path(), &data, &["reset-series", "--to", "quarter"], &[]);
    assert!(ok && out.contains("to quarter"), "{out}");
    let (ok, out) = run_binary(
        dir.path(),
        &data,
        &[],
        &[("LACNET_AGENT_GRANULARITY", "month")],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("quarter series") && out.contains("reset-series --to month"),
        "{out}"
    );
    let (ok, out) = run_binary(dir.path(), &data, &["reset-series", "--to", "month"], &[]);
    assert!(ok && out.contains("from quarter to month"), "{out}");
}
