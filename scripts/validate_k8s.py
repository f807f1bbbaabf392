"""Checks deploy/k8s: every manifest against the Kubernetes JSON schemas, and
the manifests against each other and against Coop's own code.

Run by scripts/validate-k8s.sh, which installs the pinned kubernetes-validate
package (it bundles the schemas, so nothing is fetched while checking).

Two kinds of check:

- Schema: each document, strictly (an unknown or misspelled field is an
  error, as is a string where an integer goes), against every Kubernetes
  version given. A kind or apiVersion with no schema is an error too, where
  the kubernetes-validate command line only warns.
- Consistency, which a schema cannot see: selectors that select the pods
  they mean to, ports and port names that exist, COOP_* names that Coop
  reads, a grace period long enough for the drain it has to cover, HPA metric
  names that prometheus-adapter serves, an Ingress that routes every public
  route of Coop, a kustomization that lists every manifest.

`--self-test` proves the checks can fail: it feeds broken manifests (the
files in deploy/k8s/testdata/ and in-memory mutations of the real ones) and
fails if any of them passes.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

# Operator endpoints, reached inside the cluster only (kubelet probes and
# Prometheus go to the pods directly); everything else Coop routes must be
# reachable through the Ingress.
# /samples: a `coop worker`'s last hour of metrics, on its private listener
# for the operations page.
INTERNAL_ROUTES = {"/health", "/ready", "/metrics", "/samples"}

# Files under deploy/k8s that are not plain Kubernetes manifests.
NOT_MANIFESTS = {"kustomization.yaml", "prometheus-adapter/values.yaml"}
# Kept out of kustomization.yaml on purpose (placeholders must never
# overwrite a real Secret).
NOT_IN_KUSTOMIZATION = {"secret.example.yaml"}

KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "namespace", "resources", "components", "patches",
    "images", "labels", "commonAnnotations", "configMapGenerator",
    "secretGenerator", "generatorOptions", "replicas", "namePrefix",
    "nameSuffix",
}


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; kubectl
    refuses such a file. Refuse it here too."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_docs(path: Path) -> list:
    with path.open() as f:
        return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]


class Manifests:
    """The documents of deploy/k8s, by file, plus what they are checked against."""

    def __init__(self, root: Path, repo: Path):
        self.root = root
        self.repo = repo
        self.files: dict[str, list] = {}
        self.load_errors: list[str] = []
        for path in sorted(root.rglob("*.yaml")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("testdata/"):
                continue
            try:
                self.files[rel] = load_yaml_docs(path)
            except yaml.YAMLError as err:
                self.load_errors.append(f"{rel}: not valid YAML: {err}")

    def manifests(self):
        """(file, document) for every Kubernetes object, patches included."""
        for rel, docs in self.files.items():
            if rel in NOT_MANIFESTS or rel.endswith("/kustomization.yaml"):
                continue
            for doc in docs:
                yield rel, doc

    def objects(self, kind: str, include_optional: bool = False):
        for rel, doc in self.manifests():
            if rel.startswith("optional/") and not include_optional:
                continue
            if isinstance(doc, dict) and doc.get("kind") == kind:
                yield rel, doc


def name_of(doc) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


# ---------------------------------------------------------------- schemas

def check_schemas(docs, versions: list[str]) -> list[str]:
    errors = []
    for rel, doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            errors.append(f"{rel}: a document without apiVersion and kind")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path) or "(top level)"
                errors.append(f"{rel}: {name_of(doc)} is invalid for Kubernetes "
                              f"{version}: {where}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                errors.append(f"{rel}: {err.message} (misspelled kind or apiVersion?)")
            except Exception as err:  # the library's own failures: never a pass
                errors.append(f"{rel}: {name_of(doc)} could not be validated "
                              f"against {version}: {err!r}")
    return errors


# ------------------------------------------------------------ consistency

def parse_duration(value: str) -> float:
    """Coop's duration syntax (coop_runtime::values::parse_duration), in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value.strip())
    if not m:
        raise ValueError(f"not a Coop duration: {value!r}")
    unit = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(m.group(1)) * unit


def rust_sources(repo: Path):
    """The Rust sources of `coop serve`: the binary and every crate but the
    operations crate (its control API belongs to `coop cluster`, a single-host
    supervisor that Kubernetes replaces)."""
    roots = [repo / "src"] + [
        c / "src" for c in sorted((repo / "crates").iterdir()) if c.name != "coop-ops"
    ]
    for root in roots:
        if root.is_dir():
            yield from root.rglob("*.rs")


