"""The chart README's "your own Postgres" install, and the main README's "From your
`tasks.py` to the cluster" steps, followed on a real cluster as
written: ``kubectl create namespace``, the DSN Secret, ``helm install`` (block
``bash e2e-own-postgres`` of charts/waypost/README.md, run by bash from the
repository root with this cluster's helm and kubectl first on PATH, nothing added).

"Your own Postgres" is the DSN the README names, ``db.example:5432``: a Postgres Pod
behind the Service ``db`` in the namespace ``example`` (the harness's Postgres image),
which the operator Pod's DNS search path resolves as ``db.example``. The test then
does what the README says next (apply a Task and a TaskRun in the release namespace,
``kubectl wait``) and checks that the run was stored in that Postgres and that the
release has no Postgres of its own. Then the main README's ``e2e-manifests-print``
and ``e2e-manifests-apply`` blocks run as written in a folder holding a ``tasks.py``
(``waypost`` is this test's interpreter's), and the operator marks the Task
``Ready`` in the namespace ``jobs``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import test_operator
from e2e_support import wait_until
from test_operator import kubectl_bin
from test_readme_kubernetes import (
    CRDS,
    NAMESPACE,
    README,
    RELEASE,
    REPO,
    _env,
    kubectl,
    readme_block,
    restore_crds,
    run_block,
    sh,
)

helm = test_operator.helm
images = test_operator.images

CHART_README = REPO / "charts/waypost/README.md"
DB_NAMESPACE = "example"
JOBS_NAMESPACE = "jobs"
TASKS_PY = """\
from waypost import Retry, task


@task(id="readme-greet", retry=Retry(max_attempts=2), memory="128Mi", timeout="1m")
async def greet(ctx, payload):
    name = await ctx.step("name", lambda: payload.get("name", "world"))
    return {"greeting": f"Hello, {name}!"}
