"""Durable waits on a real cluster (issue 13): a TaskRun that sleeps 30 s has no Pod
while it waits and shows Waiting in `kubectl get taskruns`, `kubectl wait
--for=condition=Succeeded` returns across the suspension; a parent fans out 20
child runs (no TaskRun each); an approval token is completed with curl.

It installs its own release with the fixtures of test_operator.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from typing import Any

from e2e_support import kubeconfig_path, wait_until
from test_operator import (
    api_get,
    apply,
    helm,
    images,
    kubectl,
    kubectl_bin,
    ns,
    release,
    status_of,
    task,
    taskrun,
    wait_reason,
)

# The release fixtures of test_operator.py, used here by name.
__all__ = ["helm", "images", "ns", "release"]


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def _run_pods(ns: str, run_id: str) -> list[str]:
    out = kubectl("get", "pods", "-n", ns, "-l", f"waypost.dev/run-id={run_id}", "-o",
                  "jsonpath={.items[*].metadata.name}").stdout
    return out.split()


def test_waits_taskrun_sleeps_30s_without_a_pod(release: dict[str, str]) -> None:
    space = release["namespace"]
    # No warm pool: the attempt's Pod is made for it and goes with it.
    apply(task(space, "nap", "examples.waits:nap", warmPool={"enabled": False}))
    name = f"nap-{uuid.uuid4().hex[:6]}"
    apply(taskrun(space, name, "nap", {"seconds": 30}))
    status = wait_reason(space, name, {"Waiting"}, 300)
    waiting = _condition(status, "Waiting")
    assert waiting is not None and waiting["status"] == "True", status
    assert waiting["reason"] == "Sleeping" and status.get("waitingUntil"), status
    listed = kubectl("get", "taskruns", "-n", space, name).stdout
    assert "Waiting" in listed, listed
    run_id = status["runId"]
    # kubectl wait across the suspension, in the background while we watch the Pods
    # (the cluster named as kubectl() names it: KUBECONFIG is not set for pytest).
    waiter = subprocess.Popen(
        [kubectl_bin(), "wait", "--for=condition=Succeeded", f"taskrun/{name}", "-n", space,
         "--timeout=240s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig_path())})
    # The first attempt's Pod is deleted once it exits; from then on none exists
    # until the sleep ends.
    wait_until(lambda: not _run_pods(space, run_id), 60, f"the Pods of run {run_id} to go")
    watched = 0
    while (_condition(status_of(space, "taskrun", name), "Waiting") or {}).get("status") == "True":
        assert _run_pods(space, run_id) == [], "a Pod of the sleeping run exists"
        watched += 1
        time.sleep(2)
    assert watched >= 5, "the wait was too short to watch"
    out, err = waiter.communicate(timeout=260)
    assert waiter.returncode == 0, (out, err)
    final = status_of(space, "taskrun", name)
    assert _condition(final, "Succeeded")["reason"] == "Succeeded"  # type: ignore[index]
    resumed = _condition(final, "Waiting")
    assert resumed is not None and resumed["status"] == "False", final
    assert final["result"]["slept"] == 30 and final["attempt"] == 2
    run = api_get(release, f"/v1/runs/{run_id}")
    assert [a["status"] for a in run["attempts"]] == ["suspended", "succeeded"]


def test_waits_parent_fans_out_20_children(release: dict[str, str]) -> None:
    space = release["namespace"]
    queue = {"name": "fanout", "maxConcurrency": 5}
    apply(task(space, "square", "examples.waits:square", queue=queue))
    apply(task(space, "fan-out", "examples.waits:fan_out", queue=queue))
    name = f"fan-{uuid.uuid4().hex[:6]}"
    apply(taskrun(space, name, "fan-out", {"n": 20, "pause": 0.2}))
    status = wait_reason(space, name, {"Waiting", "Succeeded", "Failed", "DeadLettered"}, 300)
    if _condition(status, "Succeeded")["reason"] == "Waiting":  # type: ignore[index]
        assert _condition(status, "Waiting")["reason"] == "WaitingForChildren"  # type: ignore[index]
        assert len(status.get("waitingForChildren") or []) == 20
    status = wait_reason(space, name, {"Succeeded", "Failed", "DeadLettered"}, 600)
    assert _condition(status, "Succeeded")["reason"] == "Succeeded", status  # type: ignore[index]
    assert status["result"]["sum"] == sum(i * i for i in range(20))
    children = api_get(release, f"/v1/runs/{status['runId']}/children")["runs"]
    assert len(children) == 20
    assert all(c["parentRunId"] == status["runId"] and c["taskrunName"] is None
               for c in children)
    assert {c["status"] for c in children} == {"succeeded"}
    # Only the parent is a TaskRun.
    names = kubectl("get", "taskruns", "-n", space, "-o", "name").stdout.split()
    assert f"taskrun.waypost.dev/{name}" in names
    assert not any("square" in n for n in names)


def test_waits_approval_token_completed_with_curl(release: dict[str, str]) -> None:
    space = release["namespace"]
    apply(task(space, "approval", "examples.waits:approval"))
    name = f"approve-{uuid.uuid4().hex[:6]}"
    apply(taskrun(space, name, "approval", {"timeout": "1h"}))
    status = wait_reason(space, name, {"Waiting"}, 300)
    assert _condition(status, "Waiting")["reason"] == "WaitingForToken"  # type: ignore[index]
    token = status["waitingForToken"]
    body = json.dumps({"data": {"approved": True, "by": "curl"}})
    done = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
         "-w", "\n%{http_code}", f"{release['url']}/v1/tokens/{token}/complete"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("200"), done
    again = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
         "-w", "\n%{http_code}", f"{release['url']}/v1/tokens/{token}/complete"],
        capture_output=True, text=True, timeout=30, check=False)
    assert again.stdout.strip().endswith("409"), again
    status = wait_reason(space, name, {"Succeeded", "Failed", "DeadLettered"}, 300)
    assert status["result"] == {"approved": True, "by": "curl"}, status
