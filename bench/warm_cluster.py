"""Trigger to task code on a real cluster: a bare Pod, waypost cold, waypost warm.

Run by the e2e suite (``e2e/test_warm.py::test_zz_warm_benchmark``, which
installs the chart and builds the images), with the figures written to
``bench/results/warm_cluster.json``. The task is ``examples.warm:probe``: it
records ``time.time()`` on entry; the trigger's time is the client's
``time.time()`` just before its call (the e2e cluster is a single node on this
machine, so both clocks are the same clock).

- **bare Pod**: a Pod of the same image whose command imports the same task
  module and prints ``time.time()`` first thing; created with the API, one at a
  time, the time read from its log.
- **cold**: a Task with ``warmPool.enabled: false``: ``POST .../trigger``, one
  run at a time, each in a new Pod.
- **warm**: the same Task with its warm pool on, after one run to warm it.
- **burst**: ``runs`` runs over ``tasks`` Tasks at once (``maxWarm`` 2 each),
  the warm Pods sampled every 100 ms: throughput, p50/p99 trigger to start,
  and the most warm Pods seen per Task and in all.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from bench import pod_parts
from bench.stats import pct

WARM_LABEL = "waypost.dev/warm-runner"
TASK_LABEL = "waypost.dev/task"


def _http(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def _summary(samples_ms: list[float]) -> dict[str, Any]:
    return {"runs": len(samples_ms), "p50_ms": round(pct(samples_ms, 50), 1),
            "p99_ms": round(pct(samples_ms, 99), 1), "max_ms": round(max(samples_ms), 1)}


def trigger_and_wait(url: str, ns: str, task: str, payload: Any = None,
                     timeout: float = 300) -> tuple[float, dict[str, Any]]:
    started = time.time()
    run = _http(url, "POST", f"/v1/tasks/{ns}/{task}/trigger", {"payload": payload or {}})
    deadline = time.monotonic() + timeout
    while True:
        run = _http(url, "GET", f"/v1/runs/{run['id']}")
        if run["status"] in ("succeeded", "failed", "dead_lettered", "cancelled"):
            if run["status"] != "succeeded":
                raise RuntimeError(f"run {run['id']} ended {run['status']}: {run.get('error')}")
            return started, run
        if time.monotonic() > deadline:
            raise TimeoutError(run["id"])
        time.sleep(0.01)


def _with_parts(summary: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary, with where the time went (bench/pod_parts.py) when the cluster's
    logs are on this machine."""
    parts = pod_parts.split(runs)
    return {**summary, "parts": parts} if parts else summary


def waypost_latency(url: str, ns: str, task: str, runs: int,
                    parts: bool = False) -> dict[str, Any]:
    """``parts``: each run had a Pod of its own (cold), named by the task's hostname;
    its Secret has the Pod's name."""
    samples = []
    pods: list[dict[str, Any]] = []
    for _ in range(runs):
        started, run = trigger_and_wait(url, ns, task)
        task_start = float(run["result"]["startedAt"])
        samples.append((task_start - started) * 1000)
        host = run["result"].get("host")
        if host:
            pods.append({"pod": host, "secret": host, "trigger": started,
                         "task_start": task_start})
    return _with_parts(_summary(samples), pods) if parts else _summary(samples)


