"""The Helm chart: lint, render, a snapshot of its default manifests, and the
security properties it promises (restricted Pods, least-privilege RBAC, the
runner NetworkPolicy).

helm comes from ``WAYPOST_HELM`` (``make test`` sets it from
``charts/tools/ensure-helm``). Without it these tests fail, never skip. The
snapshot is ``tests/unit/golden/chart_default.yaml``: after a deliberate chart
change, run ``WAYPOST_UPDATE_GOLDEN=1 pytest tests/unit/test_chart.py`` and
review the diff.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import yaml

from waypost.model import k8s
from waypost.model.insights import INSIGHT_VARIABLES
from waypost.model.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "waypost"
GOLDEN = Path(__file__).parent / "golden" / "chart_default.yaml"
KUBE_VERSION = "1.34.4"
RELEASE = "waypost"
NAMESPACE = "waypost-system"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> str:
    path = os.environ.get("WAYPOST_HELM", "")
    if not path:
        pytest.fail(
            "WAYPOST_HELM is not set: run the tests with `make test`, or "
            'export WAYPOST_HELM="$(charts/tools/ensure-helm)" (builds helm once if needed)',
            pytrace=False,
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"WAYPOST_HELM={path} is not an executable helm binary", pytrace=False)
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template_text(helm: str, *sets: str) -> str:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(helm: str, *sets: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(template_text(helm, *sets)) if doc]


def one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [d for d in docs
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[Manifest]:
    return render(helm)


@pytest.fixture(scope="module")
def bundled_docs(helm: str) -> list[Manifest]:
    return render(helm, "postgresql.enabled=true", "serviceMonitor.enabled=true",
                  "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")


# --- lint, snapshot, rendering -------------------------------------------------


@pytest.mark.parametrize("sets", [(), ("postgresql.enabled=true",)], ids=["default", "postgresql"])
def test_helm_lint_passes(helm: str, sets: tuple[str, ...]) -> None:
    args = ["lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_render_matches_golden(helm: str) -> None:
    text = template_text(helm)
    if os.environ.get("WAYPOST_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run with WAYPOST_UPDATE_GOLDEN=1"
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the rendered chart changed: review it and run with WAYPOST_UPDATE_GOLDEN=1"
    )


def test_default_render_has_the_expected_objects(default_docs: list[Manifest]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in default_docs)
    assert kinds == sorted([
        "ClusterRole/waypost", "ClusterRoleBinding/waypost",
        "CustomResourceDefinition/taskruns.waypost.dev",
        "CustomResourceDefinition/tasks.waypost.dev",
        "Deployment/waypost", "NetworkPolicy/waypost-operator", "NetworkPolicy/waypost-runners",
        "PodDisruptionBudget/waypost", "Role/waypost-leader-election",
        "RoleBinding/waypost-leader-election", "Service/waypost", "ServiceAccount/waypost",
        # The post-delete hook that removes leftover runner Pods.
        "ServiceAccount/waypost-cleanup", "ClusterRole/waypost-cleanup",
        "ClusterRoleBinding/waypost-cleanup", "Job/waypost-cleanup",
    ])


def test_bundled_postgresql_renders(bundled_docs: list[Manifest]) -> None:
    sts = one(bundled_docs, "StatefulSet", "waypost-postgresql")
    assert sts["spec"]["replicas"] == 1
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "postgres:16"
    assert container["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "waypost-postgresql", "key": "password"}
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "2Gi"
    assert one(bundled_docs, "Service", "waypost-postgresql")["spec"]["ports"][0]["port"] == 5432

    secret = one(bundled_docs, "Secret", "waypost-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["data"]["password"]) > 20

    operator = one(bundled_docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    op_env = {e["name"]: e for e in operator["env"]}
    # The kubelet assembles the DSN; the password never appears in the Pod spec.
    assert op_env["WAYPOST_DATABASE_URL"]["value"] == (
        "postgresql://waypost:$(WAYPOST_POSTGRESQL_PASSWORD)@"
        f"waypost-postgresql.{NAMESPACE}.svc.cluster.local:5432/waypost"
    )
    names = [e["name"] for e in operator["env"]]
    assert names.index("WAYPOST_POSTGRESQL_PASSWORD") < names.index("WAYPOST_DATABASE_URL")
    # Only the operator may reach it.
    policy = one(bundled_docs, "NetworkPolicy", "waypost-postgresql")
    assert policy["spec"]["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": operator_selector()}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }]


def test_bundled_postgresql_without_persistence_uses_an_emptydir(helm: str) -> None:
    docs = render(helm, "postgresql.enabled=true", "postgresql.persistence.enabled=false")
    spec = one(docs, "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in spec
    assert {"name": "data", "emptyDir": {}} in spec["template"]["spec"]["volumes"]


def test_optional_monitoring_objects(bundled_docs: list[Manifest]) -> None:
    monitor = one(bundled_docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == operator_selector()
    dashboard = one(bundled_docs, "ConfigMap", "waypost-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    json.loads(dashboard["data"]["waypost.json"])


def test_dashboard_uses_only_metrics_the_coordinator_exports() -> None:
    source = (REPO / "operator/waypost/coordinator/metrics.py").read_text(encoding="utf-8")
    exported = set(re.findall(r'Gauge\(\s*"(waypost_[a-z_]+)"', source))
    assert exported, "no metrics found in metrics.py"
    # Counters (_total) and histograms (_bucket, _sum, _count) of engine/metrics.py.
    counted = (REPO / "operator/waypost/engine/metrics.py").read_text(encoding="utf-8")
    exported |= {f"{m}_total" for m in re.findall(r'Counter\(\s*"(waypost_[a-z_]+)"', counted)}
    exported |= {f"{m}_{part}" for m in re.findall(r'Histogram\(\s*"(waypost_[a-z_]+)"', counted)
                 for part in ("bucket", "sum", "count")}
    dashboard = json.loads((CHART / "dashboards/waypost.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bwaypost_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# --- the operator Deployment ---------------------------------------------------


def operator_selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": "waypost", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "operator"}


def test_operator_deployment(default_docs: list[Manifest]) -> None:
    deployment = one(default_docs, "Deployment", "waypost")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == operator_selector()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "waypost"
    (container,) = pod["containers"]
    assert container["image"] == "waypost-operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["WAYPOST_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "waypost-database", "key": "url"}}
    assert env["WAYPOST_COORDINATOR_URL"]["value"] == (
        f"http://waypost.{NAMESPACE}.svc.cluster.local:8080")
    assert env["WAYPOST_LEASE_NAME"]["value"] == "waypost-leader"
    assert env["WAYPOST_RUNNER_IMAGE"]["value"] == "waypost-runner:0.1.0"
    assert "WAYPOST_API_TOKEN" not in env
    assert "WAYPOST_WATCH_NAMESPACES" not in env  # every namespace
    # The ServiceAccount itself does not hand its token to anything else.
    assert one(default_docs, "ServiceAccount", "waypost")["automountServiceAccountToken"] is False
    service = one(default_docs, "Service", "waypost")
    assert service["spec"]["selector"] == operator_selector()
    assert service["spec"]["ports"][0]["port"] == 8080


def test_numeric_image_tags_are_taken_as_strings(helm: str) -> None:
    # `--set postgresql.image.tag=15` arrives as a number.
    docs = render(helm, "postgresql.enabled=true", "postgresql.image.tag=15",
                  "operator.image.tag=2")
    assert one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "postgres:15")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "waypost-operator:2")


def test_database_and_api_token_secrets_are_configurable(helm: str) -> None:
    docs = render(helm, "database.existingSecret=pg-dsn", "database.secretKey=dsn",
                  "apiToken.existingSecret=api", "operator.image.tag=1.2.3")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["WAYPOST_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg-dsn", "key": "dsn"}
    assert env["WAYPOST_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "token"}
    assert container["image"] == "waypost-operator:1.2.3"


# --- security -----------------------------------------------------------------


@pytest.mark.parametrize("docs_name", ["default_docs", "bundled_docs"])
def test_every_container_is_restricted(docs_name: str, request: pytest.FixtureRequest) -> None:
    docs: list[Manifest] = request.getfixturevalue(docs_name)
    specs = list(pod_specs(docs))
    assert specs
    for where, pod in specs:
        pod_sc = pod.get("securityContext", {})
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{where}: {key}"
        assert not any("hostPath" in v for v in pod.get("volumes", [])), f"{where}: hostPath"
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container.get("securityContext", {})
            name = f"{where}/{container['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert not sc.get("privileged"), name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, name
            seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), name


def rules_of(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [rule for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])
            for rule in d["rules"]]


def test_lease_updates_are_limited_by_resource_names(default_docs: list[Manifest]) -> None:
    assert not [r for r in rules_of(default_docs, "ClusterRole") if "leases" in r["resources"]], (
        "leases must be granted by the namespaced Role only"
    )
    role = one(default_docs, "Role", "waypost-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        if set(rule["verbs"]) & {"get", "update", "patch", "delete"}:
            assert rule.get("resourceNames") == ["waypost-leader"], rule
        else:
            assert rule["verbs"] == ["create"], rule  # create cannot be limited by name
    granted = {v for r in role["rules"] for v in r["verbs"]}
    assert granted == {"create", "get", "update"}


def test_lease_name_follows_the_value(helm: str) -> None:
    docs = render(helm, "operator.leaseName=my-lease")
    role = one(docs, "Role")
    assert [r.get("resourceNames") for r in role["rules"]] == [None, ["my-lease"]]
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["WAYPOST_LEASE_NAME"]["value"] == "my-lease"


def test_cluster_role_grants_exactly_what_the_operator_uses(default_docs: list[Manifest]) -> None:
    granted = {
        (group, resource, verb)
        for rule in rules_of(default_docs, "ClusterRole", "waypost")
        for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert not {g for g in granted if "*" in g}, "no wildcards"
    expected = set()
    for resource in ("tasks", "taskruns"):
        expected |= {("waypost.dev", resource, v)
                     for v in ("get", "list", "watch", "patch", "update")}
        expected |= {("waypost.dev", f"{resource}/status", v) for v in ("get", "patch", "update")}
        expected.add(("waypost.dev", f"{resource}/finalizers", "update"))
    # Scheduled runs become TaskRuns; finished ones past the history limits go.
    expected |= {("waypost.dev", "taskruns", v) for v in ("create", "delete")}
    expected |= {("", "pods", v) for v in ("create", "get", "list", "watch", "delete")}
    expected |= {("", "secrets", v) for v in ("create", "get", "patch", "delete")}
    expected |= {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    expected |= {("apiextensions.k8s.io", "customresourcedefinitions", v)
                 for v in ("get", "list", "watch")}
    expected |= {("", "namespaces", v) for v in ("list", "watch")}
    assert granted == expected, (granted - expected, expected - granted)
    binding = one(default_docs, "ClusterRoleBinding", "waypost")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "waypost",
                                    "namespace": NAMESPACE}]


def test_runner_network_policy_allows_only_dns_and_the_coordinator(
    default_docs: list[Manifest],
) -> None:
    policy = one(default_docs, "NetworkPolicy", "waypost-runners")
    spec = policy["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "waypost",
                        "app.kubernetes.io/component": "runner"},
    }
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert spec.get("ingress", []) == []
    dns, coordinator = spec["egress"]
    assert dns["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert coordinator["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
        "podSelector": {"matchLabels": operator_selector()},
    }]
    assert coordinator["ports"] == [{"protocol": "TCP", "port": 8080}]
    # Every peer is selected: no rule without `to` (which would mean anywhere).
    assert all(rule.get("to") for rule in spec["egress"])

    operator = one(default_docs, "NetworkPolicy", "waypost-operator")["spec"]
    assert operator["podSelector"]["matchLabels"] == operator_selector()
    assert operator["policyTypes"] == ["Ingress"]
    assert operator["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]


def test_watched_namespaces_reach_the_operator_and_the_runner_policy(helm: str) -> None:
    docs = render(helm, "operator.watchNamespaces={team-a,team-b}", "operator.maxPods=50")
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["WAYPOST_WATCH_NAMESPACES"] == "team-a,team-b"
    assert env["WAYPOST_MAX_PODS"] == "50"
    runner = [d["metadata"]["namespace"] for d in docs
              if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "waypost-runners"]
    assert sorted(runner) == ["team-a", "team-b"]


def test_runner_policy_in_each_listed_namespace(helm: str) -> None:
    docs = render(helm, "networkPolicy.runnerNamespaces={team-a,team-b}")
    runner = [d for d in docs if d["kind"] == "NetworkPolicy"
              and d["metadata"]["name"] == "waypost-runners"]
    assert sorted(d["metadata"]["namespace"] for d in runner) == ["team-a", "team-b"]
    assert not [d for d in render(helm, "networkPolicy.enabled=false")
                if d["kind"] == "NetworkPolicy"]


def test_uninstall_hook_deletes_only_runner_pods(default_docs: list[Manifest], helm: str) -> None:
    hook_objects = [d for d in default_docs
                    if d["metadata"]["name"] == "waypost-cleanup"]
    assert len(hook_objects) == 4
    for doc in hook_objects:
        annotations = doc["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-delete"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert rules_of(default_docs, "ClusterRole", "waypost-cleanup") == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
        {"apiGroups": ["waypost.dev"], "resources": ["tasks", "taskruns"],
         "verbs": ["list", "patch"]}]
    job = one(default_docs, "Job", "waypost-cleanup")
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "waypost-cleanup"
    script = pod["containers"][0]["args"][0]
    compile(script, "cleanup-hook", "exec")  # the embedded script is valid Python
    assert "app.kubernetes.io/managed-by=waypost,app.kubernetes.io/component=runner" in script
    assert f'finalizer = "{k8s.FINALIZER}"' in script  # taken off Tasks and TaskRuns
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["OPERATOR_SELECTOR"] == ",".join(f"{k}={v}" for k, v in operator_selector().items())
    assert not [d for d in render(helm, "cleanupOnUninstall.enabled=false")
                if d["metadata"]["name"] == "waypost-cleanup"]


# --- CRDs ---------------------------------------------------------------------


def load_sync_crds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_crds", REPO / "charts/tools/sync_crds.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_are_copies_of_crds_dir() -> None:
    expected: dict[str, str] = load_sync_crds().expected()
    assert sorted(expected) == ["taskruns.waypost.dev.yaml", "tasks.waypost.dev.yaml"]
    target = CHART / "templates" / "crds"
    actual = {p.name: p.read_text(encoding="utf-8") for p in sorted(target.glob("*.yaml"))}
    assert actual == expected, (
        "charts/waypost/templates/crds drifted from crds/: run `make chart-crds`")


def test_rendered_crds_equal_the_generated_ones_and_are_kept(default_docs: list[Manifest]) -> None:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        generated = yaml.safe_load(path.read_text(encoding="utf-8"))
        rendered = one(default_docs, "CustomResourceDefinition", generated["metadata"]["name"])
        assert rendered["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert rendered == generated, path.name


def test_crds_can_be_left_out_or_not_kept(helm: str) -> None:
    left_out = render(helm, "crds.install=false")
    assert not [d for d in left_out if d["kind"] == "CustomResourceDefinition"]
    crds = [d for d in render(helm, "crds.keep=false") if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 2 and all("annotations" not in d["metadata"] for d in crds)


# --- values, schema, docs -----------------------------------------------------


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == pyproject["project"]["version"]


@pytest.mark.parametrize(("setting", "message"), [
    ("operator.replicas=two", "/operator/replicas"),
    ("operator.image.tag=latest", "/operator/image/tag"),
    ("operator.bogus=1", "bogus"),
    ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy"),
    ("networkPolicy.runnerNamespaces={Not_A_Namespace}", "/networkPolicy/runnerNamespaces"),
])
def test_schema_rejects_bad_values(helm: str, setting: str, message: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
                      "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_schema_describes_exactly_the_values() -> None:
    """Every key of values.yaml is in values.schema.json and the other way round."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

    def walk(value: Any, node: dict[str, Any], path: str) -> Iterator[str]:
        props = node.get("properties")
        if not isinstance(value, dict) or props is None:
            return
        for key in sorted(set(value) | set(props) - {"global"}):
            where = f"{path}.{key}" if path else key
            if key not in props:
                yield f"{where}: in values.yaml, not in the schema"
            elif key not in value:
                yield f"{where}: in the schema, not in values.yaml"
            elif not key.endswith(FREE_FORM):  # Kubernetes objects: free-form by design
                yield from walk(value[key], props[key], where)

    assert list(walk(values, schema, "")) == []