def coop_env_names(repo: Path) -> set[str]:
    """Every COOP_* setting Coop reads: the `env = "COOP_..."` of its clap
    arguments, wherever they are declared."""
    names = set()
    for path in rust_sources(repo):
        names.update(re.findall(r'env\s*=\s*"(COOP_[A-Z0-9_]+)"', path.read_text()))
    return names


def coop_routes(repo: Path) -> set[str]:
    """The paths Coop's routers declare: plain routes, API operations (their
    `#[utoipa::path(..., path = "...")]`, which the route registry serves) and
    the API docs' mount point."""
    routes = set()
    for path in rust_sources(repo):
        text = path.read_text()
        routes.update(re.findall(r'\.route\(\s*"(/[^"]*)"', text))
        routes.update(re.findall(r'#\[utoipa::path\([^\]]*?\bpath\s*=\s*"(/[^"]*)"', text, re.S))
        routes.update(re.findall(r'SwaggerUi::new\(\s*"(/[^"]*)"', text))
    return routes


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_env(container: dict, configmaps: dict, secrets: dict) -> dict:
    """The environment a container gets: envFrom first, env overriding."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update((configmaps.get(source["configMapRef"]["name"]) or {}).get("data", {}))
        if "secretRef" in source:
            secret = secrets.get(source["secretRef"]["name"]) or {}
            env.update(secret.get("stringData", {}))
            env.update(secret.get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def ingress_covers(paths: list[dict], route: str) -> bool:
    """Whether a request for `route` (a router path, `{param}`s allowed)
    matches one of the Ingress paths, by the Ingress API's rules."""
    concrete = re.sub(r"\{[^}]*\}", "x", route)
    for p in paths:
        want = p["path"]
        if p["pathType"] == "Exact" and concrete == want:
            return True
        if p["pathType"] in ("Prefix", "ImplementationSpecific"):
            prefix = want.rstrip("/")
            if prefix == "" or concrete == prefix or concrete.startswith(prefix + "/"):
                return True
    return False


