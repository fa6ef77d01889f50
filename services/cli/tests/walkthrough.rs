//! A new user's path, as one test: the README's own commands ("A new user's
//! path"), read from the README itself and run as written from a fresh temp
//! dir: certificates, a key, the real hub and agent binaries, generated
//! records, an import and a mapped import, reports in every format, the
//! council's evaluation and an erasure. If the README changes, this test
//! runs the new commands; if a command stops working, it fails.
//!
//! Two things differ from a person at a terminal, and only these: the fixed
//! ports become free ones (the services listen on 127.0.0.1:0 through their
//! `LACNET_*_LISTEN` variables, the agent's `--hub-url` is rewritten to the
//! hub's real address, and the CLI gets `LACNET_AGENT_URL`/`LACNET_HUB_URL`),
//! and `target/release/` means the binaries this test run built.
//!
//! Then the operator grows the network from the CA keys `lacnet certs` kept,
//! and every certificate issued later is used against the running services.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lacnet_testkit::process::{Service, binary};

const README: &str = include_str!("../../../README.md");
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// One command of the README's block, with the comment lines above it.
#[derive(Debug)]
struct Step {
    comment: String,
    words: Vec<String>,
}

/// The shell block under "## A new user's path", continuation lines joined.
fn readme_steps() -> Vec<Step> {
    let at = README
        .find("## A new user's path")
        .expect("the README has a section \"A new user's path\"");
    let section = &README[at..];
    let open = section.find("```sh\n").expect("a sh block in that section") + "```sh\n".len();
    let close = open + section[open..].find("```").expect("the block ends");
    let mut steps = Vec::new();
    let (mut comment, mut line) = (String::new(), String::new());
    for raw in section[open..close].lines() {
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            comment.push_str(c.trim());
            comment.push(' ');
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                line.push_str(part.trim());
                line.push(' ');
            }
            None => {
                line.push_str(t);
                // Whitespace splitting is all this runner does: keep the
                // README free of quoting and expansions it would get wrong.
                assert!(
                    !line.contains(['"', '\'', '$', '|', ';', '`', '*']),
                    "a README command this test cannot run as written: {line}"
                );
                steps.push(Step {
                    comment: std::mem::take(&mut comment),
                    words: line.split_whitespace().map(str::to_owned).collect(),
                });
                line.clear();
            }
        }
    }
    steps
}