def leaf_paths(values: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of the documented values; maps of free-form settings end a path."""
    if isinstance(values, dict) and values and not prefix.endswith(FREE_FORM):
        for key, value in values.items():
            yield from leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


FREE_FORM = ("resources", "SecurityContext", "securityContext", "Probe", "labels", "selector",
             "Selector", "namespaceSelector", "podSelector")


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    paths = list(leaf_paths(values))
    assert "operator.replicas" in paths and "postgresql.persistence.size" in paths
    missing = [p for p in paths if f"`{p}`" not in readme]
    assert not missing, f"values not documented in charts/waypost/README.md: {missing}"


def test_every_value_has_a_comment_in_values_yaml() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z]\w*):(.*)$", line)
        if not match or not match.group(3).strip() or match.group(3).strip().startswith("#"):
            continue  # a section header; its leaves carry the comments
        indent = len(match.group(1))
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#") and not _inside_free_form(lines, i, indent):
            undocumented.append(line.strip())
    assert not undocumented, undocumented


def _inside_free_form(lines: list[str], i: int, indent: int) -> bool:
    for j in range(i - 1, -1, -1):
        text = lines[j]
        if not text.strip() or text.strip().startswith("#"):
            continue
        parent_indent = len(text) - len(text.lstrip())
        if parent_indent < indent:
            key = text.strip().split(":", 1)[0].lstrip("- ")
            if key.endswith(FREE_FORM) or key in ("requests", "limits", "capabilities",
                                                  "httpGet", "seccompProfile", "matchLabels"):
                return True
            return _inside_free_form(lines, j, parent_indent) if parent_indent > 0 else False
    return False


def test_prometheus_rule_alerts_on_long_transactions_and_hot_table_bloat(
    bundled_docs: list[Manifest],
) -> None:
    rule = one(bundled_docs, "PrometheusRule", "waypost")
    [group] = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"WaypostLongTransaction", "WaypostHotTableBloat",
                           "WaypostRunsDeadLettered", "WaypostOOMKills", "WaypostQueueWaitHigh",
                           "WaypostTimeoutLoop", "WaypostRetryStorm", "WaypostCheckpointGap",
                           "WaypostMemoryGrowth"}
    long_txn = alerts["WaypostLongTransaction"]
    assert long_txn["expr"] == (
        'max(waypost_db_oldest_snapshot_seconds{namespace="waypost-system"}) > 300')
    assert long_txn["for"] == "10m"
    assert "{{ $value | humanizeDuration }}" in long_txn["annotations"]["summary"]
    assert alerts["WaypostHotTableBloat"]["expr"] == (
        'max(waypost_hot_table_dead_tuples{namespace="waypost-system"}) > 1000000')
    # Counters are the leader's: summed over replicas (docs/metrics.md); what each
    # alert does on its series is tested by promtool (test_chart_rules.py).
    assert alerts["WaypostOOMKills"]["expr"] == (
        "sum by (task_namespace, task) (increase(waypost_attempt_oom_kills_total"
        '{namespace="waypost-system"}[15m])) >= 1')


def test_engine_settings_and_limits_reach_the_operator(helm: str) -> None:
    docs = render(helm, "operator.engine.heartbeatIntervalSeconds=7",
                  "operator.engine.claimBatch=200", "operator.limits.payloadBytes=2097152")
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert (env["WAYPOST_HEARTBEAT_INTERVAL"], env["WAYPOST_CLAIM_BATCH"]) == ("7", "200")
    assert (env["WAYPOST_MISSED_HEARTBEATS"], env["WAYPOST_POLL_INTERVAL"],
            env["WAYPOST_SCHEDULE_INTERVAL"]) == ("3", "2", "10")
    assert env["WAYPOST_LIMIT_PAYLOAD_BYTES"] == "2097152"
    assert env["WAYPOST_LIMIT_CHECKPOINT_BYTES"] == "1048576"
    # The operator reads every one of them.
    read = {k: v for k, v in env.items() if k.startswith("WAYPOST_") and v is not None
            and k in {"WAYPOST_HEARTBEAT_INTERVAL", "WAYPOST_CLAIM_BATCH",
                      "WAYPOST_MISSED_HEARTBEATS", "WAYPOST_POLL_INTERVAL",
                      "WAYPOST_SCHEDULE_INTERVAL", "WAYPOST_LIMIT_PAYLOAD_BYTES",
                      "WAYPOST_LIMIT_CHECKPOINT_BYTES", "WAYPOST_LIMIT_RESULT_BYTES"}}
    with mock.patch.dict(os.environ, read):
        settings = Settings.from_env(database_url="postgresql://x@y/z")
    assert (settings.heartbeat_interval_seconds, settings.claim_batch) == (7.0, 200)
    assert (settings.missed_heartbeats, settings.poll_interval_seconds,
            settings.schedule_interval_seconds) == (3, 2.0, 10.0)
    assert settings.limits.payload_bytes == 2097152
    assert settings.limits.checkpoint_bytes == settings.limits.result_bytes == 1048576
    refused = subprocess.run([helm, "template", "x", str(CHART), "--set",
                              "operator.engine.claimBatch=0"], capture_output=True, text=True,
                             check=False)
    assert refused.returncode != 0 and "claimBatch" in refused.stderr


def test_history_retention_reaches_the_operator(helm: str) -> None:
    docs = render(helm, "operator.history.retainFor=36h")
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert (env["WAYPOST_HISTORY_RETAIN_FOR"], env["WAYPOST_DEAD_LETTER_RETAIN_FOR"]) == (
        "36h", "30d")
    read = {k: env[k] for k in ("WAYPOST_HISTORY_RETAIN_FOR", "WAYPOST_DEAD_LETTER_RETAIN_FOR")}
    with mock.patch.dict(os.environ, read):
        settings = Settings.from_env(database_url="postgresql://x@y/z")
    assert (settings.history_retain_seconds, settings.dead_letter_retain_seconds) == (
        36 * 3600, 30 * 86400)
    with mock.patch.dict(os.environ, {"WAYPOST_DEAD_LETTER_RETAIN_FOR": "0"}):
        assert Settings.from_env(database_url="postgresql://x@y/z").dead_letter_retain_seconds == 0
    refused = subprocess.run([helm, "template", "x", str(CHART), "--set",
                              "operator.history.retainFor=a week"], capture_output=True,
                             text=True, check=False)
    assert refused.returncode != 0 and "retainFor" in refused.stderr


def test_tracing_values_reach_the_operator_and_the_runner_policy(helm: str) -> None:
    docs = render(helm, "tracing.otlpEndpoint=http://jaeger.tracing:4318",
                  "tracing.env.OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test")
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger.tracing:4318"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=test"
    egress = one(docs, "NetworkPolicy", "waypost-runners")["spec"]["egress"]
    assert egress[-1] == {"ports": [{"protocol": "TCP", "port": 4318}]}
    # Failure-pattern thresholds reach the operator as the variables Settings reads.
    assert {n for n in env if n in INSIGHT_VARIABLES} == set(INSIGHT_VARIABLES)
    assert env["WAYPOST_CHECKPOINT_GAP_SECONDS"] == "600"
    # Off by default: no OTEL_* variable, no egress beyond DNS and the coordinator.
    default = render(helm)
    env = {e["name"] for e in one(default, "Deployment")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert not {n for n in env if n.startswith("OTEL_")}
    assert len(one(default, "NetworkPolicy", "waypost-runners")["spec"]["egress"]) == 2
