"""Warm Pods on a real cluster: the Pod that serves consecutive runs, TTL expiry,
caps under a burst, the pool turned off, OOM kills, a changed image, a deleted
warm Pod, run isolation, and a Pod pre-warmed ahead of a burst.

One release (one operator replica, so every warm poll reaches the leader that
hands out the attempts; ``operator.maxWarmPods=3`` so the global cap is
reachable) serves the module, in a namespace of its own. Runs are triggered
through the coordinator's HTTP API; the task (``examples.warm:probe``) reports
its Pod's name, its pid and a module-level counter.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bench import warm_cluster
from e2e_support import wait_until
from test_operator import (
    CHART,
    EXAMPLES_IMAGE,
    REPO,
    apply,
    helm,  # noqa: F401  (fixture)
    images,  # noqa: F401  (fixture)
    kubectl,
    kubectl_bin,
    sh,
    status_of,
    task,
)

RELEASE = "wpwarm"
WARM_LABEL = "waypost.dev/warm-runner"
TASK_LABEL = "waypost.dev/task"


@pytest.fixture(scope="module")
def wns(api: client.ApiClient) -> Iterator[str]:
    name = f"wp-warm-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def warm_release(helm: str, images: str, wns: str,  # noqa: F811
                 api: client.ApiClient) -> Iterator[dict[str, str]]:
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/tasks.waypost.dev",
            "crd/taskruns.waypost.dev", "--timeout=60s", timeout=70)
    repo, tag = images.rsplit(":", 1)
    sh(helm, "install", RELEASE, str(CHART), "--namespace", wns,
       "--set", "operator.replicas=1", "--set", "operator.maxWarmPods=3",
       "--set", "crds.install=false", "--set", "postgresql.enabled=true",
       "--set", f"postgresql.image.repository={repo}",
       "--set-string", f"postgresql.image.tag={tag}",
       "--set", "postgresql.persistence.enabled=false", timeout=300)
    sh(kubectl_bin(), "rollout", "status", f"deployment/{RELEASE}-waypost", "-n", wns,
       "--timeout=300s", timeout=320)
    service = client.CoreV1Api(api).read_namespaced_service(f"{RELEASE}-waypost", wns)
    yield {"namespace": wns, "url": f"http://{service.spec.cluster_ip}:8080"}
    sh(helm, "uninstall", RELEASE, "--namespace", wns, "--wait", timeout=300, check=False)


def http(release: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(release["url"] + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def make_task(release: dict[str, str], name: str, **spec: Any) -> None:
    ns = release["namespace"]
    body = {"resources": {"memory": "256Mi"},
            "retry": {"maxAttempts": 2, "backoff": {"initialSeconds": 1, "jitter": 0}}}
    body.update(spec)
    apply(task(ns, name, "examples.warm:probe", **body))
    # The operator stores the Task before it accepts runs of it.
    wait_until(lambda: _task_ready(ns, name), 60, f"Task {name} to be Ready")


def _task_ready(ns: str, name: str) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status_of(ns, "task", name).get("conditions") or [])


def trigger(release: dict[str, str], name: str, payload: Any = None) -> str:
    run = http(release, "POST", f"/v1/tasks/{release['namespace']}/{name}/trigger",
               {"payload": payload or {}})
    return str(run["id"])


def wait_run(release: dict[str, str], run_id: str, timeout: float = 180,
             statuses: tuple[str, ...] = ("succeeded",)) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(http(release, "GET", f"/v1/runs/{run_id}"))
        return found["status"] in statuses or found["status"] in ("failed", "dead_lettered")

    wait_until(done, timeout, f"run {run_id} to end")
    assert found["status"] in statuses, found
    return found


def run(release: dict[str, str], name: str, payload: Any = None) -> dict[str, Any]:
    return wait_run(release, trigger(release, name, payload))


def run_warm(release: dict[str, str], core: client.CoreV1Api, name: str,
             tries: int = 4) -> dict[str, Any]:
    """A run of ``name`` served by a warm Pod.

    When the global cap (``maxWarmPods``) is full of other tasks' idle Pods, a
    task's first attempt gets a one-shot Pod and evicts one of them
    (:func:`waypost.engine.warm.admit`); the room is there once the evicted Pod
    has exited. Earlier tests in this module leave idle Pods, so a test that
    needs a warm Pod runs until one serves it.
    """
    for _ in range(tries):
        done = run(release, name)
        if done["result"]["host"] in warm_pods(core, release["namespace"], name):
            return done
        time.sleep(2)
    raise AssertionError(f"no warm Pod served {name} in {tries} runs")


def warm_pods(core: client.CoreV1Api, ns: str, task_name: str | None = None) -> list[str]:
    selector = WARM_LABEL + (f",{TASK_LABEL}={task_name}" if task_name else "")
    return [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if p.status.phase in ("Pending", "Running")]


def test_same_pod_serves_consecutive_runs(warm_release: dict[str, str],
                                          core: client.CoreV1Api) -> None:
    make_task(warm_release, "probe")
    first, second = run(warm_release, "probe"), run(warm_release, "probe")
    assert first["result"]["host"] == second["result"]["host"]
    assert [first["result"]["count"], second["result"]["count"]] == [1, 2]
    assert second["result"]["host"] in warm_pods(core, warm_release["namespace"], "probe")
    # Task status shows the idle warm Pod (the mirror writes Task figures every 10 s).
    wait_until(lambda: status_of(warm_release["namespace"], "task", "probe")
               .get("warmPods", 0) >= 1, 60, "Task status warmPods >= 1")


def test_nothing_of_run_a_is_visible_in_run_b(warm_release: dict[str, str]) -> None:
    make_task(warm_release, "isolated")
    a = run(warm_release, "isolated", {"leave": True})
    b = run(warm_release, "isolated")
    assert a["result"]["host"] == b["result"]["host"] and b["result"]["count"] == 2
    assert b["result"]["env"] is None
    assert b["result"]["tmpFile"] is False
    assert b["result"]["checkpoints"] == []
    assert a["result"]["waypostEnv"] == [] and b["result"]["waypostEnv"] == []


def test_pool_off_gives_one_pod_per_attempt(warm_release: dict[str, str],
                                            core: client.CoreV1Api) -> None:
    make_task(warm_release, "cold", warmPool={"enabled": False})
    results = [run(warm_release, "cold")["result"] for _ in range(2)]
    hosts = [r["host"] for r in results]
    assert hosts[0] != hosts[1]
    # The credential reaches the runner from its Secret as an environment variable;
    # the runner removes it before task code runs.
    assert all(not [k for k in r["waypostEnv"] if "TOKEN" in k] for r in results)
    assert warm_pods(core, warm_release["namespace"], "cold") == []


def test_ttl_expiry_removes_idle_pods(warm_release: dict[str, str],
                                      core: client.CoreV1Api) -> None:
    make_task(warm_release, "short", warmPool={"idleTTLSeconds": 5})
    host = run(warm_release, "short")["result"]["host"]
    ns = warm_release["namespace"]
    wait_until(lambda: host not in warm_pods(core, ns, "short"), 60, "the idle Pod to go")
    assert run(warm_release, "short")["result"]["host"] != host


def test_caps_hold_under_a_burst(warm_release: dict[str, str], core: client.CoreV1Api) -> None:
    ns = warm_release["namespace"]
    names = ["burst-a", "burst-b", "burst-c"]
    for name in names:
        make_task(warm_release, name, warmPool={"maxWarm": 2})
    with warm_cluster.WarmPodSampler(core, ns) as sampler:
        ids = [trigger(warm_release, names[i % 3], {"sleep": 1}) for i in range(12)]
        for rid in ids:
            wait_run(warm_release, rid, timeout=300)
    assert sampler.samples
    assert sampler.most_in_all <= 3  # operator.maxWarmPods
    assert sampler.most_per_task <= 2  # maxWarm


def test_oom_in_a_warm_pod_is_replaced_and_the_run_retries(
        warm_release: dict[str, str], core: client.CoreV1Api) -> None:
    make_task(warm_release, "hog", resources={"memory": "128Mi"},
              retry={"maxAttempts": 2, "backoff": {"initialSeconds": 1, "jitter": 0},
                     "oom": {"memoryMultiplier": 4, "memoryCeiling": "1Gi"}})
    warm_host = run_warm(warm_release, core, "hog")["result"]["host"]
    done = run(warm_release, "hog", {"grow_mb": 200})
    detail = http(warm_release, "GET", f"/v1/runs/{done['id']}")
    attempts = detail["attempts"]
    assert attempts[0]["error"]["type"] == "oom"
    assert attempts[0]["worker"].startswith("warm:")
    assert attempts[1]["status"] == "succeeded"
    assert done["result"]["host"] != warm_host  # a new, bigger Pod


def test_changed_image_retires_the_old_warm_pods(warm_release: dict[str, str],
                                                 core: client.CoreV1Api) -> None:
    ns = warm_release["namespace"]
    make_task(warm_release, "moving")
    host = run_warm(warm_release, core, "moving")["result"]["host"]
    # The same image under its fully qualified name: a different spec.image.
    make_task(warm_release, "moving", image=f"docker.io/library/{EXAMPLES_IMAGE}")
    wait_until(lambda: host not in warm_pods(core, ns, "moving"), 60, "the old Pod to go")
    assert run(warm_release, "moving")["result"]["host"] != host


def test_deleting_a_warm_pod_mid_attempt_loses_it_and_the_run_retries(
        warm_release: dict[str, str], core: client.CoreV1Api) -> None:
    ns = warm_release["namespace"]
    make_task(warm_release, "victim")
    host = run_warm(warm_release, core, "victim")["result"]["host"]
    rid = trigger(warm_release, "victim", {"sleep": 30})
    wait_until(lambda: http(warm_release, "GET", f"/v1/runs/{rid}")["status"] == "running",
               60, "the run to start")
    time.sleep(2)
    kubectl("delete", "pod", host, "-n", ns, "--wait=false")
    done = wait_run(warm_release, rid, timeout=240)
    attempts = http(warm_release, "GET", f"/v1/runs/{rid}")["attempts"]
    assert attempts[0]["error"]["type"] == "lost"
    assert attempts[0]["worker"].startswith("warm:")
    assert done["result"]["host"] != host


def test_prewarmed_pod_serves_the_first_run_of_a_burst(
        warm_release: dict[str, str], core: client.CoreV1Api) -> None:
    """A frequently run task keeps a warm Pod started ahead of demand after its idle
    TTL retired the last one (engine/prewarm.py, the leader's pool manager). It has
    imported the task but run nothing; the next burst's first run starts in it. When
    the task stops running, the pool goes back to zero."""
    ns = warm_release["namespace"]
    make_task(warm_release, "eager", warmPool={"idleTTLSeconds": 15})
    host = run_warm(warm_release, core, "eager")["result"]["host"]
    for _ in range(15):  # sixteen runs within seconds: far above 2 a minute, for minutes
        run(warm_release, "eager")
    # Its TTL retires the Pod that served them; one is started without a run.
    wait_until(lambda: host not in warm_pods(core, ns, "eager"), 120, "the idle Pod to go")
    selector = f"{WARM_LABEL},{TASK_LABEL}=eager,!waypost.dev/run-id"

    def running_prewarmed() -> Any:
        pods = [p for p in core.list_namespaced_pod(ns, label_selector=selector).items
                if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return pods[0] if pods else None

    # (Runners kept on a rate leave the last place of the cap, 3 here, to demand:
    # other tasks' idle Pods may have to reach their TTL first.)
    pod = wait_until(running_prewarmed, 150, "a pre-warmed Pod of 'eager' to run")
    name, runner_id = pod.metadata.name, pod.metadata.labels[WARM_LABEL]
    # The restricted profile, no service-account token, and the runner NetworkPolicy.
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    sc = pod.spec.containers[0].security_context
    assert sc.allow_privilege_escalation is False and sc.capabilities.drop == ["ALL"]
    assert not pod.spec.volumes  # no volume: its credential comes from its Secret as env
    policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
        f"{RELEASE}-waypost-runners", ns)
    selected = policy.spec.pod_selector
    assert not selected.match_expressions
    assert all(pod.metadata.labels.get(k) == v for k, v in selected.match_labels.items())
    # A burst of three: the first starts in the pre-warmed Pod, as its first run.
    triggered_at = time.time()
    ids = [trigger(warm_release, "eager") for _ in range(3)]
    first = wait_run(warm_release, ids[0])
    for rid in ids[1:]:
        wait_run(warm_release, rid)
    assert first["result"]["host"] == name and first["result"]["count"] == 1, first["result"]
    attempts = http(warm_release, "GET", f"/v1/runs/{ids[0]}")["attempts"]
    assert [a["worker"] for a in attempts] == [f"warm:{runner_id}"]
    print(f"pre-warmed Pod {name}: trigger to task start "
          f"{(first['result']['startedAt'] - triggered_at) * 1000:.0f} ms")
    # The task stops running: its rate decays, the TTL retires the last Pod, none follows.
    wait_until(lambda: not warm_pods(core, ns, "eager"), 300, "the pool of 'eager' to go to zero",
               interval=2)


@pytest.mark.timeout(3600)
@pytest.mark.long_benchmark  # 400 Pods one after another, and more: make e2e-bench
def test_zz_warm_benchmark(warm_release: dict[str, str], core: client.CoreV1Api) -> None:
    """bench/warm_cluster.py on this release: bare Pod vs cold vs warm, and a burst
    over 12 Tasks; the figures go to bench/results/warm_cluster.json.

    ``WAYPOST_WARM_BENCH_PARTS`` (comma-separated, of bare_pod, cold, warm, burst)
    measures some parts and keeps the file's figures of the others, so that the
    shared cluster is held for shorter runs."""
    import os

    runs = int(os.environ.get("WAYPOST_WARM_BENCH_RUNS", "200"))
    parts = tuple(p for p in os.environ.get("WAYPOST_WARM_BENCH_PARTS", "").split(",") if p)
    path = REPO / "bench" / "results" / "warm_cluster.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    result = warm_cluster.run_all(
        warm_release["url"], warm_release["namespace"], core, EXAMPLES_IMAGE,
        lambda name, **spec: make_task(warm_release, name, **spec),
        runs=runs, burst_runs=100, burst_tasks=12, parts=parts or warm_cluster.PARTS,
        previous=previous)
    result["release"] = {"operatorReplicas": 1, "maxWarmPods": 3}
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    if "burst" in (parts or warm_cluster.PARTS):
        assert result["burst"]["max_warm_pods_seen"] <= 3
        assert result["burst"]["max_warm_pods_per_task_seen"] <= 2
    for part in parts or warm_cluster.PARTS:
        if part != "burst":
            assert result[part]["runs"] == runs