/// The exit code the README promises for a command: "(exit code N" in its
/// comment, else 0.
fn promised_exit(comment: &str) -> i32 {
    comment
        .split("(exit code ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn copy_into(dir: &Path, relative: &str) {
    let to = dir.join(relative);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(Path::new(REPO).join(relative), &to).unwrap();
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, program: &Path, args: &[String], env: &BTreeMap<String, String>) -> Ran {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lacnet() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lacnet"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_new_user_runs_the_readme_commands_and_every_report_has_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // What the README's commands read from the repository, at the same paths.
    copy_into(dir, "services/hub/registry.toml");
    for f in ["casesys-mapping.toml", "casesys-export.csv"] {
        copy_into(dir, &format!("services/cli/examples/{f}"));
    }

    let steps = readme_steps();
    assert!(
        steps.len() >= 15,
        "the walkthrough lost commands: {steps:?}"
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut services: Vec<Service> = Vec::new();
    let mut hub_url: Option<String> = None;
    let mut outputs: Vec<(String, Ran)> = Vec::new();
    let mut checked_empty = false;
    for step in &steps {
        let text = step.words.join(" ");
        if step.words[0] == "cargo" {
            assert_eq!(text, "cargo build --release", "the only cargo command");
            continue;
        }
        if step.words[0] == "export" {
            let (k, v) = step.words[1].split_once('=').expect("export K=V");
            env.insert(k.to_owned(), v.to_owned());
            continue;
        }
        let name = step.words[0]
            .strip_prefix("target/release/")
            .unwrap_or_else(|| panic!("a README command not from target/release: {text}"));
        let mut words: Vec<String> = step.words[1..].to_vec();
        if let Some(url) = &hub_url {
            for w in &mut words {
                *w = w.replace("https://127.0.0.1:8443", url);
            }
        }
        match name {
            "lacnet-hub" | "lacnet-site-agent" => {
                let prefix = if name == "lacnet-hub" {
                    "LACNET_HUB"
                } else {
                    "LACNET_AGENT"
                };
                let service_env: Vec<(String, String)> = [
                    (format!("{prefix}_LISTEN"), "127.0.0.1:0".to_owned()),
                    (format!("{prefix}_ADMIN_LISTEN"), "127.0.0.1:0".to_owned()),
                    (format!("{prefix}_JSON_LOGS"), "true".to_owned()),
                ]
                .into();
                let s = Service::spawn_in(name, &binary(name), &words, &service_env, Some(dir));
                if name == "lacnet-hub" {
                    hub_url = Some(s.url());
                    env.insert("LACNET_HUB_URL".into(), s.url());
                } else {
                    env.insert("LACNET_AGENT_URL".into(), s.url());
                }
                services.push(s);
            }
            "lacnet" => {
                if !checked_empty && services.len() == 2 && env.contains_key("LACNET_CONFIG") {
                    // Before any import, a report must say there is nothing
                    // yet, and exit non-zero: never "0 sites" and success.
                    let empty = run(dir, &lacnet(), &args(&["report"]), &env_with(&env, dir));
                    assert_eq!(empty.code, 5, "{}{}", empty.stdout, empty.stderr);
                    assert!(
                        empty
                            .stdout
                            .contains("No site has published anything to the hub yet"),
                        "{}",
                        empty.stdout
                    );
                    checked_empty = true;
                }
                let ran = run(dir, &lacnet(), &words, &env_with(&env, dir));
                let want = promised_exit(&step.comment);
                assert_eq!(
                    ran.code, want,
                    "`{text}` exited {} (the README says {want}):\n{}\n{}",
                    ran.code, ran.stdout, ran.stderr
                );
                outputs.push((words.join(" "), ran));
            }
            other => panic!("an unknown binary in the README: {other}"),
        }
    }
    assert!(
        services.len() == 2,
        "the README starts the hub and one agent"
    );
    assert!(
        checked_empty,
        "the empty report was checked before the import"
    );
    let out = |prefix: &str| -> &Ran {
        &outputs
            .iter()
            .find(|(t, _)| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README no longer runs `{prefix}`"))
            .1
    };

    // The operator was warned about the CA keys, which are private.
    let certs = out("certs --out dev-pki");
    assert!(
        certs.stdout.contains("warning: the CA keys"),
        "{}",
        certs.stdout
    );
    #[cfg(unix)]
    for key in ["network-ca.key", "council-ca.key", "site-E06000046.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("dev-pki").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // The imports: every generated row, and the mapped export less one row.
    assert!(out("import thurrock.csv").stdout.contains("0 rejected"));
    assert!(
        out("import --map")
            .stdout
            .contains("5 rows: 4 accepted, 1 rejected")
    );

    // The table: which period and why come first, then figures.
    let table = &out("report --wait").stdout;
    let mut lines = table.lines();
    let (_title, _pulled, rule) = (lines.next(), lines.next(), lines.next());
    let rule = rule.unwrap_or_default();
    assert!(
        rule.starts_with("Period ") && rule.contains("at least half of the sites"),
        "{table}"
    );
    let submitted: u32 = table
        .lines()
        .find_map(|l| {
            l.split(" sites submitted for ")
                .next()
                .filter(|_| l.contains(" sites submitted for "))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of sites: {table}"));
    assert!(submitted >= 1, "{table}");
    assert!(table.contains("Thurrock"), "{table}");
    assert!(table.contains("What each figure counts:"), "{table}");
    // Rates carry their denominator's year and caveat.
    assert!(
        table.contains("each an approximate mid-2022 estimate, for a 201")
            && table.contains("Thurrock 134,700"),
        "{table}"
    );

    // CSV: rows, each with the population and its year.
    let csv_text = std::fs::read_to_string(dir.join("fy2014.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (year, note, section) = (
        col("population_year"),
        col("population_note"),
        col("section"),
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let figures: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[section] != "cost_avoided")
        .collect();
    assert!(figures.len() > 20, "{csv_text}");
    for r in &figures {
        assert_eq!(&r[year], "2022", "{r:?}");
        assert!(
            r[note].starts_with("approximate mid-2022 estimate, for a 20"),
            "{r:?}"
        );
    }

    // JSON: the summary has a site, and the glossary defines what it shows.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("2014-Q1.json")).unwrap()).unwrap();
    assert!(
        json["summary"]["sites_submitted"].as_u64().unwrap() >= 1,
        "{json}"
    );
    let glossary = json["glossary"].as_array().unwrap();
    let people_new = glossary.iter().find(|g| g["id"] == "people_new").unwrap();
    let intros = glossary
        .iter()
        .find(|g| g["id"] == "introductions_new")
        .unwrap();
    assert_ne!(people_new["description"], intros["description"]);

    // HTML: charts, the denominators, the glossary; no registry site that
    // never published (Derbyshire's code or name) anywhere, trend captions included.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for want in [
        "<svg",
        "What each figure counts",
        "approximate mid-2022 estimate",
        "Thurrock",
    ] {
        assert!(html.contains(want), "the HTML report lacks {want:?}");
    }
    for absent in ["E10000007", "Derbyshire", "insufficient data; E0"] {
        assert!(!html.contains(absent), "the HTML report shows {absent:?}");
    }

    // The council's evaluation over its first 14 months, and an erasure.
    let evaluation = &out("evaluation --span PTD2014-07").stdout;
    assert!(evaluation.contains("people"), "{evaluation}");
    assert!(out("erase --case-id CS-1002").stdout.contains("erased"));

    // Periods the network does not publish say so and fail: a programme to
    // date between financial-year ends is refused by the hub with the reason
    // (exit 1), a month on a quarterly network is an empty report that says
    // why (exit 5).
    for (period, code, why) in [
        (
            "PTD2015-02",
            1,
            "financial-year ends (31 March) only, e.g. PTD2015-03",
        ),
        ("2014-05", 5, "No site publishes months"),
    ] {
        let r = run(
            dir,
            &lacnet(),
            &args(&["report", "--period", period]),
            &env_with(&env, dir),
        );
        let said = format!("{}{}", r.stdout, r.stderr);
        assert_eq!(r.code, code, "{period}: {said}");
        assert!(said.contains(why), "{period}: {said}");
    }

    // The operator grows the network from the kept CA keys: an analyst and
    // an operator join, and the site added above reads the network as itself.
    let pki = dir.join("dev-pki");
    for (what, name) in [("add-analyst", "bob"), ("add-operator", "carol")] {
        let r = run(
            dir,
            &lacnet(),
            &args(&["certs", what, name, "--out", "dev-pki"]),
            &env,
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let over = run(
        dir,
        &lacnet(),
        &args(&["certs", "--out", "dev-pki", "--site", "E06000046"]),
        &env,
    );
    assert_ne!(over.code, 0, "a second PKI over the first is refused");
    assert!(
        over.stderr.contains("already holds a PKI"),
        "{}",
        over.stderr
    );
    let again = run(
        dir,
        &lacnet(),
        &args(&["certs", "add-site", "E06000046", "--out", "dev-pki"]),
        &env,
    );
    assert_ne!(
        again.code, 0,
        "an existing certificate is replaced only with --force"
    );
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let as_hub_client = |stem: &str| {
        let mut a = args(&["report", "--format", "json", "--hub-cert"]);
        a.push(pki.join(format!("{stem}.pem")).display().to_string());
        a.push("--hub-key".into());
        a.push(pki.join(format!("{stem}.key")).display().to_string());
        run(dir, &lacnet(), &a, &env_with(&env, dir))
    };
    for stem in ["analyst-bob", "site-E06000046"] {
        let r = as_hub_client(stem);
        assert_eq!(r.code, 0, "{stem}: {}{}", r.stdout, r.stderr);
    }
    let mut status = args(&["status", "--operator-cert"]);
    status.push(pki.join("operator-carol.pem").display().to_string());
    status.push("--operator-key".into());
    status.push(pki.join("operator-carol.key").display().to_string());
    let r = run(dir, &lacnet(), &status, &env_with(&env, dir));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    for s in services {
        let (status, output) = s.terminate();
        assert!(status.success(), "{}", String::from_utf8_lossy(&output));
    }
}

/// The exported variables, with `LACNET_CONFIG` resolved against `dir` as
/// the shell would.
fn env_with(env: &BTreeMap<String, String>, dir: &Path) -> BTreeMap<String, String> {
    let mut e = env.clone();
    if let Some(c) = e.get_mut("LACNET_CONFIG") {
        *c = dir.join(&*c).display().to_string();
    }
    e
}

/// `lacnet demo --keep` prints, for every demo site, a generate and an import
/// command that run as printed against the network it leaves running, and
/// the file is the rows the agent already holds.
#[test]
fn demo_keep_prints_an_import_for_every_site_that_runs_as_printed() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new(lacnet())
        .args(["demo", "--keep", "--rows", "200", "--report"])
        .arg(tmp.path().join("demo.html"))
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("if it is not installed");
        printed.push(line);
        if done {
            break;
        }
    }
    let commands = |verb: &str| -> Vec<Vec<String>> {
        printed
            .iter()
            .filter_map(|l| l.trim().strip_prefix(&format!("lacnet {verb} ")))
            .map(|rest| {
                let mut words = vec![verb.to_owned()];
                words.extend(rest.split_whitespace().map(str::to_owned));
                words
            })
            .collect()
    };
    let generates = commands("generate");
    let imports = commands("import");
    assert_eq!(generates.len(), 3, "{printed:#?}");
    assert_eq!(imports.len(), 3, "{printed:#?}");
    let env = BTreeMap::new();
    for (generate, import) in generates.iter().zip(&imports) {
        let g = run(tmp.path(), &lacnet(), generate, &env);
        assert_eq!(g.code, 0, "{generate:?}: {}", g.stderr);
        let i = run(tmp.path(), &lacnet(), import, &env);
        assert_eq!(i.code, 0, "{import:?}: {}{}", i.stdout, i.stderr);
        assert!(
            i.stdout.contains("200 rows: 200 accepted, 0 rejected"),
            "{}",
            i.stdout
        );
    }
    // The same rows as the demo's own import: each agent still holds 200.
    let statuses: Vec<Vec<String>> = commands("status")
        .into_iter()
        .map(|mut w| {
            w.truncate(w.iter().position(|x| x == "#").unwrap_or(w.len()));
            w
        })
        .filter(|w| w.len() > 1)
        .collect();
    assert_eq!(statuses.len(), 2, "{printed:#?}");
    for status in &statuses {
        let s = run(tmp.path(), &lacnet(), status, &env);
        assert!(
            s.stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["records", "200"]),
            "{}{}",
            s.stdout,
            s.stderr
        );
    }
    let stopped = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(demo.wait().unwrap().success());
    if let Some(kept) = rest.iter().find_map(|l| l.strip_prefix("Kept ")) {
        let _ = std::fs::remove_dir_all(kept);
    }
}