"""


def _db_manifests(image: str) -> list[dict[str, Any]]:
    """A Postgres with the README DSN's user, password and database, as the chart's
    bundled one runs it (the harness image behaves like the official image)."""
    labels = {"app": "db"}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db", "namespace": DB_NAMESPACE, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999,
                                "fsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "postgres", "image": image, "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "postgresql", "containerPort": 5432}],
                "env": [{"name": "POSTGRES_USER", "value": "waypost"},
                        {"name": "POSTGRES_PASSWORD", "value": "PASSWORD"},
                        {"name": "POSTGRES_DB", "value": "waypost"},
                        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                "readinessProbe": {"exec": {"command": [
                    "sh", "-c", "pg_isready -h 127.0.0.1 -p 5432 -U waypost -d waypost"]},
                    "periodSeconds": 2},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                 {"name": "run", "mountPath": "/var/run/postgresql"},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": n, "emptyDir": {}} for n in ("data", "run", "tmp")],
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": DB_NAMESPACE},
        "spec": {"selector": labels, "ports": [{"port": 5432, "targetPort": "postgresql"}]},
    }
    return [pod, service]


@pytest.fixture(scope="module")
def own_postgres_release(helm: str, images: str,
                         api: client.ApiClient) -> Iterator[dict[str, Any]]:
    ext = client.ApiextensionsV1Api(api)
    core = client.CoreV1Api(api)
    namespaces = {n.metadata.name for n in core.list_namespace().items}
    for name in (NAMESPACE, DB_NAMESPACE, JOBS_NAMESPACE):
        assert name not in namespaces, f"namespace {name} exists: left by an earlier run?"
    present = {c.metadata.name: c for c in ext.list_custom_resource_definition().items
               if c.metadata.name in CRDS}
    bin_dir = Path(tempfile.mkdtemp(prefix="waypost-e2e-chart-readme-"))
    (bin_dir / "kubectl").symlink_to(kubectl_bin())
    (bin_dir / "helm").symlink_to(helm)
    try:
        kubectl("create", "namespace", DB_NAMESPACE)
        kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": _db_manifests(images)}))
        kubectl("wait", "-n", DB_NAMESPACE, "--for=condition=Ready", "pod/db",
                "--timeout=300s", timeout=320)
        if present:
            # CRDs on the cluster already (other tests apply crds/): the chart README
            # sends such a reader to the main README, whose commands hand them over.
            run_block(readme_block("e2e-crds-applied-first", README), bin_dir, 60)
        started = time.monotonic()
        proc = run_block(readme_block("e2e-own-postgres", CHART_README), bin_dir, 600)
        # What the README says next: a Task and a TaskRun in the release namespace.
        kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples/manifests/hello.yaml"))
        kubectl("wait", "-n", NAMESPACE, "--for=condition=Succeeded", "taskrun/hello-1",
                "--timeout=600s", timeout=620)
        yield {"stdout": proc.stdout, "elapsed": time.monotonic() - started}
    finally:
        kubectl("delete", "taskruns,tasks", "--all", "-n", NAMESPACE, "--timeout=120s",
                timeout=130, check=False)
        kubectl("delete", "tasks", "--all", "-n", JOBS_NAMESPACE, "--timeout=120s",
                timeout=130, check=False)
        sh(helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=300, check=False)
        for name in (NAMESPACE, DB_NAMESPACE, JOBS_NAMESPACE):
            kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s",
                    timeout=200, check=False)
        restore_crds(present)


def _psql(sql: str) -> str | None:
    """``sql``'s answer from the database behind db.example, as the operator logs in
    (None while it cannot)."""
    proc = kubectl("exec", "-n", DB_NAMESPACE, "db", "--", "env", "PGPASSWORD=PASSWORD",
                   "psql", "-h", "127.0.0.1", "-U", "waypost", "-d", "waypost", "-tAc", sql,
                   check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_the_chart_readme_own_postgres_install_runs_as_written(
    own_postgres_release: dict[str, Any],
) -> None:
    status = json.loads(kubectl("get", "taskrun", "hello-1", "-n", NAMESPACE, "-o",
                                "json").stdout)["status"]
    print(f"chart README, own Postgres: namespace to Succeeded in "
          f"{own_postgres_release['elapsed']:.1f} s; result {status.get('result')}")
    assert status["result"]["greeting"] == "Hello, cluster!", status
    # The operator read the DSN from the Secret the README created…
    deployments = json.loads(kubectl("get", "deployment", "-n", NAMESPACE, "-o",
                                     "json").stdout)["items"]
    env = [e for d in deployments for c in d["spec"]["template"]["spec"]["containers"]
           for e in c.get("env", []) if e["name"] == "WAYPOST_DATABASE_URL"]
    assert env and all(e["valueFrom"]["secretKeyRef"]["name"] == "waypost-database"
                       for e in env), env
    # … the release runs no Postgres of its own …
    sets = json.loads(kubectl("get", "statefulsets,pvc", "-n", NAMESPACE, "-o",
                              "json").stdout)["items"]
    assert sets == [], [s["metadata"]["name"] for s in sets]
    # … and the run is stored in the Postgres behind db.example.
    stored = wait_until(lambda: _psql(
        f"SELECT status FROM waypost.runs WHERE id = '{status['runId']}'"), 60,
        "the run in db.example's database")
    assert stored == "succeeded", stored


def test_the_readme_manifests_steps_run_as_written(
    own_postgres_release: dict[str, Any], tmp_path: Path,
) -> None:
    (tmp_path / "tasks.py").write_text(TASKS_PY)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(kubectl_bin())
    (bin_dir / "waypost").symlink_to(Path(sys.executable).parent / "waypost")
    for tag in ("e2e-manifests-print", "e2e-manifests-apply"):
        proc = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", readme_block(tag, README)], cwd=tmp_path,
            env=_env(bin_dir), capture_output=True,
            text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"{tag}:\n{proc.stdout}\n{proc.stderr}"
    task_doc = json.loads(kubectl("get", "task", "readme-greet", "-n", JOBS_NAMESPACE, "-o",
                                  "json").stdout)
    assert task_doc["spec"]["image"] == "registry.example.com/me/tasks:1", task_doc["spec"]
    assert task_doc["spec"]["retry"]["maxAttempts"] == 2, task_doc["spec"]
    kubectl("wait", "-n", JOBS_NAMESPACE, "--for=condition=Ready", "task/readme-greet",
            "--timeout=120s", timeout=130)