def check_consistency(m: Manifests) -> list[str]:
    errors: list[str] = []
    err = errors.append

    deployments = dict((d["metadata"]["name"], d) for _, d in m.objects("Deployment"))
    services = dict((d["metadata"]["name"], d) for _, d in m.objects("Service"))
    configmaps = dict((d["metadata"]["name"], d) for _, d in m.objects("ConfigMap"))
    secrets = dict((d["metadata"]["name"], d) for _, d in m.objects("Secret"))
    hpas = dict((d["metadata"]["name"], d) for _, d in m.objects("HorizontalPodAutoscaler"))
    known_env = coop_env_names(m.repo)
    readme = (m.repo / "README.md").read_text()

    # Two objects of one kind and name would overwrite each other.
    seen: dict[str, str] = {}
    for rel, doc in m.manifests():
        if rel.startswith("optional/"):
            continue  # patches name the object they patch
        key = name_of(doc)
        if key in seen:
            err(f"{rel}: {key} is also defined in {seen[key]}")
        seen[key] = rel

    for name, dep in deployments.items():
        spec = dep["spec"]
        template = spec["template"]
        pod_labels = template["metadata"].get("labels", {})
        if not labels_match(spec["selector"].get("matchLabels", {}), pod_labels):
            err(f"Deployment/{name}: its selector does not select its own pod template")
        pod = template["spec"]
        if pod.get("automountServiceAccountToken") is not False:
            err(f"Deployment/{name}: should not mount a Kubernetes API token")
        annotations = template["metadata"].get("annotations", {})
        for c in pod["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                err(f"Deployment/{name}: container {c['name']} must have a read-only root "
                    "file system and no privilege escalation")
            for source in c.get("envFrom", []):
                for ref, pool in (("configMapRef", configmaps), ("secretRef", secrets)):
                    if ref in source and source[ref]["name"] not in pool:
                        err(f"Deployment/{name}: {ref} {source[ref]['name']} is not defined")
            env = pod_env(c, configmaps, secrets)
            for var in sorted(env):
                if var not in known_env:
                    err(f"Deployment/{name}: sets {var}, which Coop does not read "
                        "(no `env = \"{var}\"` in its sources)".replace("{var}", var))
                elif f"`{var}`" not in readme:
                    err(f"Deployment/{name}: sets {var}, missing from README.md's configuration table")
            # The listen addresses and the declared ports must agree, or the
            # probes knock on a closed port.
            metrics_var = "COOP_WORKER_LISTEN" if "worker" in c.get("args", []) else "COOP_METRICS_LISTEN"
            for var, port_name in (("COOP_LISTEN", "http"), (metrics_var, "metrics")):
                if port_name in ports:
                    value = env.get(var)
                    if value is None or not value.endswith(f":{ports[port_name]}"):
                        err(f"Deployment/{name}: port {port_name} is {ports[port_name]} "
                            f"but {var} is {value!r}")
                    elif value.startswith("127.") or value.startswith("[::1]"):
                        err(f"Deployment/{name}: {var}={value} listens on loopback only; "
                            "the kubelet cannot probe it")
            scrape_port = annotations.get("prometheus.io/port")
            if scrape_port is not None and int(scrape_port) not in ports.values():
                err(f"Deployment/{name}: prometheus.io/port {scrape_port} is not a container port")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                if port is None:
                    err(f"Deployment/{name}: container {c['name']} has no HTTP {probe}")
                elif isinstance(port, str) and port not in ports:
                    err(f"Deployment/{name}: {probe} uses port {port!r}, which is not declared")
            if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") == "/ready":
                err(f"Deployment/{name}: liveness on /ready would restart every pod "
                    "when the database is down; use /health")
            # The grace period, counted from the deletion, must cover the
            # preStop sleep, the drain delay and the shutdown timeout.
            try:
                pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {})
                            .get("sleep") or {}).get("seconds", 0)
                need = (pre_stop + parse_duration(env.get("COOP_DRAIN_DELAY", "0s"))
                        + parse_duration(env.get("COOP_SHUTDOWN_TIMEOUT", "30s")))
            except ValueError as e:
                err(f"Deployment/{name}: {e}")
                continue
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= need:
                err(f"Deployment/{name}: terminationGracePeriodSeconds {grace} does not cover "
                    f"preStop + COOP_DRAIN_DELAY + COOP_SHUTDOWN_TIMEOUT = {need:g} s")

    for name, svc in services.items():
        selector = svc["spec"].get("selector", {})
        targets = [d for d in deployments.values()
                   if labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))]
        if not targets:
            err(f"Service/{name}: its selector matches no Deployment's pods")
            continue
        names = {p.get("name") for d in targets
                 for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                err(f"Service/{name}: targetPort {port['targetPort']!r} is no port of its pods")

    for _, pdb in m.objects("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"].get("matchLabels", {})
        if not any(labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))
                   for d in deployments.values()):
            err(f"{name_of(pdb)}: its selector matches no Deployment's pods")

    for rel, hpa in m.objects("HorizontalPodAutoscaler", include_optional=True):
        target = hpa["spec"]["scaleTargetRef"]
        dep = deployments.get(target["name"])
        if target.get("kind") != "Deployment" or dep is None:
            err(f"{rel}: {name_of(hpa)} scales {target.get('kind')}/{target['name']}, "
                "which is not defined")
        elif "replicas" in dep["spec"]:
            err(f"Deployment/{target['name']}: sets replicas, which would undo the HPA's "
                "count at every apply")

    # The metric names the HPAs ask for must be the ones prometheus-adapter serves.
    adapter = (m.files.get("prometheus-adapter/values.yaml") or [{}])[0]
    rules = adapter.get("rules", {})
    served = {"External": {r["name"]["as"] for r in rules.get("external", [])},
              "Pods": {r["name"]["as"] for r in rules.get("custom", [])}}
    for rel, hpa in m.objects("HorizontalPodAutoscaler", include_optional=True):
        for metric in hpa["spec"].get("metrics", []):
            kind = metric["type"]
            if kind in served:
                metric_name = metric[kind.lower()]["metric"]["name"]
                if metric_name not in served[kind]:
                    err(f"{rel}: {name_of(hpa)} reads the {kind} metric {metric_name}, "
                        "which prometheus-adapter/values.yaml does not define")
    for rule in rules.get("external", []):
        if "jobs" in rule["seriesQuery"] and 'state="ready"' not in rule["metricsQuery"]:
            err("prometheus-adapter/values.yaml: the jobs rule's metricsQuery must filter "
                'state="ready" itself (seriesQuery only finds the series)')

    # The optional HPA is a whole-object patch: apart from the metrics it
    # adds, it must equal the base one.
    for rel, patch in m.objects("HorizontalPodAutoscaler", include_optional=True):
        if not rel.startswith("optional/"):
            continue
        base = hpas.get(patch["metadata"]["name"])
        if base is None:
            err(f"{rel}: patches {name_of(patch)}, which is not defined")
            continue
        a, b = copy.deepcopy(base), copy.deepcopy(patch)
        base_metrics = a["spec"].pop("metrics", [])
        patch_metrics = b["spec"].pop("metrics", [])
        if a != b:
            err(f"{rel}: differs from the base {name_of(base)} in more than its metrics; "
                "keep the two in step")
        if any(metric not in patch_metrics for metric in base_metrics):
            err(f"{rel}: drops a metric of the base {name_of(base)}")

    # Every public route of Coop must be reachable through the Ingress.
    ingress_paths = [p for _, ing in m.objects("Ingress")
                     for rule in ing["spec"].get("rules", [])
                     for p in rule.get("http", {}).get("paths", [])]
    for p in ingress_paths:
        backend = p["backend"]["service"]
        svc = services.get(backend["name"])
        if svc is None:
            err(f"Ingress path {p['path']}: Service {backend['name']} is not defined")
        elif "name" in backend["port"] and backend["port"]["name"] not in {
                port.get("name") for port in svc["spec"]["ports"]}:
            err(f"Ingress path {p['path']}: Service {backend['name']} has no port "
                f"{backend['port']['name']!r}")
    for route in sorted(coop_routes(m.repo) - INTERNAL_ROUTES):
        if not ingress_covers(ingress_paths, route):
            err(f"ingress.yaml: Coop routes {route} but the Ingress does not; add a path "
                "(or list it in INTERNAL_ROUTES in scripts/validate_k8s.py if it is for operators)")
    for route in sorted(INTERNAL_ROUTES):
        if ingress_covers(ingress_paths, route):
            err(f"ingress.yaml: exposes {route}, which is for operators only")

    # Each kustomization: known keys, listed files exist, and the top one
    # lists every manifest (a new file that is never applied is a bug).
    for rel, docs in m.files.items():
        if not (rel == "kustomization.yaml" or rel.endswith("/kustomization.yaml")):
            continue
        k = docs[0] if docs else {}
        folder = Path(rel).parent
        for key in k:
            if key not in KUSTOMIZATION_KEYS:
                err(f"{rel}: unknown kustomization field {key!r}")
        listed = list(k.get("resources", [])) + list(k.get("components", []))
        listed += [p["path"] for p in k.get("patches", []) if "path" in p]
        for entry in listed:
            if not (m.root / folder / entry).exists():
                err(f"{rel}: lists {entry}, which does not exist")
        if rel == "kustomization.yaml":
            for f in m.files:
                if "/" in f or f in NOT_MANIFESTS or f in NOT_IN_KUSTOMIZATION:
                    continue
                if f not in k.get("resources", []):
                    err(f"kustomization.yaml: does not list {f}")
            for _, ns in m.objects("Namespace"):
                if ns["metadata"]["name"] != k.get("namespace"):
                    err(f"kustomization.yaml: puts everything in namespace {k.get('namespace')!r} "
                        f"but namespace.yaml creates {ns['metadata']['name']!r}")
            images = {i["name"] for i in k.get("images", [])}
            for name, dep in deployments.items():
                for c in dep["spec"]["template"]["spec"]["containers"]:
                    if c["image"].split(":")[0] not in images:
                        err(f"kustomization.yaml: no `images` entry for {c['image']} "
                            f"(Deployment/{name})")
    return errors


