#!/usr/bin/env python3
"""Static checks for the lacnet Kubernetes manifests (needs only PyYAML).

Run from anywhere: `python3 k8s/check.py`. It
  1. parses every *.yaml / *.yml file under k8s/;
  2. checks that every LACNET_* environment variable the manifests set (container
     `env`, ConfigMap data, kustomize configMapGenerator literals) is declared as
     `env = "NAME"` in the matching service's config.rs (hub/ -> services/hub,
     site-agent/ -> services/site-agent);
  3. checks that every container (and init container) runs hardened:
     runAsNonRoot, readOnlyRootFilesystem, allowPrivilegeEscalation false,
     capabilities drop ALL, seccompProfile RuntimeDefault (pod-level values
     count where Kubernetes inherits them), a memory limit, and read-only
     Secret mounts;
  4. checks kustomizations: listed resources and generator files exist, every
     envFrom/volume ConfigMap is generated or defined, and k8s/hub/registry.toml
     is identical to services/hub/registry.toml.
Exits 1 with one line per problem, 0 when everything passes.
"""

import pathlib
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check.py needs PyYAML: pip install pyyaml")

K8S = pathlib.Path(__file__).resolve().parent
ROOT = K8S.parent
# Manifest directory -> the service whose config.rs declares its variables.
SERVICES = {
    "hub": ROOT / "services" / "hub" / "src" / "config.rs",
    "site-agent": ROOT / "services" / "site-agent" / "src" / "config.rs",
}
ENV_PREFIX = {"hub": "LACNET_HUB_", "site-agent": "LACNET_AGENT_"}
POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def declared_env(config_rs):
    """Every `env = "NAME"` in a config.rs."""
    text = config_rs.read_text(encoding="utf-8")
    return set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', text))


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def check_env_name(where, service, name, declared):
    if not name.startswith("LACNET_"):
        return
    if service is None:
        problem(where, f"{name} is set outside hub/ or site-agent/; cannot tell which service reads it")
        return
    if name not in declared[service]:
        problem(where, f'{name} is not declared (env = "{name}") in {SERVICES[service].relative_to(ROOT)}')
    elif not name.startswith(ENV_PREFIX[service]):
        problem(where, f"{name} does not belong to {service} (expected prefix {ENV_PREFIX[service]})")


def check_container(where, c, pod_sc, secret_volumes):
    sc = c.get("securityContext") or {}

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        problem(where, "runAsNonRoot must be true")
    if sc.get("readOnlyRootFilesystem") is not True:
        problem(where, "readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problem(where, "allowPrivilegeEscalation must be false")
    if sc.get("privileged") is True:
        problem(where, "privileged must not be true")
    drop = ((sc.get("capabilities") or {}).get("drop")) or []
    if "ALL" not in drop:
        problem(where, "capabilities.drop must contain ALL")
    if ((sc.get("capabilities") or {}).get("add")):
        problem(where, "capabilities.add must be empty")
    seccomp = effective("seccompProfile") or {}
    if seccomp.get("type") != "RuntimeDefault":
        problem(where, "seccompProfile.type must be RuntimeDefault")
    limits = ((c.get("resources") or {}).get("limits")) or {}
    if "memory" not in limits:
        problem(where, "resources.limits.memory is missing")
    for m in c.get("volumeMounts") or []:
        if m.get("name") in secret_volumes and m.get("readOnly") is not True:
            problem(where, f"Secret volume {m.get('name')} must be mounted readOnly")


def main():
    declared = {svc: declared_env(path) for svc, path in SERVICES.items()}
    files = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        problem(str(K8S), "no manifests found")
    # Per directory: ConfigMap names that exist (generated or defined) and that are used.
    configmaps = {}
    used_configmaps = []

    for path in files:
        rel = path.relative_to(K8S)
        service = rel.parts[0] if rel.parts[0] in SERVICES else None
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as e:
            problem(rel, f"does not parse: {e}")
            continue
        known = configmaps.setdefault(path.parent, set())
        for i, doc in enumerate(docs):
            where = f"{rel}[{i}]"
            if not isinstance(doc, dict) or "kind" not in doc:
                problem(where, "not a Kubernetes object (no kind)")
                continue
            kind = doc["kind"]
            name = (doc.get("metadata") or {}).get("name", "?")
            where = f"{rel} {kind}/{name}"

            if kind == "Kustomization":
                for res in doc.get("resources") or []:
                    if not (path.parent / res).exists():
                        problem(where, f"resource {res} does not exist")
                for gen in doc.get("configMapGenerator") or []:
                    known.add(gen.get("name"))
                    for f in gen.get("files") or []:
                        src = f.split("=", 1)[-1]
                        if not (path.parent / src).exists():
                            problem(where, f"generator file {src} does not exist")
                    for lit in gen.get("literals") or []:
                        check_env_name(where, service, lit.split("=", 1)[0], declared)
                continue

            if kind == "ConfigMap":
                known.add(name)
                for key in (doc.get("data") or {}):
                    check_env_name(where, service, key, declared)

            if kind not in POD_KINDS:
                continue
            spec = pod_spec(doc)
            pod_sc = spec.get("securityContext") or {}
            if spec.get("automountServiceAccountToken") is not False:
                problem(where, "automountServiceAccountToken must be false (no service needs the API)")
            secret_volumes = set()
            for v in spec.get("volumes") or []:
                if "secret" in v:
                    secret_volumes.add(v.get("name"))
                if "configMap" in v:
                    used_configmaps.append((where, path.parent, v["configMap"].get("name")))
            containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
            if not containers:
                problem(where, "no containers")
            for c in containers:
                cwhere = f"{where} container {c.get('name', '?')}"
                check_container(cwhere, c, pod_sc, secret_volumes)
                for e in c.get("env") or []:
                    check_env_name(cwhere, service, e.get("name", ""), declared)
                for ef in c.get("envFrom") or []:
                    ref = ef.get("configMapRef")
                    if ref:
                        used_configmaps.append((cwhere, path.parent, ref.get("name")))

    for where, directory, name in used_configmaps:
        if name not in configmaps.get(directory, set()):
            problem(where, f"ConfigMap {name} is neither generated nor defined in {directory.relative_to(K8S)}/")

    copy, original = K8S / "hub" / "registry.toml", ROOT / "services" / "hub" / "registry.toml"
    if copy.exists() and original.exists() and copy.read_bytes() != original.read_bytes():
        problem("hub/registry.toml", "differs from services/hub/registry.toml: copy it again")

    if problems:
        print(f"k8s/check.py: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"k8s/check.py: {len(files)} files OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
