"""`waypost manifests`: Task YAML from the @task declarations, through the same
conversion `waypost dev` registers; the bundled examples/manifests are its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from examples import flaky, hello, orders
from waypost.cli import manifests
from waypost.model import from_sdk
from waypost.model.task import TaskSpec
from waypost.sdk.decorator import Task

REPO = Path(__file__).resolve().parents[2]
IMAGE = "waypost-examples:0.1.0"
BUNDLED = {"hello": hello, "orders": orders, "flaky": flaky}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_manifests_are_generated(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    generated = manifests.render([f"examples.{name}"], image=IMAGE, namespace=None)
    text = (REPO / "examples" / "manifests" / f"{name}.yaml").read_text()
    assert text.startswith(generated), (
        f"examples/manifests/{name}.yaml drifted from the @task declarations; regenerate: "
        f"waypost manifests examples.{name} --image {IMAGE}")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_manifests_read_back_as_the_same_spec(name: str) -> None:
    module = BUNDLED[name]
    declared = {t.definition.id: t for t in vars(module).values() if isinstance(t, Task)}
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / "manifests" / f"{name}.yaml")
                                          .read_text()) if d["kind"] == "Task"]
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(declared)
    for doc in docs:
        expected = from_sdk.task_spec(declared[doc["metadata"]["name"]].definition, image=IMAGE)
        assert TaskSpec.model_validate(doc["spec"]) == expected


def test_manifests_of_a_user_file_with_a_namespace(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "from waypost import Schedule, task\n"
        "@task(id='nightly-report', memory='256Mi', timeout='10m',\n"
        "      schedules=[Schedule(cron='0 2 * * *', timezone='Europe/Berlin', name='nightly')])\n"
        "def report(ctx, payload):\n    return 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "manifests", "./tasks.py", "--image",
         "registry.example/me/tasks:1", "--namespace", "jobs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    [doc] = list(yaml.safe_load_all(proc.stdout))
    assert doc["metadata"] == {"name": "nightly-report", "namespace": "jobs"}
    assert doc["spec"]["entrypoint"] == "tasks:report"
    assert doc["spec"]["image"] == "registry.example/me/tasks:1"
    assert doc["spec"]["schedules"] == [{"name": "nightly", "cron": "0 2 * * *",
                                         "timezone": "Europe/Berlin", "missedRuns": "Skip",
                                         "catchupLimit": 10}]
    assert doc["spec"]["timeout"] == {"maxDuration": "600s"}

    missing = subprocess.run([sys.executable, "-m", "waypost.cli", "manifests", "./nope.py"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             check=False)
    assert missing.returncode == 2 and "no such Python file" in missing.stderr
