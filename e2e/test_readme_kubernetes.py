"""The README's "On Kubernetes" section, followed on a real cluster as a platform
engineer would, and `waypost manifests` output applied to the release it installs.

The README's shell blocks run as written (bash, from the repository root, with this
cluster's helm and kubectl first on PATH):

- ``e2e-crds-applied-first``: the CRDs are applied from ``crds/`` first, as that
  folder invites, and handed to the release the way the README says;
- ``e2e-on-kubernetes``: ``helm install`` to ``kubectl wait`` and ``kubectl get``.

Two additions to ``helm install``, made by a ``helm`` wrapper first on PATH and
printed by the test: ``--set postgresql.persistence.enabled=false``, the README's
remedy when the cluster has no default StorageClass (checked, not assumed), and
on the harness cluster, which has no registry, its locally built Postgres image.
Nothing else is changed: release ``waypost`` in ``waypost-system``, as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import test_operator
from e2e_support import E2E_DIR, kubeconfig_path, wait_until
from test_operator import kubectl_bin

# The operator tests' module fixtures (helm; the images built from this tree), run
# again for this module.
helm = test_operator.helm
images = test_operator.images

REPO = E2E_DIR.parent
README = REPO / "README.md"
NAMESPACE = "waypost-system"
RELEASE = "waypost"
CRDS = ("tasks.waypost.dev", "taskruns.waypost.dev")


def readme_block(tag: str, readme: Path = README) -> str:
    """The README's shell block whose info string is ``bash <tag>`` (dedented)."""
    found = re.findall(rf"^( *)```bash {re.escape(tag)}\n(.*?)^\1```", readme.read_text(),
                       re.S | re.M)
    assert len(found) == 1, f"{readme.name} has {len(found)} ```bash {tag} blocks"
    indent, body = found[0]
    return textwrap.dedent(body) if indent else str(body)


