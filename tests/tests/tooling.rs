//! Standard gRPC tooling against the real hub and site agent: grpcio's
//! reflection and health clients (Python, `tests/tools/grpc_tools_probe.py`)
//! list each server's services over reflection v1 and v1alpha, resolve their
//! methods from the descriptors served, and health-check them, all over mTLS
//! with certificates made here. Each server must list exactly what it serves.
//!
//! Needs python3 with `grpcio grpcio-reflection grpcio-health-checking`
//! (`.ci/run` installs them when missing); set `LACNET_SKIP_GRPC_TOOLS=1` to
//! skip on a machine without them.

use std::path::Path;
use std::process::Command;

use lacnet_core::period::Granularity;
use lacnet_site_agent::AgentOptions;
use lacnet_testkit::network::*;
use lacnet_tls::PemBundle;

/// Writes a bundle's PEM files into `dir` as `<stem>-ca.pem`, `<stem>.pem`, `<stem>.key`.
fn write_bundle(dir: &Path, stem: &str, pem: &PemBundle) -> [String; 3] {
    let paths = [
        dir.join(format!("{stem}-ca.pem")),
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    ];
    for (path, bytes) in paths.iter().zip([&pem.ca, &pem.cert, &pem.key]) {
        std::fs::write(path, bytes).unwrap();
    }
    paths.map(|p| p.display().to_string())
}

/// Whether python3 can import the grpcio packages; panics with the fix if
/// not, unless the skip variable is set.
fn tools_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, grpc_health"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("LACNET_SKIP_GRPC_TOOLS").is_some() {
            eprintln!("LACNET_SKIP_GRPC_TOOLS set: not probing with grpcio");
            return false;
        }
        panic!(
            "python3 with grpcio is missing: `python3 -m pip install grpcio grpcio-reflection \
             grpcio-health-checking` (.ci/run does), or set LACNET_SKIP_GRPC_TOOLS=1"
        );
    }
    true
}

/// Runs the probe and returns what it printed (one JSON object).
fn probe(
    addr: std::net::SocketAddr,
    server_name: &str,
    files: &[String; 3],
    health: &[&str],
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/grpc_tools_probe.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--target", &addr.to_string()])
        .args(["--server-name", server_name])
        .args(["--ca", &files[0], "--cert", &files[1], "--key", &files[2]]);
    for service in health {
        cmd.args(["--health", service]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sorted strings of the JSON array at `key`.
fn names(json: &serde_json::Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = json[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

const STANDARD: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn expected(own: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = own
        .iter()
        .chain(STANDARD.iter())
        .map(|s| (*s).to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_tools_see_exactly_what_each_server_serves() {
    if !tools_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let net = NetworkPki::new();
    let registry = root.path().join("registry.toml");
    std::fs::write(&registry, registry_toml()).unwrap();
    let hub = TestHub::start(&net, &root.path().join("hub"), &registry).await;

    let council = CouncilPki::new("thurrock");
    let key = root.path().join("k1");
    random_key_file(&key, "k1");
    let keys = lacnet_site_agent::keys::load_ring(&[("k1".into(), key)]).unwrap();
    let mut o = AgentOptions::new(
        root.path().join("agent"),
        THURROCK,
        keys,
        council.agent.clone(),
    );
    o.granularity = Granularity::Quarter;
    o.cache_bytes = 8 * 1024 * 1024;
    let agent = TestAgent::start(&council, o).await;

    let analyst = write_bundle(root.path(), "analyst", &net.analyst);
    let hub_json = tokio::task::spawn_blocking(move || {
        probe(
            hub.addr,
            HUB_NAME,
            &analyst,
            &["", "lacnet.hub.v1.Submissions", "lacnet.hub.v1.Reports"],
        )
    });
    let operator = write_bundle(root.path(), "operator", &council.operator);
    let agent_addr = agent.addr;
    let agent_json = tokio::task::spawn_blocking(move || {
        probe(
            agent_addr,
            AGENT_NAME,
            &operator,
            &["", "lacnet.site.v1.SiteAgent"],
        )
    });
    let (hub_json, agent_json) = (hub_json.await.unwrap(), agent_json.await.unwrap());

    // The hub lists its two services and the standard ones, never the agent's.
    let hub_services = expected(&["lacnet.hub.v1.Reports", "lacnet.hub.v1.Submissions"]);
    assert_eq!(names(&hub_json, "v1alpha"), hub_services, "{hub_json}");
    assert_eq!(names(&hub_json, "v1"), hub_services, "{hub_json}");
    // Methods resolve from the descriptors the hub serves, health included.
    let methods = &hub_json["methods"];
    assert_eq!(
        methods["lacnet.hub.v1.Submissions"],
        serde_json::json!(["Submit", "ListReleases"])
    );
    assert!(names(methods, "lacnet.hub.v1.Reports").contains(&"CompareMetric".to_owned()));
    assert_eq!(
        methods["grpc.health.v1.Health"],
        serde_json::json!(["Check", "Watch"])
    );
    for service in ["", "lacnet.hub.v1.Submissions", "lacnet.hub.v1.Reports"] {
        assert_eq!(hub_json["health"][service], "SERVING", "{hub_json}");
    }

    // The agent lists its one service and the standard ones, never the hub's.
    let agent_services = expected(&["lacnet.site.v1.SiteAgent"]);
    assert_eq!(
        names(&agent_json, "v1alpha"),
        agent_services,
        "{agent_json}"
    );
    assert_eq!(names(&agent_json, "v1"), agent_services, "{agent_json}");
    let methods = &agent_json["methods"];
    assert!(names(methods, "lacnet.site.v1.SiteAgent").contains(&"UpsertRecords".to_owned()));
    assert!(
        methods["grpc.reflection.v1.ServerReflection"].is_array(),
        "{agent_json}"
    );
    for service in ["", "lacnet.site.v1.SiteAgent"] {
        assert_eq!(agent_json["health"][service], "SERVING", "{agent_json}");
    }

    agent.stop().await;
    hub.stop().await;
}