def bare_pod_latency(core: Any, ns: str, image: str, runs: int) -> dict[str, Any]:
    """Pods created one at a time, each printing time.time() once the task module is
    imported; restricted security context, as runner Pods have."""
    code = ("import examples.warm, time; print(time.time(), flush=True)")
    samples = []
    pods: list[dict[str, Any]] = []
    for _ in range(runs):
        name = f"bare-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "waypost-bench-bare"}},
            "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "bare", "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", code], "workingDir": "/app",
                    "resources": {"limits": {"memory": "256Mi"},
                                  "requests": {"memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]},
                                        "readOnlyRootFilesystem": True},
                }],
            },
        }
        started = time.time()
        core.create_namespaced_pod(ns, body)
        deadline = time.monotonic() + 120
        while True:
            pod = core.read_namespaced_pod(name, ns)
            if pod.status.phase in ("Succeeded", "Failed"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(name)
            time.sleep(0.05)
        log = core.read_namespaced_pod_log(name, ns).strip().splitlines()
        if pod.status.phase != "Succeeded" or not log:
            raise RuntimeError(f"bare Pod {name} ended {pod.status.phase}: {log}")
        samples.append((float(log[-1]) - started) * 1000)
        pods.append({"pod": name, "trigger": started, "task_start": float(log[-1])})
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    return _with_parts(_summary(samples), pods)


class WarmPodSampler:
    """Counts live warm Pods (in all and per Task) every 100 ms in a thread."""

    def __init__(self, core: Any, ns: str, interval: float = 0.1) -> None:
        self.core, self.ns, self.interval = core, ns, interval
        self.samples: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(self.ns, label_selector=WARM_LABEL).items
            live = [p for p in pods if p.status.phase in ("Pending", "Running")]
            per: dict[str, int] = {}
            for p in live:
                key = p.metadata.labels.get(TASK_LABEL, "")
                per[key] = per.get(key, 0) + 1
            self.samples.append((len(live), per))
            time.sleep(self.interval)

    def __enter__(self) -> WarmPodSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def most_in_all(self) -> int:
        return max((total for total, _ in self.samples), default=0)

    @property
    def most_per_task(self) -> int:
        return max((max(per.values(), default=0) for _, per in self.samples), default=0)


def burst(url: str, ns: str, core: Any, tasks: list[str], runs: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[BaseException] = []

    def one(task: str) -> None:
        try:
            started, run = trigger_and_wait(url, ns, task)
            latencies.append((float(run["result"]["startedAt"]) - started) * 1000)
        except BaseException as exc:  # reported after the burst
            errors.append(exc)

    with WarmPodSampler(core, ns) as sampler:
        began = time.time()
        workers = [threading.Thread(target=one, args=(tasks[i % len(tasks)],))
                   for i in range(runs)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.time() - began
    if errors:
        raise RuntimeError(f"{len(errors)} runs of the burst failed: {errors[0]}")
    return {
        **_summary(latencies), "tasks": len(tasks), "seconds": round(elapsed, 1),
        "runs_per_second": round(runs / elapsed, 2),
        "max_warm_pods_seen": sampler.most_in_all,
        "max_warm_pods_per_task_seen": sampler.most_per_task,
        "samples": len(sampler.samples),
    }


PARTS = ("bare_pod", "cold", "warm", "burst")


def run_all(url: str, ns: str, core: Any, image: str, make_task: Callable[..., None],
            runs: int = 200, burst_runs: int = 100, burst_tasks: int = 12,
            parts: tuple[str, ...] = PARTS, previous: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The ``parts`` asked for (all by default), in one namespace of a release whose
    global cap is known to the caller, over ``previous`` results: the cluster is
    shared, so a long measurement can be taken in several shorter sittings."""
    result: dict[str, Any] = dict(previous or {})
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if "bare_pod" in parts:
        result["bare_pod"] = {**bare_pod_latency(core, ns, image, runs), "when": when}
    if "cold" in parts:
        make_task("bench-cold", warmPool={"enabled": False})
        result["cold"] = {**waypost_latency(url, ns, "bench-cold", runs, parts=True),
                          "when": when}
    if "warm" in parts:
        make_task("bench-warm")
        trigger_and_wait(url, ns, "bench-warm")  # the first warm Pod
        result["warm"] = {**waypost_latency(url, ns, "bench-warm", runs), "when": when}
    if "burst" in parts:
        names = [f"bench-burst-{i}" for i in range(burst_tasks)]
        for name in names:
            make_task(name, warmPool={"maxWarm": 2})
        result["burst"] = {**burst(url, ns, core, names, burst_runs), "when": when}
    ratios: dict[str, float] = {}
    if "cold" in result and "bare_pod" in result:
        ratios["cold_p50_over_bare_p50"] = round(
            result["cold"]["p50_ms"] / result["bare_pod"]["p50_ms"], 2)
        ratios["cold_p99_over_bare_p99"] = round(
            result["cold"]["p99_ms"] / result["bare_pod"]["p99_ms"], 2)
    if "cold" in result and "warm" in result:
        ratios["cold_p50_over_warm_p50"] = round(
            result["cold"]["p50_ms"] / result["warm"]["p50_ms"], 1)
    result["ratios"] = ratios
    return result