def _env(path_dir: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(kubeconfig_path()),
            "PATH": f"{path_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(*cmd: str, timeout: float = 300, stdin: str | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                            input=stdin, check=False)
    if check:
        assert result.returncode == 0, f"{shlex.join(cmd)}:\n{result.stdout}\n{result.stderr}"
    return result


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return sh(kubectl_bin(), *args, **kw)


def run_block(script: str, bin_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A README block in bash with -euo pipefail, echoing each command (-x) so a
    failure shows which line of the README it was."""
    result = subprocess.run(["bash", "-euxo", "pipefail", "-c", script], cwd=REPO,
                            env=_env(bin_dir), capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"README block failed:\n{script}\n{result.stdout}\n" \
                                   f"{result.stderr}"
    return result


def has_default_storage_class(api: client.ApiClient) -> bool:
    classes = client.StorageV1Api(api).list_storage_class().items
    return any((c.metadata.annotations or {}).get(
        "storageclass.kubernetes.io/is-default-class") == "true" for c in classes)


@pytest.fixture(scope="module")
def readme_release(helm: str, images: str, api: client.ApiClient) -> Iterator[dict[str, Any]]:
    """Everything the README's section does, from ``kubectl apply -f crds/`` to
    ``kubectl get``; yields what it measured. Uninstalls and leaves the CRDs as it
    found them."""
    ext = client.ApiextensionsV1Api(api)
    core = client.CoreV1Api(api)
    present = {c.metadata.name: c for c in ext.list_custom_resource_definition().items
               if c.metadata.name in CRDS}
    assert NAMESPACE not in {n.metadata.name for n in core.list_namespace().items}, (
        f"namespace {NAMESPACE} exists: a release of an earlier run was left behind")

    extra: list[str] = []
    if not has_default_storage_class(api):
        extra += ["--set", "postgresql.persistence.enabled=false"]
    repo, tag = images.rsplit(":", 1)
    if (repo, tag) != ("postgres", "16"):
        extra += ["--set", f"postgresql.image.repository={repo}",
                  "--set-string", f"postgresql.image.tag={tag}"]
    bin_dir = Path(tempfile.mkdtemp(prefix="waypost-e2e-readme-"))
    (bin_dir / "kubectl").symlink_to(kubectl_bin())
    wrapper = bin_dir / "helm"
    wrapper.write_text(
        "#!/bin/bash\n# Adds this cluster's needs to `helm install` (see the test's docstring).\n"
        f'if [ "$1" = install ]; then exec {shlex.quote(helm)} "$@" {shlex.join(extra)}; fi\n'
        f'exec {shlex.quote(helm)} "$@"\n')
    wrapper.chmod(0o755)
    print(f"helm install gets: {shlex.join(extra) or '(nothing)'}")

    # CRDs applied first, as `crds/` invites; then the README's way to hand them over.
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", *(f"crd/{c}" for c in CRDS),
            "--timeout=60s", timeout=70)
    run_block(readme_block("e2e-crds-applied-first"), bin_dir, 60)

    started = time.monotonic()
    proc = run_block(readme_block("e2e-on-kubernetes"), bin_dir, 900)
    elapsed = time.monotonic() - started
    try:
        yield {"stdout": proc.stdout, "stderr": proc.stderr, "elapsed": elapsed,
               "bin_dir": bin_dir}
    finally:
        # Tasks and TaskRuns first, while the operator is there to remove its finalizer
        # (after `helm uninstall` they would hold the namespace in Terminating).
        kubectl("delete", "taskruns,tasks", "--all", "-n", NAMESPACE, "--timeout=120s",
                timeout=130, check=False)
        sh(helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=300, check=False)
        kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s",
                timeout=200, check=False)
        restore_crds(present)


def restore_crds(present: dict[str, Any]) -> None:
    """Leave the cluster's CRDs as they were found (``present``: name -> the CRD then):
    CRDs that were not there go; CRDs that were lose the Helm ownership the README's
    commands gave them (they keep the fields of this tree's crds/, as any
    `kubectl apply -f crds/` leaves them)."""
    if not present:
        kubectl("delete", "crd", *CRDS, "--timeout=120s", timeout=130, check=False)
    for name, crd in present.items():
        if "meta.helm.sh/release-name" not in (crd.metadata.annotations or {}):
            kubectl("annotate", "crd", name, "meta.helm.sh/release-name-",
                    "meta.helm.sh/release-namespace-", check=False)
        if "app.kubernetes.io/managed-by" not in (crd.metadata.labels or {}):
            kubectl("label", "crd", name, "app.kubernetes.io/managed-by-", check=False)


def _taskrun(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        kubectl("get", "taskrun", name, "-n", NAMESPACE, "-o", "json").stdout)
    return doc


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def test_the_readme_on_kubernetes_runs_as_written(readme_release: dict[str, Any]) -> None:
    out = readme_release["stdout"]
    # `kubectl get taskruns`, the block's last command: the README's sample columns.
    table = out[out.index("NAME  "):].splitlines()
    status = _taskrun("hello-1")["status"]
    created = _taskrun("hello-1")["metadata"]["creationTimestamp"]
    print(f"README on Kubernetes: helm install to kubectl get in "
          f"{readme_release['elapsed']:.1f} s; kubectl get printed {table[:2]}; the TaskRun "
          f"took {_seconds(created, status['completionTime']):.1f} s from creation to "
          f"completion (started {_seconds(created, status['startTime']):.1f} s after creation)")
    assert table[0].split() == ["NAME", "TASK", "STATUS", "ATTEMPT", "LAST", "CHECKPOINT",
                                "AGE"], out
    row = table[1].split()
    assert row[:5] == ["hello-1", "hello", "Succeeded", "1", "greeting"], out
    assert status["result"]["greeting"] == "Hello, cluster!"
    # The section's three pitfalls. The CRDs applied first now belong to the release:
    for crd in CRDS:
        meta = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == NAMESPACE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # The Postgres ran without a claim (no default StorageClass here) or with one:
    claims = json.loads(kubectl("get", "pvc", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    assert all(c["status"]["phase"] == "Bound" for c in claims), claims
    # hello ran in the release namespace, which the runner NetworkPolicy covers (the
    # policy that selects the Pods the operator makes), and the notes say so.
    policies = json.loads(kubectl("get", "networkpolicy", "-n", NAMESPACE, "-o", "json").stdout)
    runner_policy = [p for p in policies["items"]
                     if p["spec"]["podSelector"].get("matchLabels", {}).get(
                         "app.kubernetes.io/managed-by") == "waypost"
                     and "Egress" in p["spec"].get("policyTypes", [])]
    assert runner_policy, [p["metadata"]["name"] for p in policies["items"]]
    assert f"runner Pods in {NAMESPACE} may reach only DNS" in out


def _contains(stored: Any, wanted: Any) -> bool:
    """Whether ``stored`` holds everything ``wanted`` does (the API server may add
    defaults, never drop or change what was applied)."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            k in stored and _contains(stored[k], v) for k, v in wanted.items())
    return bool(stored == wanted)


def test_waypost_manifests_output_runs_on_the_cluster(readme_release: dict[str, Any]) -> None:
    """`waypost manifests` prints the Tasks of examples/orders.py; applied, the cluster
    runs process-order as `waypost dev` does: a failed payment retried, resuming after
    the order-fetched checkpoint."""
    printed = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "manifests", "examples.orders", "--image",
         f"waypost-examples:{_version()}", "--namespace", NAMESPACE],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert printed.returncode == 0, printed.stderr
    manifests = list(yaml.safe_load_all(printed.stdout))
    assert [m["metadata"]["name"] for m in manifests] == ["process-order"]
    kubectl("apply", "-f", "-", stdin=printed.stdout)

    stored = json.loads(kubectl("get", "task", "process-order", "-n", NAMESPACE, "-o",
                                "json").stdout)
    wanted = manifests[0]["spec"]
    assert _contains(stored["spec"], wanted), (stored["spec"], wanted)  # nothing lost
    assert stored["spec"]["retry"]["maxAttempts"] == 5  # @task(retry=Retry(max_attempts=5))

    run = {"apiVersion": "waypost.dev/v1alpha1", "kind": "TaskRun",
           "metadata": {"name": "order-m1", "namespace": NAMESPACE},
           "spec": {"taskRef": {"name": "process-order"},
                    "payload": {"orderId": "m-1", "failPaymentOnAttempts": [1]}}}
    kubectl("apply", "-f", "-", stdin=json.dumps(run))
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Succeeded", "taskrun/order-m1",
            "--timeout=300s", timeout=320)
    status = _taskrun("order-m1")["status"]
    assert status["attempt"] == 2 and status["result"]["orderId"] == "m-1", status

    # The run's attempts and checkpoints, read with the CLI through the coordinator.
    # The chart's fullname is the release name when that already says "waypost".
    service = json.loads(kubectl("get", "service", RELEASE, "-n", NAMESPACE, "-o",
                                 "json").stdout)
    url = f"http://{service['spec']['clusterIP']}:8080"
    shown = wait_until(lambda: _show(url, status["runId"]), 60, "waypost runs show")
    assert [(c["key"], c["attempt"]) for c in shown["checkpoints"]] == [
        ("order-fetched", 1), ("payment-complete", 2)], shown["checkpoints"]
    assert [a["status"] for a in shown["attempts"]] == ["failed", "succeeded"]


def _show(url: str, run_id: str) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "--url", url, "runs", "show", run_id[:8], "-o",
         "json"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