def check_all(m: Manifests, versions: list[str]) -> list[str]:
    errors = list(m.load_errors)
    errors += check_schemas(list(m.manifests()), versions)
    if not errors:  # cross-checks assume well-formed objects
        errors += check_consistency(m)
    return errors


# -------------------------------------------------------------- self-test

def _dep(m, name):
    return next(d for _, d in m.objects("Deployment") if d["metadata"]["name"] == name)


def _container(m, name):
    return _dep(m, name)["spec"]["template"]["spec"]["containers"][0]


def _set_env(m, dep, var, value):
    for e in _container(m, dep)["env"]:
        if e["name"] == var:
            e["value"] = value


MUTATIONS = {
    "a misspelled COOP_ variable": lambda m: _container(m, "coop-serve")["env"].append(
        {"name": "COOP_LISTN", "value": "0.0.0.0:8080"}),
    "COOP_LISTEN on another port than the container port": lambda m: _set_env(
        m, "coop-serve", "COOP_LISTEN", "0.0.0.0:8081"),
    "the worker listening on loopback": lambda m: _set_env(
        m, "coop-worker", "COOP_WORKER_LISTEN", "127.0.0.1:9090"),
    "a grace period shorter than the drain": lambda m: _dep(m, "coop-serve")["spec"]["template"]
        ["spec"].__setitem__("terminationGracePeriodSeconds", 20),
    "a Service selecting no pods": lambda m: next(
        d for _, d in m.objects("Service") if d["metadata"]["name"] == "coop")["spec"]
        ["selector"].__setitem__("app.kubernetes.io/component", "web"),
    "replicas set beside an HPA": lambda m: _dep(m, "coop-serve")["spec"].__setitem__("replicas", 3),
    "an HPA reading a metric the adapter does not serve": lambda m: next(
        d for _, d in m.objects("HorizontalPodAutoscaler") if d["metadata"]["name"] == "coop-worker")
        ["spec"]["metrics"][0]["external"]["metric"].__setitem__("name", "coop_jobs_waiting"),
    "the optional HPA drifting from the base": lambda m: next(
        d for _, d in m.objects("HorizontalPodAutoscaler")
        if d["metadata"]["name"] == "coop-serve")["spec"].__setitem__("maxReplicas", 9),
    "a public route missing from the Ingress": lambda m: next(
        d for _, d in m.objects("Ingress"))["spec"]["rules"][0]["http"]["paths"].pop(),
    "/metrics exposed through the Ingress": lambda m: next(
        d for _, d in m.objects("Ingress"))["spec"]["rules"][0]["http"]["paths"][0].__setitem__(
        "pathType", "Prefix"),
    "a namespace the kustomization does not use": lambda m: next(
        d for _, d in m.objects("Namespace"))["metadata"].__setitem__("name", "co-op"),
    "liveness on /ready": lambda m: _container(m, "coop-serve")["livenessProbe"]["httpGet"]
        .__setitem__("path", "/ready"),
}


