//! Tests that drive the real `lacnet` binary. The network tests start the real
//! hub and a real site agent in this process on 127.0.0.1:0, with mTLS using
//! the certificates `lacnet certs` wrote and the key `lacnet keygen` wrote,
//! and sled in temp dirs; the binary then talks to them over gRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use lacnet_hub::{Hub, HubOptions, Registry};
use lacnet_site_agent::{Agent, AgentOptions, HubTarget};
use lacnet_tls::{PemBundle, TlsPaths};
use tokio_util::sync::CancellationToken;

const THURROCK: &str = "E06000034";

fn lacnet() -> Command {
    let mut c = Command::cargo_bin("lacnet").unwrap();
    // Tests never pick up a developer's own settings.
    c.env_remove("LACNET_CONFIG")
        .current_dir(std::env::temp_dir());
    c
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "lacnet failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    // Flexible: a rejects file copies a short row as it was.
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            header
                .iter()
                .map(str::to_owned)
                .zip(row.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[test]
fn help_lists_every_command() {
    let help = stdout(lacnet().arg("--help"));
    for cmd in [
        "demo",
        "generate",
        "import",
        "report",
        "keygen",
        "certs",
        "status",
        "preview",
        "erase",
        "bench-import",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}:\n{help}"
        );
    }
    assert!(help.contains("lacnet.toml"), "{help}");
    let report_help = stdout(lacnet().args(["report", "--help"]));
    for f in ["- table:", "- csv:", "- json:", "- html:"] {
        assert!(
            report_help.contains(f),
            "report --help lacks {f}:\n{report_help}"
        );
    }
}

#[test]
fn thurrock_profile_matches_the_seeds_evaluation() {
    let text = stdout(lacnet().args(["generate", "--site", "thurrock", "--seed", "42"]));
    let rows = read_csv(&text);
    // 256 people in the first 14 months (from June 2013).
    assert_eq!(rows.len(), 256);
    let people: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            if r["nhs_number"].is_empty() {
                format!("case:{}", r["local_case_id"])
            } else {
                format!("nhs:{}", r["nhs_number"])
            }
        })
        .collect();
    assert_eq!(people.len(), 256, "every row is a different person");
    for r in &rows {
        let d = r["introduced_on"].as_str();
        assert!(
            ("2013-06-01"..="2014-07-31").contains(&d),
            "{d} is outside the first 14 months"
        );
        let nhs = &r["nhs_number"];
        assert!(
            nhs.is_empty() || lacnet_core::validate::nhs_number_is_valid(nhs),
            "{nhs}"
        );
    }
    // Aged 18 to 98.
    let ages: Vec<i32> = rows
        .iter()
        .map(|r| match r["age_years"].parse::<i32>() {
            Ok(a) => a,
            Err(_) => {
                r["introduced_on"][..4].parse::<i32>().unwrap()
                    - r["year_of_birth"].parse::<i32>().unwrap()
            }
        })
        .collect();
    assert_eq!(ages.iter().min(), Some(&18));
    assert_eq!(ages.iter().max(), Some(&98));
    // 31% older people, 27% mental health.
    let share = |need: &str| {
        let n = rows.iter().filter(|r| r["primary_need"] == need).count();
        (n as f64 * 100.0 / 256.0).round() as u32
    };
    assert_eq!(share("older_people_frailty"), 31);
    assert_eq!(share("mental_health"), 27);
    // 19 alternatives to day services, 18 volunteering.
    // Outcomes carry the day they were achieved (`id@YYYY-MM-DD`), inside
    // the first 14 months, so the evaluation of that window counts them all.
    let with = |o: &str| {
        rows.iter()
            .filter(|r| {
                r["outcomes"].split(';').any(|x| {
                    let (id, on) = x.split_once('@').unwrap_or((x, ""));
                    id == o && ("2013-06-01"..="2014-07-31").contains(&on)
                })
            })
            .count()
    };
    assert_eq!(with("alternative_to_day_services"), 19);
    assert_eq!(with("volunteering"), 18);
    // The same seed gives the same file; another seed another one.
    assert_eq!(
        text,
        stdout(lacnet().args(["generate", "--site", "thurrock", "--seed", "42"]))
    );
    assert_ne!(
        text,
        stdout(lacnet().args(["generate", "--site", "thurrock", "--seed", "43"]))
    );
}

