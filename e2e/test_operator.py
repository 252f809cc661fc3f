"""The operator on a real cluster: helm install, Tasks and TaskRuns with kubectl,
real Pods with real memory limits, leader failover, and uninstall.

One release (2 operator replicas, the bundled Postgres) serves every test in
this module, in a namespace of its own. The test process reaches the
coordinator through its Service (kube-proxy runs on this host).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e_support import E2E_DIR, kubeconfig_path, kubectl_bin, uses_harness, wait_until
from waypost.model import k8s

REPO = E2E_DIR.parent
CHART = REPO / "charts" / "waypost"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
RELEASE = "wpe2e"
CACHE_DIR = tempfile.mkdtemp(prefix="waypost-e2e-kubectl-")
EXAMPLES_IMAGE = f"waypost-examples:{VERSION}"


def sh(*cmd: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}\n{result.stderr}"
    return result


def kubectl(
    *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path())}
    result = subprocess.run(
        [kubectl_bin(), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
    return result


def apply(manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=check)


@pytest.fixture(scope="module")
def helm() -> str:
    return sh(str(REPO / "charts/tools/ensure-helm"), timeout=1800).stdout.strip()


@functools.cache
def build_images() -> str:
    """Build this worktree's images once per pytest session (every module that
    installs the chart needs them; a module run alone builds them too)."""
    if uses_harness():
        sh(
            str(REPO / "runner-image/build-images"),
            "runner",
            "examples",
            "operator",
            "postgres",
            timeout=2400,
        )
        return "waypost-e2e-postgres:15"
    return os.environ.get("WAYPOST_E2E_POSTGRES_IMAGE", "postgres:16")


@pytest.fixture(scope="module")
def images() -> str:
    return build_images()


@pytest.fixture(scope="module")
def ns(api: client.ApiClient) -> Iterator[str]:
    name = f"wp-op-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release(helm: str, images: str, ns: str, api: client.ApiClient) -> Iterator[dict[str, str]]:
    kubectl("apply", "-f", str(REPO / "crds"))  # shared by releases; kept on uninstall
    kubectl("wait", "--for=condition=Established", "crd/tasks.waypost.dev",
            "crd/taskruns.waypost.dev", "--timeout=60s", timeout=70)
    repo, tag = images.rsplit(":", 1)
    sh(
        helm,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        ns,
        "--set",
        "operator.replicas=2",
        "--set",
        "crds.install=false",
        "--set",
        "postgresql.enabled=true",
        "--set",
        f"postgresql.image.repository={repo}",
        "--set-string",
        f"postgresql.image.tag={tag}",
        "--set",
        "postgresql.persistence.enabled=false",
        timeout=300,
    )
    sh(
        kubectl_bin(),
        "rollout",
        "status",
        f"deployment/{RELEASE}-waypost",
        "-n",
        ns,
        "--timeout=300s",
        timeout=320,
    )
    service = client.CoreV1Api(api).read_namespaced_service(f"{RELEASE}-waypost", ns)
    info = {"namespace": ns, "url": f"http://{service.spec.cluster_ip}:8080"}
    yield info
    sh(helm, "uninstall", RELEASE, "--namespace", ns, "--wait", timeout=300, check=False)


def api_get(release: dict[str, str], path: str) -> Any:
    with urllib.request.urlopen(release["url"] + path, timeout=10) as response:
        return json.loads(response.read())


def api_post(release: dict[str, str], path: str) -> Any:
    req = urllib.request.Request(
        release["url"] + path,
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def task(ns: str, name: str, entrypoint: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"entrypoint": entrypoint, "image": EXAMPLES_IMAGE}
    body.update(spec)
    return {
        "apiVersion": "waypost.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def taskrun(ns: str, name: str, task_name: str, payload: Any) -> dict[str, Any]:
    return {
        "apiVersion": "waypost.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"taskRef": {"name": task_name}, "payload": payload},
    }


def status_of(ns: str, kind: str, name: str) -> dict[str, Any]:
    out = kubectl("get", kind, name, "-n", ns, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def reason_of(ns: str, name: str) -> str | None:
    for c in status_of(ns, "taskrun", name).get("conditions") or []:
        if c["type"] == "Succeeded":
            return str(c["reason"])
    return None


def wait_reason(ns: str, name: str, reasons: set[str], timeout: float) -> dict[str, Any]:
    wait_until(
        lambda: reason_of(ns, name) in reasons, timeout, f"TaskRun {name} to reach {reasons}"
    )
    return status_of(ns, "taskrun", name)


def leader(ns: str) -> str:
    out = kubectl("get", "lease", "waypost-leader", "-n", ns, "-o", "json").stdout
    holder: str = json.loads(out)["spec"].get("holderIdentity") or ""
    return holder


def operator_pods(api: client.ApiClient, ns: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=operator"
    )
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def test_both_replicas_ready_and_one_holds_the_lease(
    release: dict[str, str], api: client.ApiClient
) -> None:
    ns = release["namespace"]
    pods = operator_pods(api, ns)
    assert len(pods) == 2
    assert all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in pods
    )
    holder = wait_until(lambda: leader(ns), 60, "a lease holder")
    assert holder in {p.metadata.name for p in pods}
    # Every replica serves the coordinator API.
    assert api_get(release, "/readyz")["status"] == "ready"


def test_operator_waited_for_the_bundled_postgres_without_restarting(
    release: dict[str, str], api: client.ApiClient
) -> None:
    """The chart starts the operator and its Postgres together: the operator waits
    (alive, not ready) instead of crash-looping (issue 16: 2 restarts per replica)."""
    pods = operator_pods(api, release["namespace"])
    restarts = {p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or [])
                for p in pods}
    assert restarts and all(n == 0 for n in restarts.values()), restarts


def test_taskruns_with_large_payloads_finish_and_can_be_deleted(
    release: dict[str, str]
) -> None:
    """kopf's bookkeeping never carries the payload (issue 16: between about 256 KiB
    and the 512 KiB limit the annotations went over the apiserver's 256 KiB, every
    patch was refused and the TaskRun could never be deleted). Created with
    `kubectl create`: `kubectl apply` keeps a copy of the object in an annotation."""
    ns = release["namespace"]
    apply(task(ns, "big-hello", "examples.hello:hello", resources={"memory": "128Mi"}))
    big = taskrun(ns, "big-300k", "big-hello", {"name": "big", "blob": "x" * (300 * 1024)})
    kubectl("create", "-f", "-", stdin=json.dumps(big))
    kubectl("wait", "--for=condition=Succeeded", "taskrun/big-300k", "-n", ns,
            "--timeout=180s", timeout=190)
    assert status_of(ns, "taskrun", "big-300k")["result"]["greeting"] == "Hello, big!"
    # Over the 512 KiB payload limit: refused, and said so in the status.
    too_big = taskrun(ns, "big-600k", "big-hello", {"name": "no", "blob": "x" * (600 * 1024)})
    kubectl("create", "-f", "-", stdin=json.dumps(too_big))
    kubectl("wait", "--for=condition=Succeeded=False", "taskrun/big-600k", "-n", ns,
            "--timeout=120s", timeout=130)
    [cond] = [c for c in status_of(ns, "taskrun", "big-600k")["conditions"]
              if c["type"] == "Succeeded"]
    assert "over the limit" in cond["message"], cond
    for name in ("big-300k", "big-600k"):
        kubectl("delete", "taskrun", name, "-n", ns, "--timeout=60s", timeout=70)
        gone = kubectl("get", "taskrun", name, "-n", ns, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_taskrun_succeeds_and_kubectl_wait_returns(release: dict[str, str]) -> None:
    """The README's example manifest, applied as the README says."""
    ns = release["namespace"]
    started = time.monotonic()
    kubectl("apply", "-n", ns, "-f", str(REPO / "examples/manifests/hello.yaml"))
    kubectl("wait", "--for=condition=Succeeded", "taskrun/hello-1", "-n", ns,
            "--timeout=120s", timeout=130)
    elapsed = time.monotonic() - started
    ready = [c for c in status_of(ns, "task", "hello").get("conditions") or []
             if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    status = status_of(ns, "taskrun", "hello-1")
    assert status["result"]["greeting"] == "Hello, cluster!"
    assert status["attempt"] == 1 and status["runId"]
    table = kubectl("get", "taskruns", "-n", ns).stdout
    header = table.splitlines()[0].split()
    assert header[:5] == ["NAME", "TASK", "STATUS", "ATTEMPT", "LAST"], table
    assert "Succeeded" in table
    print(f"hello TaskRun: Succeeded {elapsed:.1f} s after apply")


def test_order_scenario_resumes_after_order_fetched(release: dict[str, str]) -> None:
    ns = release["namespace"]
    apply(
        task(
            ns,
            "process-order",
            "examples.orders:process_order",
            retry={"maxAttempts": 3, "backoff": {"initialSeconds": 1}},
        )
    )
    apply(
        taskrun(ns, "order-1", "process-order", {"orderId": "o-42", "failPaymentOnAttempts": [1]})
    )
    status = wait_reason(ns, "order-1", {"Succeeded", "Failed", "DeadLettered"}, 180)
    assert reason_of(ns, "order-1") == "Succeeded", status
    assert status["attempt"] == 2
    run = api_get(release, f"/v1/runs/{status['runId']}")
    attempts = [(a["attempt"], a["status"]) for a in run["attempts"]]
    assert attempts == [(1, "failed"), (2, "succeeded")]
    assert "PaymentDeclined" in (run["attempts"][0]["error"].get("name") or "")
    by_key = {c["key"]: c["attempt"] for c in run["checkpoints"]}
    # Written once, by attempt 1: the second Pod resumed after it instead of
    # fetching again (a second fetch would have rewritten it as attempt 2).
    assert by_key == {"order-fetched": 1, "payment-complete": 2}
    assert status["lastCheckpoint"] == "payment-complete"


def test_taskrun_replay_resumes_after_the_named_checkpoint_in_a_new_pod(
    release: dict[str, str],
) -> None:
    """kubectl apply of a TaskRun with spec.replay: a new run (in a new Pod) that starts
    right after order-fetched with an edited checkpoint; `waypost logs` shows the
    task's lines as the Pods sent them to the coordinator."""
    ns = release["namespace"]
    apply(task(ns, "process-order", "examples.orders:process_order",
               retry={"maxAttempts": 3, "backoff": {"initialSeconds": 1}}))
    apply(taskrun(ns, "order-r0", "process-order",
                  {"orderId": "o-50", "failPaymentOnAttempts": [1]}))
    first = wait_reason(ns, "order-r0", {"Succeeded", "Failed", "DeadLettered"}, 180)
    assert reason_of(ns, "order-r0") == "Succeeded", first
    replay = taskrun(ns, "order-r1", "process-order", None)
    replay["spec"]["replay"] = {
        "fromRun": first["runId"], "fromCheckpoint": "order-fetched",
        "payload": {"orderId": "o-50"},
        "checkpoints": {"order-fetched": {"id": "o-51", "amountCents": 7, "items": []}},
    }
    apply(replay)
    second = wait_reason(ns, "order-r1", {"Succeeded", "Failed", "DeadLettered"}, 180)
    assert reason_of(ns, "order-r1") == "Succeeded", second
    assert second["attempt"] == 1 and second["result"]["orderId"] == "o-51"
    assert second["podName"] and second["podName"] != first["podName"]
    run = api_get(release, f"/v1/runs/{second['runId']}")
    assert run["replayOf"] == first["runId"] and run["source"] == "replay"
    # order-fetched was copied (attempt 0), not fetched again by the new Pod.
    assert [(c["key"], c["attempt"]) for c in run["checkpoints"]] == [
        ("order-fetched", 0), ("payment-complete", 1)]
    assert run["replay"]["requestedBy"].startswith(f"TaskRun {ns}/order-r1")
    original = api_get(release, f"/v1/runs/{first['runId']}")
    assert [r["runId"] for r in original["replays"]] == [second["runId"]]

    env = {**os.environ, "WAYPOST_URL": release["url"]}
    logs = subprocess.run([sys.executable, "-m", "waypost.cli", "logs", first["runId"]],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert logs.returncode == 0, logs.stderr
    assert "#1 [order-fetched] INFO    fetching order" in logs.stdout, logs.stdout
    assert "#1 [payment-complete] WARNING payment declined" in logs.stdout
    assert "#2 INFO    payment complete" in logs.stdout
    replayed = subprocess.run([sys.executable, "-m", "waypost.cli", "logs", second["runId"]],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
    assert "fetching order" not in replayed.stdout and "payment complete" in replayed.stdout


def test_oom_killed_attempts_dead_letter_then_requeue(release: dict[str, str]) -> None:
    ns = release["namespace"]
    apply(
        task(
            ns,
            "memory-hog",
            "examples.flaky:memory_hog",
            resources={"memory": "64Mi"},
            retry={"maxAttempts": 2, "backoff": {"initialSeconds": 1, "jitter": 0}},
        )
    )
    apply(taskrun(ns, "hog-1", "memory-hog", {"mb": 200}))
    status = wait_reason(ns, "hog-1", {"Succeeded", "Failed", "DeadLettered"}, 240)
    assert reason_of(ns, "hog-1") == "DeadLettered", status
    assert status["error"]["type"] == "oom" and status["error"]["oomKilled"] is True
    assert "OOMKilled" in status["error"]["message"]
    run = api_get(release, f"/v1/runs/{status['runId']}")
    assert [a["error"]["type"] for a in run["attempts"]] == ["oom", "oom"]
    gap = time_of(run["attempts"][1]["startedAt"]) - time_of(run["attempts"][0]["finishedAt"])
    assert gap >= 1.0  # the backoff was waited out
    requeued = api_post(release, f"/v1/runs/{status['runId']}/requeue")
    assert requeued["status"] == "queued"
    wait_until(
        lambda: api_get(release, f"/v1/runs/{status['runId']}")["attempt"] >= 4,
        240,
        "the requeued run to use its fresh budget",
    )


def test_oom_multiplier_gives_a_bigger_pod_that_resumes(release: dict[str, str]) -> None:
    ns = release["namespace"]
    apply(
        task(
            ns,
            "memory-grow",
            "examples.flaky:memory_hog",
            resources={"memory": "64Mi"},
            retry={
                "maxAttempts": 4,
                "backoff": {"initialSeconds": 1},
                "oom": {"memoryMultiplier": 2, "memoryCeiling": "512Mi"},
            },
        )
    )
    apply(taskrun(ns, "grow-1", "memory-grow", {"mb": 120}))
    status = wait_reason(ns, "grow-1", {"Succeeded", "Failed", "DeadLettered"}, 300)
    assert reason_of(ns, "grow-1") == "Succeeded", status
    run = api_get(release, f"/v1/runs/{status['runId']}")
    memories = [a["memoryBytes"] for a in run["attempts"]]
    assert memories[0] == 64 * 2**20 and memories == sorted(memories) and memories[-1] > memories[0]
    assert [a["error"]["type"] for a in run["attempts"][:-1]] == ["oom"] * (len(memories) - 1)
    # The checkpoint of attempt 1 was kept: later attempts resumed after it.
    assert {c["key"]: c["attempt"] for c in run["checkpoints"]} == {"input-checked": 1}


def test_deleting_a_runner_pod_fails_the_attempt_and_the_run_retries(
    release: dict[str, str], api: client.ApiClient
) -> None:
    ns = release["namespace"]
    apply(
        task(
            ns,
            "sleepy",
            "examples.flaky:sleepy",
            timeout={"maxDuration": "60s"},
            retry={"maxAttempts": 3, "backoff": {"initialSeconds": 1}},
            # A cold Pod, made for the attempt and owned by the TaskRun (a warm
            # one, which pre-warming may start for the queued run, is neither:
            # test_warm.py deletes one of those mid-attempt).
            warmPool={"enabled": False},
        )
    )
    apply(taskrun(ns, "sleepy-1", "sleepy", {"seconds": 8}))
    core = client.CoreV1Api(api)

    def running_pod() -> str | None:
        status = status_of(ns, "taskrun", "sleepy-1")
        if status.get("attempt") != 1 or reason_of(ns, "sleepy-1") != "Running":
            return None
        # This run's Pod only: other tests' Pods may still be terminating.
        selector = f"waypost.dev/run-id={status['runId']}"
        for p in core.list_namespaced_pod(ns, label_selector=selector).items:
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None:
                return str(p.metadata.name)
        return None

    pod = wait_until(running_pod, 120, "the sleepy runner Pod to run")
    owners = core.read_namespaced_pod(pod, ns).metadata.owner_references or []
    assert [(o.kind, o.name) for o in owners] == [("TaskRun", "sleepy-1")]
    core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    status = wait_reason(ns, "sleepy-1", {"Succeeded", "Failed", "DeadLettered"}, 180)
    assert reason_of(ns, "sleepy-1") == "Succeeded", status
    run = api_get(release, f"/v1/runs/{status['runId']}")
    first = run["attempts"][0]
    assert first["status"] == "failed" and first["error"]["type"] == "lost", first
    assert run["attempts"][-1]["status"] == "succeeded"


def test_leader_killed_mid_run_the_other_takes_over_and_nothing_is_lost(
    release: dict[str, str], api: client.ApiClient
) -> None:
    ns = release["namespace"]
    apply(
        task(
            ns,
            "nap",
            "examples.flaky:sleepy",
            timeout={"maxDuration": "120s"},
            retry={"maxAttempts": 3, "backoff": {"initialSeconds": 1}},
        )
    )
    names = [f"nap-{i}" for i in range(4)]
    for name in names:
        apply(taskrun(ns, name, "nap", {"seconds": 4}))
    wait_until(lambda: any(reason_of(ns, n) == "Running" for n in names), 120, "a running nap")
    old = leader(ns)
    kubectl("delete", "pod", old, "-n", ns, "--grace-period=0", "--force", timeout=60)
    killed_at = time.monotonic()
    new = wait_until(lambda: (h := leader(ns)) and h != old and h, 60, "a new lease holder")
    took = time.monotonic() - killed_at
    assert took <= 30, f"the lease moved after {took:.1f} s"
    for name in names:
        status = wait_reason(ns, name, {"Succeeded", "Failed", "DeadLettered"}, 240)
        assert reason_of(ns, name) == "Succeeded", (name, status)
        run = api_get(release, f"/v1/runs/{status['runId']}")
        assert [a["status"] for a in run["attempts"]].count("succeeded") == 1
    print(f"lease moved from {old} to {new} {took:.1f} s after the kill")


def test_every_minute_schedule_makes_taskruns_and_prunes_history(
        release: dict[str, str]) -> None:
    ns = release["namespace"]
    apply(task(ns, "tick", "examples.hello:hello",
               schedules=[{"name": "every-minute", "cron": "*/1 * * * *",
                           "payload": {"name": "cron"}}],
               successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1))
    seen: set[str] = set()

    def scheduled() -> list[dict[str, Any]]:
        out = kubectl("get", "taskruns", "-n", ns, "-l",
                      "waypost.dev/task=tick,waypost.dev/schedule=every-minute",
                      "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        seen.update(i["metadata"]["name"] for i in items)
        return items

    def two_ticks_and_pruned() -> bool:
        items = scheduled()
        succeeded = [i for i in items if any(
            c["type"] == "Succeeded" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions") or [])]
        return len(seen) >= 2 and len(succeeded) == 1 and len(items) <= 2

    # Up to a minute to the first tick, one more to the second, then a prune pass;
    # a busy 2-core machine adds tens of seconds.
    wait_until(two_ticks_and_pruned, 330, "two minutes of TaskRuns, pruned to the limit",
               interval=2)
    status = status_of(ns, "task", "tick")
    assert status.get("nextScheduleTime") and status.get("lastScheduleTime"), status
    print(f"schedule made {len(seen)} TaskRuns: {sorted(seen)}")


def test_invalid_manifests_are_refused_and_a_missing_task_is_reported(
    release: dict[str, str],
) -> None:
    ns = release["namespace"]
    bad_memory = apply(task(ns, "bad-mem", "m:f", resources={"memory": "12XB"}), check=False)
    assert bad_memory.returncode != 0 and "spec.resources.memory" in bad_memory.stderr
    bad_queue = apply(task(ns, "bad-queue", "m:f", queue={"maxConcurrency": 0}), check=False)
    assert bad_queue.returncode != 0 and "spec.queue.maxConcurrency" in bad_queue.stderr
    no_ref = taskrun(ns, "no-ref", "x", {})
    del no_ref["spec"]["taskRef"]
    missing = apply(no_ref, check=False)
    assert missing.returncode != 0 and "taskRef" in missing.stderr
    not_cron = apply(task(ns, "bad-cron", "m:f", schedules=[{"name": "x", "cron": "hello"}]),
                     check=False)
    assert not_cron.returncode != 0 and "spec.schedules[0].cron" in not_cron.stderr
    # Cron-shaped but out of range: only croniter can tell; the Task says so.
    apply(task(ns, "late-cron", "examples.hello:hello",
               schedules=[{"name": "x", "cron": "61 * * * *"}]))
    wait_until(lambda: any(c["type"] == "Ready" and c["reason"] == "InvalidSchedule"
                           for c in status_of(ns, "task", "late-cron").get("conditions") or []),
               60, "Task late-cron to report InvalidSchedule")
    apply(taskrun(ns, "orphan", "no-such-task", {}))
    status = wait_reason(ns, "orphan", {"TaskNotFound"}, 60)
    [cond] = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert "no-such-task" in cond["message"]
    events = kubectl(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=orphan", "-o", "json"
    ).stdout
    assert "TaskNotFound" in events


def test_a_taskrun_applied_before_its_task_starts_when_the_task_syncs(
    release: dict[str, str],
) -> None:
    """Issue 16: a TaskRun handled before its Task waited about 15 s in kopf's retry.
    Its handler now waits for the Task's sync, so the run starts at once."""
    ns = release["namespace"]
    apply(taskrun(ns, "early-1", "late-hello", {"name": "late"}))
    wait_reason(ns, "early-1", {"TaskNotFound"}, 60)  # said while it waits
    applied = time.monotonic()
    apply(task(ns, "late-hello", "examples.hello:hello", resources={"memory": "128Mi"}))
    wait_until(lambda: bool(status_of(ns, "taskrun", "early-1").get("runId")), 30,
               "the TaskRun's run to be queued")
    queued_after = time.monotonic() - applied
    # From the Task's sync (its Ready condition) to the run's creation, by the clocks
    # of the apiserver (whole seconds) and of Postgres.
    [ready] = [c for c in status_of(ns, "task", "late-hello")["conditions"]
               if c["type"] == "Ready"]
    run = api_get(release, f"/v1/runs/{status_of(ns, 'taskrun', 'early-1')['runId']}")
    gap = time_of(run["createdAt"].replace("Z", "+00:00")) - time_of(
        ready["lastTransitionTime"].replace("Z", "+00:00"))
    print(f"queued {queued_after:.2f} s after kubectl apply of the Task; "
          f"created {gap:.2f} s after the Task's Ready time (whole seconds)")
    assert gap < 2.0, gap  # within 1 s of the sync, whose time is rounded down
    assert queued_after < 8.0, queued_after  # kopf's retry alone was 15 s
    kubectl("wait", "--for=condition=Succeeded", "taskrun/early-1", "-n", ns,
            "--timeout=180s", timeout=190)


def test_a_taskrun_the_operator_cannot_accept_ends_succeeded_false(
    release: dict[str, str],
) -> None:
    """Issue 16: an invalid TaskRun must end Succeeded=False with a reason and a
    message, so that `kubectl wait` returns. A payload nested deeper than the
    documented 64 levels passes the CRD schema; the operator refuses it."""
    ns = release["namespace"]
    apply(task(ns, "deep-hello", "examples.hello:hello", resources={"memory": "128Mi"}))
    deep: Any = "bottom"
    for _ in range(70):
        deep = [deep]
    apply(taskrun(ns, "too-deep", "deep-hello", {"name": "deep", "nested": deep}))
    kubectl("wait", "--for=condition=Succeeded=False", "taskrun/too-deep", "-n", ns,
            "--timeout=60s", timeout=70)
    [cond] = [c for c in status_of(ns, "taskrun", "too-deep")["conditions"]
              if c["type"] == "Succeeded"]
    assert cond["reason"] == "Invalid" and "spec.payload" in cond["message"], cond
    assert "64" in cond["message"], cond
    assert not status_of(ns, "taskrun", "too-deep").get("runId")  # nothing was queued


def test_operator_logs_carry_no_settings_dump_and_no_empty_message(
    release: dict[str, str], api: client.ApiClient
) -> None:
    """Issue 16: every kopf line carried a 1.8 KB dump of the operator's settings, and
    some warnings had empty messages ("store unavailable: ")."""
    ns = release["namespace"]
    lines: list[dict[str, Any]] = []
    for pod in operator_pods(api, ns):
        text = kubectl("logs", pod.metadata.name, "-n", ns, timeout=60).stdout
        lines += [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line["logger"].startswith("kopf") for line in lines)  # kopf did log
    assert not [line for line in lines if "settings" in line], "a settings dump"
    empty = [line for line in lines if not line["msg"].strip()
             or line["msg"].rstrip().endswith(":")]
    assert not empty, empty[:3]
    longest = max(len(json.dumps(line)) for line in lines if "exception" not in line)
    assert longest < 1500, longest


def api_post_json(release: dict[str, str], path: str, body: Any) -> Any:
    req = urllib.request.Request(
        release["url"] + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def running_by_queue(release: dict[str, str]) -> dict[tuple[str, str], float]:
    """waypost_queue_running_runs from /metrics, by (queue_namespace, queue)."""
    with urllib.request.urlopen(release["url"] + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("waypost_queue_running_runs{"):
            labels_text, value = line[len("waypost_queue_running_runs{"):].rsplit("} ", 1)
            labels = dict(
                part.split("=", 1) for part in labels_text.split(",") if "=" in part
            )
            key = (labels["queue_namespace"].strip('"'), labels["queue"].strip('"'))
            found[key] = float(value)
    return found


@pytest.fixture
def two_namespaces(api: client.ApiClient) -> Iterator[list[str]]:
    """Two namespaces of their own (the release's operator watches every namespace)."""
    suffix = uuid.uuid4().hex[:6]
    names = [f"wp-qa-{suffix}", f"wp-qb-{suffix}"]
    core = client.CoreV1Api(api)
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    yield names
    for name in names:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def task_ready(ns: str, name: str) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in status_of(ns, "task", name).get("conditions") or [])


def test_same_task_name_in_two_namespaces_keeps_separate_limits(
    release: dict[str, str], two_namespaces: list[str]
) -> None:
    """Task `napper` in namespace qa (maxConcurrency 1) and Task `napper` in
    namespace qb (maxConcurrency 3): each queue keeps its own limit, sampled from
    the operator's /metrics (running attempts per queue_namespace and queue)."""
    limits = dict(zip(two_namespaces, (1, 3), strict=True))
    for ns, limit in limits.items():
        apply(task(ns, "napper", "examples.flaky:sleepy", timeout={"maxDuration": "120s"},
                   queue={"maxConcurrency": limit}))
    for ns in limits:
        wait_until(lambda ns=ns: task_ready(ns, "napper"), 60, f"Task napper in {ns} Ready")
    run_ids = [
        api_post_json(release, f"/v1/tasks/{ns}/napper/trigger",
                      {"payload": {"seconds": 4}})["id"]
        for ns in limits for _ in range(6)
    ]
    peaks = dict.fromkeys(limits, 0.0)
    samples = 0
    deadline = time.monotonic() + 420
    while True:
        running = running_by_queue(release)
        samples += 1
        for ns in limits:
            peaks[ns] = max(peaks[ns], running.get((ns, "napper"), 0.0))
        finished = [api_get(release, f"/v1/runs/{r}")["status"] for r in run_ids]
        if all(s in {"succeeded", "failed", "dead_lettered", "cancelled"} for s in finished):
            break
        assert time.monotonic() < deadline, f"runs not finished: {finished}"
        time.sleep(0.5)
    assert finished == ["succeeded"] * len(run_ids), finished
    qa, qb = two_namespaces
    assert peaks[qa] == 1, f"{qa} (limit 1) peaked at {peaks[qa]} running"
    assert peaks[qb] == 3, f"{qb} (limit 3) peaked at {peaks[qb]} running"
    print(f"peak running per namespace over {samples} samples: {peaks}")


def test_dlq_requeue_runs_the_current_spec_by_default_and_the_original_on_request(
    release: dict[str, str],
) -> None:
    """A run that was OOM-killed at 64Mi is dead-lettered; the Task is then given
    256Mi. `waypost dlq requeue --spec original` runs the trigger-time spec (64Mi:
    killed again); `waypost dlq requeue` (current, the default) runs the fix and
    succeeds. Each attempt's Pod had the memory limit of the spec it ran."""
    ns = release["namespace"]
    apply(task(ns, "hog-fix", "examples.flaky:memory_hog", resources={"memory": "64Mi"},
               retry={"maxAttempts": 1}))
    wait_until(lambda: task_ready(ns, "hog-fix"), 60, "Task hog-fix Ready")
    apply(taskrun(ns, "hog-fix-1", "hog-fix", {"mb": 120}))
    status = wait_reason(ns, "hog-fix-1", {"Succeeded", "Failed", "DeadLettered"}, 240)
    assert reason_of(ns, "hog-fix-1") == "DeadLettered", status
    run_id = status["runId"]

    # The fix: more memory for the Task.
    apply(task(ns, "hog-fix", "examples.flaky:memory_hog", resources={"memory": "256Mi"},
               retry={"maxAttempts": 1}))
    wait_until(lambda: status_of(ns, "task", "hog-fix").get("observedGeneration") == 2, 60,
               "the operator to store the new Task spec")

    cli = [str(REPO / ".venv/bin/waypost"), "dlq", "requeue", run_id]
    env = {**os.environ, "WAYPOST_URL": release["url"]}

    def requeue(*args: str) -> str:
        result = subprocess.run([*cli, *args], capture_output=True, text=True, env=env,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def settled(attempts: int) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run: dict[str, Any] = api_get(release, f"/v1/runs/{run_id}")
            final = run["status"] in {"succeeded", "dead_lettered", "failed"}
            return run if final and run["attempt"] == attempts else None
        return wait_until(done, 240, f"run {run_id} to settle after attempt {attempts}")

    out = requeue("--spec", "original")
    assert "original spec" in out, out
    run = settled(2)
    assert run["status"] == "dead_lettered" and run["error"]["type"] == "oom", run
    assert (run["specChoice"], run["specGeneration"]) == ("original", 1)

    out = requeue()
    assert "current spec" in out, out
    run = settled(3)
    assert run["status"] == "succeeded", run
    assert (run["specChoice"], run["specGeneration"]) == ("current", 2)
    assert [a["memoryBytes"] for a in run["attempts"]] == [64 * 2**20, 64 * 2**20, 256 * 2**20]
    shown = subprocess.run([str(REPO / ".venv/bin/waypost"), "runs", "show", run_id],
                           capture_output=True, text=True, env=env, timeout=60, check=True)
    assert re.search(r"^Spec:\s+current \(Task generation 2\)$", shown.stdout, re.M), shown.stdout


CANCEL_GRACE = 5


def _running_pod_of(release: dict[str, str], api: client.ApiClient,
                    taskrun_name: str) -> tuple[str, str] | None:
    """(run id, Pod name) once the Pod serving the TaskRun's run runs.

    The Pod is found through the run's attempt, as the operator knows it: a cold
    Pod carries the run's id as a label, but a warm one that takes the run (the
    Task's warm pool is on by default, and pre-warming may start a runner for a
    queued run before the dispatcher claims it: CI saw it) carries only its
    runner's id, the attempt's worker ``warm:<runner id>``.
    """
    ns = release["namespace"]
    status = status_of(ns, "taskrun", taskrun_name)
    if reason_of(ns, taskrun_name) != "Running" or not status.get("runId"):
        return None
    attempts = api_get(release, f"/v1/runs/{status['runId']}")["attempts"]
    if not attempts:
        return None
    worker = attempts[-1].get("worker") or ""
    selector = (f"{k8s.LABEL_WARM_RUNNER}={worker.removeprefix('warm:')}"
                if worker.startswith("warm:") else f"{k8s.LABEL_RUN_ID}={status['runId']}")
    for p in client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items:
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None:
            return str(status["runId"]), str(p.metadata.name)
    return None


def _pod_gone(api: client.ApiClient, ns: str, pod: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_pod(pod, ns)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_waypost_cancel_stops_the_task_and_its_pod_within_the_grace(
    release: dict[str, str], api: client.ApiClient
) -> None:
    ns = release["namespace"]
    apply(task(ns, "cancellable-loop", "examples.cancellable:cancellable_loop",
               cancellation={"gracePeriodSeconds": CANCEL_GRACE}))
    apply(taskrun(ns, "cancel-cli-1", "cancellable-loop", {}))
    run_id, pod = wait_until(lambda: _running_pod_of(release, api, "cancel-cli-1"), 120,
                             "the cancellable-loop Pod to run")
    started = time.monotonic()
    cli = REPO / ".venv" / "bin" / "waypost"
    done = subprocess.run([str(cli), "cancel", run_id], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "WAYPOST_URL": release["url"]},
                          check=False)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _pod_gone(api, ns, pod), CANCEL_GRACE + 10, "the Pod to go")
    gone_after = time.monotonic() - started
    assert gone_after <= CANCEL_GRACE + 10
    wait_reason(ns, "cancel-cli-1", {"Cancelled"}, 60)
    run = api_get(release, f"/v1/runs/{run_id}")
    assert run["status"] == "cancelled"
    assert [a["status"] for a in run["attempts"]] == ["cancelled"]
    assert run["error"]["message"].startswith("cancelled by user: ")
    print(f"waypost cancel: Pod gone {gone_after:.1f} s after the cancel "
          f"(grace {CANCEL_GRACE} s): {run['error']['message']}")


def test_deleting_a_running_taskrun_cancels_its_run(
    release: dict[str, str], api: client.ApiClient
) -> None:
    ns = release["namespace"]
    apply(task(ns, "stuck-async", "examples.cancellable:stuck_async",
               cancellation={"gracePeriodSeconds": CANCEL_GRACE}))
    apply(taskrun(ns, "cancel-delete-1", "stuck-async", {}))
    run_id, pod = wait_until(lambda: _running_pod_of(release, api, "cancel-delete-1"), 120,
                             "the stuck-async Pod to run")
    started = time.monotonic()
    kubectl("delete", "taskrun", "cancel-delete-1", "-n", ns, "--wait=false")

    def pod_gone_or_explained() -> bool:
        if _pod_gone(api, ns, pod):
            return True
        if time.monotonic() - started > CANCEL_GRACE + 9:
            # Say where it stuck: the run as the API sees it, the Pod's deletion state.
            run = api_get(release, f"/v1/runs/{run_id}")
            meta = client.CoreV1Api(api).read_namespaced_pod(pod, ns).metadata
            print(f"run {run['status']} error={run.get('error')}; pod deletion "
                  f"{meta.deletion_timestamp} grace {meta.deletion_grace_period_seconds}")
        return False

    wait_until(pod_gone_or_explained, CANCEL_GRACE + 10, "the Pod to go")
    gone_after = time.monotonic() - started
    assert gone_after <= CANCEL_GRACE + 10
    run = wait_until(
        lambda: (r := api_get(release, f"/v1/runs/{run_id}"))["status"] == "cancelled" and r,
        CANCEL_GRACE + 10, "the run to end cancelled")
    assert [a["status"] for a in run["attempts"]] == ["cancelled"]
    assert run["error"]["message"].startswith("TaskRun cancel-delete-1 was deleted: ")
    print(f"TaskRun deleted: Pod gone {gone_after:.1f} s after the delete "
          f"(grace {CANCEL_GRACE} s): {run['error']['message']}")


def test_a_taskrun_replaying_an_unknown_run_is_invalid_and_runs_nothing(
    release: dict[str, str]
) -> None:
    ns = release["namespace"]
    apply(task(ns, "replayed", "examples.hello:hello"))
    missing = str(uuid.uuid4())
    body = taskrun(ns, "replay-1", "replayed", {"name": "again"})
    body["spec"]["replay"] = {"fromRun": missing}
    apply(body)
    status = wait_reason(ns, "replay-1", {"Invalid"}, 60)
    [condition] = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert condition["status"] == "False"
    assert f"no run {missing}" in condition["message"]
    assert not status.get("runId")  # no run was queued
    kubectl("wait", "--for=condition=Succeeded=False", "taskrun/replay-1", "-n", ns,
            "--timeout=30s", timeout=40)


def _run_gone(release: dict[str, str], run_id: str) -> bool:
    try:
        api_get(release, f"/v1/runs/{run_id}")
    except urllib.error.HTTPError as exc:
        return exc.code == 404
    return False


def test_a_taskrun_keeps_its_final_status_after_its_history_expired(
    release: dict[str, str], api: client.ApiClient
) -> None:
    """spec.history.retainFor: the run of a finished TaskRun is removed from the store
    by the leader's retention pass (every 60 s); the TaskRun keeps its final status,
    kubectl get shows it, and a new leader resuming every TaskRun runs nothing again."""
    ns = release["namespace"]
    apply(task(ns, "brief", "examples.hello:hello", history={"retainFor": "1s"}))
    apply(taskrun(ns, "brief-1", "brief", {"name": "history"}))
    kubectl("wait", "--for=condition=Succeeded", "taskrun/brief-1", "-n", ns,
            "--timeout=180s", timeout=190)
    final = status_of(ns, "taskrun", "brief-1")
    run_id = final["runId"]
    wait_until(lambda: _run_gone(release, run_id), 150, f"run {run_id} to expire")
    assert api_get(release, f"/v1/runs?namespace={ns}&task=brief")["runs"] == []
    # A new leader resumes every TaskRun (kopf's on.resume): this one must stay as it is.
    old = leader(ns)
    kubectl("delete", "pod", old, "-n", ns, "--grace-period=0", "--force", timeout=60)
    wait_until(lambda: (h := leader(ns)) and h != old and h, 90, "a new lease holder")
    wait_until(lambda: len(operator_pods(api, ns)) == 2 and all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in operator_pods(api, ns)), 180, "both operator replicas ready again")
    time.sleep(20)  # the resumed handlers and a few mirror passes
    assert api_get(release, f"/v1/runs?namespace={ns}&task=brief")["runs"] == [], (
        "a resumed TaskRun whose run expired was run again")
    after = status_of(ns, "taskrun", "brief-1")
    assert after["runId"] == run_id
    assert after["result"] == final["result"]
    succeeded = [c for c in after["conditions"] if c["type"] == "Succeeded"]
    assert [(c["status"], c["reason"]) for c in succeeded] == [("True", "Succeeded")]
    table = kubectl("get", "taskruns", "brief-1", "-n", ns).stdout
    assert "Succeeded" in table.splitlines()[1], table


def test_uninstall_leaves_no_operator_created_pods_and_no_finalizer(
    helm: str, release: dict[str, str], api: client.ApiClient
) -> None:
    """Issue 16: after uninstall, Tasks and TaskRuns kept waypost.dev/finalizer and
    their namespaces hung in Terminating. The chart's post-delete hook takes it off."""
    ns = release["namespace"]
    core = client.CoreV1Api(api)
    other = f"wp-gone-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": other}})
    apply(task(other, "hello", "examples.hello:hello", resources={"memory": "128Mi"}))
    apply(taskrun(other, "hello-1", "hello", {"name": "uninstall"}))
    kubectl("wait", "--for=condition=Succeeded", "taskrun/hello-1", "-n", other,
            "--timeout=180s", timeout=190)

    def finalizers(namespace: str) -> dict[str, list[str]]:
        out = kubectl("get", "tasks.waypost.dev,taskruns.waypost.dev", "-n", namespace,
                      "-o", "json").stdout
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"].get("finalizers") or []
                for o in json.loads(out)["items"]}

    held = finalizers(other)
    assert held == {"Task/hello": ["waypost.dev/finalizer"],
                    "TaskRun/hello-1": ["waypost.dev/finalizer"]}, held
    sh(helm, "uninstall", RELEASE, "--namespace", ns, "--wait", timeout=300)
    wait_until(
        lambda: (
            not core.list_namespaced_pod(
                ns, label_selector="app.kubernetes.io/managed-by=waypost"
            ).items
        ),
        120,
        "operator-created Pods to go",
    )
    wait_until(lambda: not operator_pods(api, ns), 120, "operator Pods to go")
    for namespace in (other, ns):
        left = {k: v for k, v in finalizers(namespace).items() if "waypost.dev/finalizer" in v}
        assert not left, left
    # The objects stay (the CRDs are kept); their namespace can go, at once.
    started = time.monotonic()
    kubectl("delete", "namespace", other, "--timeout=90s", timeout=100)
    print(f"namespace {other} deleted in {time.monotonic() - started:.1f} s")


def time_of(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