def self_test(root: Path, repo: Path, versions: list[str]) -> list[str]:
    failures = []
    fixtures = sorted((root / "testdata").glob("*.yaml"))
    if not fixtures:
        failures.append("no broken fixtures in deploy/k8s/testdata/")
    for path in fixtures:
        try:
            docs = [(path.name, d) for d in load_yaml_docs(path)]
            errors = check_schemas(docs, versions)
        except yaml.YAMLError as e:
            errors = [str(e)]
        if errors:
            print(f"  ok: {path.relative_to(repo)} is refused: {' '.join(errors[0].split())}")
        else:
            failures.append(f"{path.relative_to(repo)} is broken on purpose but passed")
    base = Manifests(root, repo)
    # A mutation only proves something if the unmutated manifests pass.
    clean = base.load_errors + check_consistency(base)
    if clean:
        return failures + [f"the real manifests fail already: {clean[0]}"]
    for what, mutate in MUTATIONS.items():
        m = copy.deepcopy(base)
        mutate(m)
        errors = check_consistency(m)
        if errors:
            print(f"  ok: {what} is refused: {errors[0]}")
        else:
            failures.append(f"{what} passed the consistency checks")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", required=True,
                        help="validate against this Kubernetes version (repeatable)")
    parser.add_argument("--self-test", action="store_true",
                        help="check that broken manifests are refused")
    parser.add_argument("root", type=Path, help="the deploy/k8s folder")
    args = parser.parse_args()
    root = args.root.resolve()
    repo = root.parent.parent

    if args.self_test:
        failures = self_test(root, repo, args.kubernetes_version)
        for f in failures:
            print(f"FAIL: {f}")
        return 1 if failures else 0

    m = Manifests(root, repo)
    errors = check_all(m, args.kubernetes_version)
    for e in errors:
        print(f"ERROR {e}")
    count = sum(1 for _ in m.manifests())
    if errors:
        print(f"{len(errors)} problem(s) in {root.relative_to(repo)}")
        return 1
    print(f"{count} objects in {len(m.files)} files: valid for Kubernetes "
          f"{', '.join(args.kubernetes_version)} (strict), and consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