#[test]
fn derby_has_about_fifty_level_2_people_in_its_first_year() {
    let rows = read_csv(&stdout(lacnet().args(["generate", "--site", "derby"])));
    let level2 = rows.iter().filter(|r| r["support_level"] == "2").count();
    assert!((45..=55).contains(&level2), "{level2}");
    assert!(
        rows.iter()
            .all(|r| ("2012-04-01"..="2013-03-31").contains(&r["introduced_on"].as_str()))
    );
}

#[test]
fn keygen_writes_a_private_key_the_agent_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k2025");
    let out = stdout(
        lacnet()
            .args(["keygen", "--id", "k2025", "--out"])
            .arg(&path),
    );
    let ring = lacnet_site_agent::keys::load_ring(&[("k2025".into(), path.clone())]).unwrap();
    let fp = ring.active().1.fingerprint();
    assert!(
        out.contains(&fp),
        "keygen prints the fingerprint the agent computes: {out}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("lacnet-key v1") && text.contains("id k2025"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Never overwrites by accident.
    lacnet()
        .args(["keygen", "--id", "k2025", "--out"])
        .arg(&path)
        .assert()
        .failure();
}

/// The hub and one site agent, started from files the CLI wrote.
struct Network {
    dir: tempfile::TempDir,
    pki: PathBuf,
    hub_url: String,
    agent_url: String,
    agent: Agent,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn tls(dir: &Path, ca: &str, stem: &str) -> PemBundle {
    PemBundle::load(&TlsPaths {
        ca: dir.join(ca),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
        crls: Vec::new(),
    })
    .unwrap()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Network {
    /// `lacnet certs` + `lacnet keygen`, then the real hub and agent with those files.
    async fn start() -> Network {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        lacnet()
            .args([
                "certs",
                "--site",
                THURROCK,
                "--analyst",
                "alice",
                "--council",
                "thurrock",
                "--out",
            ])
            .arg(&pki)
            .assert()
            .success();
        lacnet()
            .args(["keygen", "--id", "k1", "--out"])
            .arg(pki.join("k1"))
            .assert()
            .success();

        let registry = Registry::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../hub/registry.toml"
        )))
        .unwrap();
        let hub = Hub::open(HubOptions::new(
            dir.path().join("hub"),
            registry,
            tls(&pki, "network-ca.pem", "hub"),
        ))
        .unwrap();
        let ring = lacnet_site_agent::keys::load_ring(&[("k1".into(), pki.join("k1"))]).unwrap();
        let stop = CancellationToken::new();
        let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub_url = format!("https://{}", hub_listener.local_addr().unwrap());
        let mut o = AgentOptions::new(
            dir.path().join("agent"),
            THURROCK,
            ring,
            tls(&pki, "council-ca.pem", "agent"),
        );
        o.hub = Some(HubTarget {
            url: hub_url.clone(),
            server_name: "hub.lacnet".into(),
            tls: tls(&pki, "network-ca.pem", &format!("site-{THURROCK}")),
        });
        o.publish_debounce = Duration::from_millis(50);
        o.push_backoff_base = Duration::from_millis(20);
        o.cache_bytes = 8 * 1024 * 1024;
        let agent = Agent::open(o).unwrap();
        let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_url = format!("https://{}", agent_listener.local_addr().unwrap());
        let s = stop.clone();
        let t1 = tokio::spawn(async move {
            lacnet_hub::serve(hub_listener, hub, s.cancelled_owned())
                .await
                .unwrap();
        });
        let s = stop.clone();
        let a = agent.clone();
        let t2 = tokio::spawn(async move {
            lacnet_site_agent::serve(agent_listener, a, s.cancelled_owned())
                .await
                .unwrap();
        });
        Network {
            dir,
            pki,
            hub_url,
            agent_url,
            agent,
            stop,
            tasks: vec![t1, t2],
        }
    }

    /// `lacnet` with the config `lacnet certs` wrote and this network's URLs.
    fn cmd(&self) -> Command {
        let mut c = lacnet();
        c.env("LACNET_CONFIG", self.pki.join("lacnet.toml"))
            .env("LACNET_AGENT_URL", &self.agent_url)
            .env("LACNET_HUB_URL", &self.hub_url);
        c
    }

    /// A command retried (bounded) until the server answers: readiness without sleeps.
    fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.cmd().arg("status").output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "the agent never answered");
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        drop(self.agent);
        drop(self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_report_and_site_operations_against_a_real_network() {
    let net = Network::start().await;
    net.ready();

    // A file with good rows, rows the CLI refuses, and rows the agent refuses.
    let data = net.dir.path().join("mixed.csv");
    let good = stdout(lacnet().args(["generate", "--site", "thurrock", "--seed", "3"]));
    let mut text = good.clone();
    text.push_str("BAD-1,,2014-01-05,,2,40,,sadness,self,,,\n"); // unknown need: local
    text.push_str("BAD-2,,05/01/2014,,2,40,,carer,self,,,\n"); // not an ISO date: local
    text.push_str("BAD-3,,2014-01-05,,2\n"); // too few fields: local
    text.push_str("BAD-4,9434765918,2014-01-05,,2,40,,carer,self,,,\n"); // bad check digit: agent
    text.push_str("BAD-5,,2099-01-05,,2,40,,carer,self,,,\n"); // in the future: agent
    std::fs::write(&data, &text).unwrap();
    let rejects = net.dir.path().join("mixed.rejects.csv");
    let out = net
        .cmd()
        .args(["import", "--chunk-rows", "100"])
        .arg(&data)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "rejections give exit code 3: {so}"
    );
    assert!(
        so.contains("261 rows: 256 accepted, 5 rejected (3 here, 2 by the agent)"),
        "{so}"
    );
    assert!(
        !so.contains("9434765918"),
        "no identifier on the terminal: {so}"
    );
    let rows = read_csv(&std::fs::read_to_string(&rejects).unwrap());
    let by_case: BTreeMap<&str, &BTreeMap<String, String>> = rows
        .iter()
        .map(|r| (r["local_case_id"].as_str(), r))
        .collect();
    assert_eq!(by_case["BAD-1"]["lacnet_line"], "258");
    assert_eq!(by_case["BAD-1"]["lacnet_field"], "primary_need");
    assert_eq!(by_case["BAD-1"]["lacnet_column"], "8");
    assert!(by_case["BAD-1"]["lacnet_reason"].contains("sadness"));
    // The original row follows, under the original header.
    assert_eq!(by_case["BAD-1"]["primary_need"], "sadness");
    assert_eq!(by_case["BAD-1"]["introduced_on"], "2014-01-05");
    assert_eq!(by_case["BAD-2"]["lacnet_column"], "3");
    assert!(by_case["BAD-3"]["lacnet_reason"].contains("fields"));
    assert_eq!(by_case["BAD-4"]["lacnet_field"], "nhs_number");
    assert_eq!(by_case["BAD-4"]["lacnet_line"], "261");
    assert_eq!(by_case["BAD-4"]["lacnet_column"], "2");
    assert_eq!(by_case["BAD-5"]["lacnet_line"], "262");
    assert_eq!(by_case["BAD-5"]["lacnet_field"], "introduced_on");

    // Re-importing the good rows is safe and rejects nothing (exit 0, no rejects file left).
    let good_file = net.dir.path().join("good.csv");
    std::fs::write(&good_file, &good).unwrap();
    net.cmd().arg("import").arg(&good_file).assert().success();
    assert!(!net.dir.path().join("good.rejects.csv").exists());

    // The worked mapping example: 4 rows map, one unmapped code is rejected by name.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mapped_rejects = net.dir.path().join("casesys.rejects.csv");
    let out = net
        .cmd()
        .args(["import", "--map"])
        .arg(examples.join("casesys-mapping.toml"))
        .arg("--rejects")
        .arg(&mapped_rejects)
        .arg(examples.join("casesys-export.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(so.contains("5 rows: 4 accepted, 1 rejected"), "{so}");
    let rejected = std::fs::read_to_string(&mapped_rejects).unwrap();
    let rows = read_csv(&rejected);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Case Ref"], "CS-1005");
    assert!(
        rows[0]["lacnet_reason"].contains("\"ASD\""),
        "{:?}",
        rows[0]
    );
    // Fixed in the rejects file, the rejects import alone with the same mapping.
    let fixed = net.dir.path().join("casesys-fixed.csv");
    std::fs::write(&fixed, rejected.replace(",ASD,", ",LD,")).unwrap();
    let out = net
        .cmd()
        .args(["import", "--map"])
        .arg(examples.join("casesys-mapping.toml"))
        .arg(&fixed)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{so}");
    assert!(so.contains("1 rows: 1 accepted, 0 rejected"), "{so}");

    // Status: records and key id.
    let status = stdout(net.cmd().arg("status"));
    assert!(
        status.contains("E06000034")
            && status.contains("records")
            && status.contains("k1 (fingerprint"),
        "{status}"
    );

    // Preview: the exact submission for a period, as a table.
    let preview = stdout(net.cmd().args(["preview", "--period", "2014-Q1"]));
    assert!(
        preview.contains("people_new") && preview.contains("counts 1-7 suppressed"),
        "{preview}"
    );

    // Wait until the agent has pushed, then report in every format.
    net.agent.publish_now().await.unwrap();
    let agent = net.agent.clone();
    wait_until("the outbox to drain", || agent.store().outbox_len() == 0).await;
    let table = stdout(net.cmd().args(["report", "--period", "2014-Q1"]));
    assert!(
        table.contains("LAC Network summary, 2014-Q1") && table.contains("Thurrock"),
        "{table}"
    );
    assert!(table.contains("People newly introduced"), "{table}");

    let csv_text = stdout(
        net.cmd()
            .args(["report", "--period", "2014-Q1", "--format", "csv"]),
    );
    assert!(
        csv_text.starts_with('\u{feff}'),
        "a BOM so spreadsheets read UTF-8"
    );
    let rows = read_csv(&csv_text);
    let people_new = rows
        .iter()
        .find(|r| {
            r["section"] == "summary" && r["metric"] == "people_new" && r["site_code"] == THURROCK
        })
        .unwrap();
    let v: u64 = people_new["value"].parse().unwrap();
    assert!(v > 0 && v % 5 == 0, "rounded to 5: {v}");
    for r in rows.iter().filter(|r| r["suppressed"] == "yes") {
        assert_eq!(
            r["value"], "",
            "a suppressed count is never written as a number"
        );
    }
    assert!(
        rows.iter().any(|r| r["suppressed"] == "yes"),
        "small outcome counts are suppressed"
    );

    let json: serde_json::Value = serde_json::from_str(&stdout(
        net.cmd()
            .args(["report", "--period", "2014-Q1", "--format", "json"]),
    ))
    .unwrap();
    assert_eq!(json["summary"]["period"], "2014-Q1");
    let values: Vec<&serde_json::Value> = json["summary"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["comparison"]["sites"][0]["value"])
        .collect();
    assert!(values.iter().any(|v| v.as_str() == Some("suppressed")));
    assert!(
        values
            .iter()
            .all(|v| v.is_u64() || v.as_str() == Some("suppressed"))
    );

    let html_path = net.dir.path().join("r.html");
    net.cmd()
        .args(["report", "--period", "2014-Q1", "--format", "html", "--out"])
        .arg(&html_path)
        .assert()
        .success();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("withheld (may be 0)"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained: no network references"
    );

    let metric = stdout(net.cmd().args([
        "report",
        "--metric",
        "people_new",
        "--from",
        "2013-Q3",
        "--to",
        "2014-Q2",
        "--format",
        "csv",
    ]));
    let periods: BTreeSet<String> = read_csv(&metric)
        .into_iter()
        .map(|r| r["period"].clone())
        .collect();
    assert_eq!(periods.len(), 4, "{periods:?}");

    // Analysts see the day a figure was published and whether it was
    // revised, never a revision number or a time, in any format.
    let today = lacnet_core::Date::from_unix_seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
    .to_string();
    let site = json["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == THURROCK)
        .unwrap();
    assert_eq!(site["last_published_on"].as_str(), Some(today.as_str()));
    assert!(site["last_revised"].is_boolean());
    assert!(
        html.contains(&format!("(published {today}")),
        "the day in the HTML"
    );
    let revisions: Vec<String> = net
        .agent
        .store()
        .last_submissions()
        .unwrap()
        .iter()
        .map(|s| s.revision.to_string())
        .collect();
    assert!(!revisions.is_empty());
    let time_of_day = |t: &str| {
        t.as_bytes().windows(8).any(|w| {
            w.iter().enumerate().all(|(i, b)| {
                if i == 2 || i == 5 {
                    *b == b':'
                } else {
                    b.is_ascii_digit()
                }
            })
        })
    };
    let json_text = json.to_string();
    for (format, out) in [
        ("table", &table),
        ("csv", &csv_text),
        ("json", &json_text),
        ("html", &html),
        ("metric csv", &metric),
    ] {
        let lower = out.to_lowercase();
        assert!(!lower.contains("revision"), "{format}: names a revision");
        assert!(
            !lower.contains("generated_at") && !lower.contains("received_at"),
            "{format}"
        );
        assert!(!time_of_day(out), "{format}: shows a time of day");
        for r in &revisions {
            assert!(!out.contains(r.as_str()), "{format}: shows revision {r}");
        }
    }

    // Erase by case id: one record goes.
    let erased = stdout(net.cmd().args(["erase", "--case-id", "CS-1001"]));
    assert!(erased.contains("erased 1 record"), "{erased}");
    assert!(erased.contains("--readmit-erased"), "{erased}");

    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_short_and_actionable() {
    let net = Network::start().await;
    net.ready();
    // Wrong role: an analyst certificate at the site agent.
    let out = net
        .cmd()
        .arg("status")
        .arg("--agent-ca")
        .arg(net.pki.join("network-ca.pem"))
        .arg("--operator-cert")
        .arg(net.pki.join("analyst-alice.pem"))
        .arg("--operator-key")
        .arg(net.pki.join("analyst-alice.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error:") && (err.contains("operator") || err.contains("certificate")),
        "{err}"
    );
    // The case system's certificate pushes records but may not read status.
    let out = net
        .cmd()
        .arg("status")
        .arg("--operator-cert")
        .arg(net.pki.join("council-thurrock.pem"))
        .arg("--operator-key")
        .arg(net.pki.join("council-thurrock.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("council:thurrock may not read status") && err.contains("operator"),
        "{err}"
    );
    // Wrong role the other way: a council certificate at the hub.
    let out = net
        .cmd()
        .args(["report", "--period", "2014-Q1"])
        .arg("--hub-ca")
        .arg(net.pki.join("council-ca.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Unreachable agent.
    let out = lacnet()
        .env("LACNET_CONFIG", net.pki.join("lacnet.toml"))
        .args(["status", "--agent-url", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the site agent at https://127.0.0.1:1"),
        "{err}"
    );
    // A CSV whose header lacks a required column fails at line 1.
    let bad = net.dir.path().join("bad.csv");
    std::fs::write(&bad, "local_case_id,introduced_on\nX,2014-01-01\n").unwrap();
    let out = net.cmd().arg("import").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("line 1") && err.contains("support_level"),
        "{err}"
    );
    // No certificates configured at all.
    let out = lacnet().arg("status").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--agent-ca") && err.contains("lacnet certs"),
        "{err}"
    );
    net.stop().await;
}

#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo.html");
    let out = stdout(
        lacnet()
            .args(["demo", "--rows", "400", "--report"])
            .arg(&report),
    );
    for want in [
        "[1/6]",
        "[6/6]",
        "Derby",
        "Thurrock",
        "Swansea",
        "LAC Network summary, 2016-Q1",
        "Demo finished",
    ] {
        assert!(out.contains(want), "demo output lacks {want}:\n{out}");
    }
    assert!(out.contains("400 accepted"), "{out}");
    // The temporary directory is gone afterwards.
    let pki = out
        .lines()
        .find_map(|l| l.split('(').nth(1).and_then(|s| s.strip_suffix(')')))
        .map(PathBuf::from)
        .unwrap();
    assert!(pki.ends_with("pki"), "{pki:?}");
    assert!(!pki.exists(), "{} was left behind", pki.display());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.matches("class=\"bar\"").count() > 20);
    // The summary's period is the one its site table gives for every site,
    // and the report says how it was chosen.
    assert!(
        html.matches("<td>2016-Q1</td>").count() == 3
            && html.contains("Period 2016-Q1: the latest month or quarter"),
        "the demo's summary and its site table disagree"
    );

    // The browser check: headless Chromium renders the report with its charts.
    browser_renders(&report);
}

/// Renders the HTML in headless Chromium: the DOM it built has the charts, and
/// the screenshot is far from blank.
fn browser_renders(report: &Path) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(chromium) = chromium else {
        if std::env::var_os("LACNET_SKIP_BROWSER").is_some() {
            eprintln!("LACNET_SKIP_BROWSER set: not rendering in Chromium");
            return;
        }
        panic!(
            "Chromium is missing: `apt-get install -y chromium` (.ci/run does), or set LACNET_SKIP_BROWSER=1"
        );
    };
    let url = format!("file://{}", report.display());
    let dom = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.matches("<svg").count() > 20,
        "charts in the rendered DOM"
    );
    assert!(dom.contains("class=\"point\""), "funnel points drawn");
    assert!(dom.contains("class=\"trend\""), "trend lines drawn");
    let shot = report.with_extension("png");
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,2400",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    // A blank 1000x2400 page compresses to a few KB; coloured charts and text do not.
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(size > 60_000, "the screenshot looks blank ({size} bytes)");
}

const HEADER: &str = "local_case_id,nhs_number,introduced_on,closed_on,support_level,age_years,year_of_birth,primary_need,introduction_source,outcomes,ward_code,last_contact_on\n";

/// Runs `lacnet` and returns (exit code, stdout, stderr).
fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_help_points_to_the_columns_and_their_codes() {
    let help = stdout(lacnet().args(["import", "--help"]));
    assert!(help.contains("lacnet import --columns"), "{help}");
    assert!(help.contains("--readmit-erased"), "{help}");
    let cols = stdout(lacnet().args(["import", "--columns"]));
    for want in [
        "local_case_id",
        "required",
        "last_contact_on",
        "mental_health",
        "social_isolation",
        "voluntary_community",
        "alternative_to_day_services",
        "volunteering@2024-03-02",
        "[codes.",
    ] {
        assert!(cols.contains(want), "--columns lacks {want}:\n{cols}");
    }
    // Each command lists only the connection flags it uses, under their own heading.
    let help_of = |cmd: &str| stdout(lacnet().args([cmd, "--help"]));
    for (cmd, connects, has, lacks) in [
        (
            "import",
            true,
            &["--agent-cert", "--agent-url", "--config"][..],
            &["--hub-url", "--operator-cert"][..],
        ),
        (
            "status",
            true,
            &["--operator-cert", "--agent-ca"],
            &["--agent-cert", "--hub-ca"],
        ),
        ("erase", true, &["--operator-key"], &["--hub-key"]),
        (
            "report",
            true,
            &["--hub-ca", "--hub-cert"],
            &["--agent-url", "--operator-cert"],
        ),
        (
            "keygen",
            false,
            &[],
            &["--hub-url", "--agent-url", "--config"],
        ),
        (
            "demo",
            false,
            &["--keep", "--report"],
            &["--hub-url", "--agent-url"],
        ),
        ("generate", false, &[], &["--hub-url", "--agent-url"]),
    ] {
        let help = help_of(cmd);
        for f in has {
            assert!(help.contains(f), "{cmd} --help lacks {f}:\n{help}");
        }
        for f in lacks {
            assert!(!help.contains(f), "{cmd} --help shows {f}:\n{help}");
        }
        assert_eq!(help.contains("\nConnection ("), connects, "{cmd}:\n{help}");
    }
    let erase = stdout(lacnet().args(["erase", "--help"]));
    assert!(
        erase.contains("remembers") && erase.contains("--readmit-erased"),
        "{erase}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_council_import_refuses_what_it_should_and_says_why() {
    let net = Network::start().await;
    net.ready();
    let dir = net.dir.path();

    // A mapping typo ("End date" for "End Date") fails before any row is sent.
    let export = dir.join("export.csv");
    std::fs::write(
        &export,
        "Case Ref,Referral Date,End Date,Level,Age,Need Code,Referred By\n\
         T-1,03/06/2013,01/07/2013,2,72,older_people_frailty,GP\n\
         T-2,04/06/2013,,2,35,carer,self\n",
    )
    .unwrap();
    let map = dir.join("map.toml");
    std::fs::write(
        &map,
        "[columns]\nlocal_case_id = \"Case Ref\"\nintroduced_on = \"Referral Date\"\n\
         closed_on = \"End date\"\nsupport_level = \"Level\"\nage_years = \"Age\"\n\
         primary_need = \"Need Code\"\nintroduction_source = \"Referred By\"\n\
         [format]\ndate = \"dd/mm/yyyy\"\n[codes.introduction_source]\nGP = \"gp_health\"\n",
    )
    .unwrap();
    let (code, _, err) = run(net.cmd().args(["import", "--map"]).arg(&map).arg(&export));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 1")
            && err.contains("\"End date\" (mapped from closed_on")
            && err.contains("did you mean \"End Date\"?")
            && err.contains("The header's columns are: Case Ref, Referral Date, End Date"),
        "{err}"
    );
    assert_eq!(net.agent.store().record_count().unwrap(), 0, "nothing sent");
    // Fixed, it imports. Lacnet's own codes pass through a code table
    // (`self` for the source) as well as where there is none (the need).
    std::fs::write(
        &map,
        std::fs::read_to_string(&map)
            .unwrap()
            .replace("End date", "End Date"),
    )
    .unwrap();
    let (code, out, err) = run(net.cmd().args(["import", "--map"]).arg(&map).arg(&export));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 rows: 2 accepted, 0 rejected"), "{out}");

    // Rows that must be refused, and a rejects file that is safe to open.
    let huge = "X".repeat(10 << 20);
    let data = dir.join("council.csv");
    let mut text = HEADER.to_owned();
    text.push_str("P-1,,2014-01-05,,2,40,,carer,self,,,\n"); // line 2
    text.push_str("P-2,0000000000,2014-01-06,,2,40,,carer,self,,,\n"); // line 3: never issued
    text.push_str("P-3,,2014-01-07,,2,40,,sadness,self,,,\n"); // line 4: fixable
    text.push_str("P-1,,2014-01-08,,2,41,,carer,self,,,\n"); // line 5: same case id as line 2
    text.push_str("\"=HYPERLINK(\"\"http://x\"\")\",,2014-01-09,,2,40,,@SUM(1),self,,,\n"); // line 6
    text.push_str(&format!("{huge},,2014-01-10,,2,40,,carer,self,,,\n")); // line 7: 10 MB case id
    std::fs::write(&data, &text).unwrap();
    let (code, out, err) = run(net.cmd().args(["import"]).arg(&data));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("6 rows: 1 accepted, 5 rejected (3 here, 2 by the agent)"),
        "{out}"
    );
    // ward_code is empty in every row: a warning, not a rejection.
    assert!(
        err.contains(
            "warning: column 11 (\"ward_code\", lacnet's ward_code) is empty in all 6 rows"
        ),
        "{err}"
    );
    let rejects_path = dir.join("council.rejects.csv");
    let size = std::fs::metadata(&rejects_path).unwrap().len();
    assert!(size < 4096, "every echoed value is bounded: {size} bytes");
    let rejected = std::fs::read_to_string(&rejects_path).unwrap();
    let rows = read_csv(&rejected);
    let at = |line: &str| {
        rows.iter()
            .find(|r| r["lacnet_line"] == line)
            .unwrap_or_else(|| panic!("no rejection for line {line}: {rejected}"))
    };
    assert_eq!(at("3")["lacnet_field"], "nhs_number");
    assert!(
        at("3")["lacnet_reason"].contains("never issues"),
        "{rejected}"
    );
    assert_eq!(at("5")["lacnet_field"], "local_case_id");
    assert_eq!(at("5")["lacnet_column"], "1");
    assert!(
        at("5")["lacnet_reason"].contains("the same case id as line 2"),
        "{rejected}"
    );
    // Formula injection neutralised, in the echoed row and in the reason.
    assert_eq!(at("6")["local_case_id"], "'=HYPERLINK(\"http://x\")");
    assert_eq!(at("6")["primary_need"], "'@SUM(1)");
    assert!(
        rows.iter()
            .flat_map(|r| r.values())
            .all(|v| !v.starts_with(['=', '+', '-', '@'])),
        "{rejected}"
    );
    assert_eq!(at("7")["lacnet_field"], "local_case_id");
    assert!(at("7")["local_case_id"].ends_with("(10485760 bytes in all)"));
    // Fix the one fixable row in the rejects file and import it alone.
    let fixed = dir.join("fixed.csv");
    let keep: Vec<&str> = rejected
        .lines()
        .filter(|l| l.starts_with("lacnet_line") || l.starts_with("4,"))
        .collect();
    std::fs::write(&fixed, keep.join("\n").replace("sadness", "carer") + "\n").unwrap();
    let (code, out, err) = run(net.cmd().arg("import").arg(&fixed));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 rows: 1 accepted, 0 rejected"), "{out}");

    // More agent rejections than a stream summary lists: each row is still
    // copied whole, read again from its place in the file.
    let many = dir.join("future.csv");
    let mut text = HEADER.to_owned();
    for i in 0..120 {
        text.push_str(&format!(
            "F-{i},,2099-01-05,,2,40,,carer,self,,E05002035,\n"
        ));
    }
    std::fs::write(&many, &text).unwrap();
    let (code, out, err) = run(net.cmd().arg("import").arg(&many));
    assert_eq!(code, Some(3), "{out}{err}");
    let rows = read_csv(&std::fs::read_to_string(dir.join("future.rejects.csv")).unwrap());
    assert_eq!(rows.len(), 120);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["lacnet_line"], (i + 2).to_string());
        assert_eq!(r["local_case_id"], format!("F-{i}"));
        assert_eq!(r["introduced_on"], "2099-01-05");
        assert_eq!(r["lacnet_field"], "introduced_on");
    }

    // Erasing an id the agent does not hold: a distinct exit code and a clear message.
    let (code, out, err) = run(net.cmd().args(["erase", "--case-id", "NO-SUCH-CASE"]));
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        err.contains("no record at this site agent has that case id: nothing was erased"),
        "{err}"
    );

    // An erased person stays erased when an old export comes back.
    let old = dir.join("old-export.csv");
    let nhs = "943 476 5919";
    std::fs::write(
        &old,
        format!(
            "{HEADER}ERASE-ME-7F3A,,2014-02-01,,2,50,,carer,self,,E05002035,\n\
             NHS-CASE-1,{nhs},2014-02-02,,2,60,,carer,self,,E05002035,\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run(net.cmd().arg("import").arg(&old));
    assert_eq!(code, Some(0), "{out}{err}");
    let erased = stdout(net.cmd().args(["erase", "--case-id", "ERASE-ME-7F3A"]));
    assert!(erased.contains("erased 1 record"), "{erased}");
    let erased = stdout(net.cmd().args(["erase", "--nhs-number", nhs]));
    assert!(erased.contains("erased 1 record"), "{erased}");
    // The same NHS number under a new case id is the same person.
    let mut again = std::fs::read_to_string(&old).unwrap();
    again.push_str(&format!(
        "NHS-CASE-2,{nhs},2014-03-02,,2,60,,carer,self,,E05002035,\n"
    ));
    std::fs::write(&old, &again).unwrap();
    let (code, out, err) = run(net.cmd().arg("import").arg(&old));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("3 rows: 0 accepted, 3 rejected"), "{out}");
    let rows = read_csv(&std::fs::read_to_string(dir.join("old-export.rejects.csv")).unwrap());
    let fields: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["local_case_id"].as_str(), r["lacnet_field"].as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("ERASE-ME-7F3A", "local_case_id"),
            ("NHS-CASE-1", "local_case_id; nhs_number"),
            ("NHS-CASE-2", "nhs_number")
        ]
    );
    // The reason is whole: only values from the file are cut short.
    assert!(rows.iter().all(|r| {
        r["lacnet_reason"].contains("erased at this site")
            && r["lacnet_reason"].ends_with("(lacnet import --readmit-erased)")
    }));
    // The agent remembers pseudonyms, never the raw ids.
    assert!(net.agent.store().erased_len() > 0);
    let mut files = Vec::new();
    let mut stack = vec![dir.join("agent")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for raw in [&b"ERASE-ME-7F3A"[..], b"9434765919"] {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw),
                "{} holds a raw id",
                f.display()
            );
        }
    }
    // A person who really returns is re-admitted on purpose, and then stays.
    let (code, out, err) = run(net.cmd().args(["import", "--readmit-erased"]).arg(&old));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3 rows: 3 accepted, 0 rejected"), "{out}");
    let (code, out, err) = run(net.cmd().arg("import").arg(&old));
    assert_eq!(code, Some(0), "{out}{err}");

    net.stop().await;
}
