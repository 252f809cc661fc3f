"""Where a Pod's start went, from the e2e cluster's containerd and kubelet logs.

For each named Pod: when containerd was asked for its sandbox (the kubelet has
scheduled it, admitted it and mounted its volumes by then), when the sandbox
was ready, when its container had started, and how often the kubelet failed to
get a Secret the Pod mounts (``Couldn't get secret <ns>/<name>``, each failure
followed by a retry of the mount at least 500 ms later). With the trigger time
(the client's) and the task's start (the task's ``time.time()``), this splits
trigger-to-task-code into: before the sandbox (claim, API calls, scheduling,
volumes), the sandbox, the container's creation and start, and the process up
to the task's first line.

Only the e2e harness writes these logs (``/var/log/waypost-e2e``); on another
cluster the parts are simply not reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.stats import pct

LOG_DIR = Path("/var/log/waypost-e2e")

_CONTAINERD_TIME = re.compile(r'^time="([^"]+)"')
_SANDBOX_ASKED = re.compile(r'RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),.*\}"$')
_SANDBOX_READY = re.compile(
    r'RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),.*returns sandbox id \\"([0-9a-f]+)')
_CREATED = re.compile(r'CreateContainer within sandbox \\"([0-9a-f]+)\\" for &ContainerMetadata'
                      r'.*returns container id \\"([0-9a-f]+)')
_STARTED = re.compile(r'StartContainer for \\"([0-9a-f]+)\\" returns successfully')
_KUBELET_TIME = re.compile(r"^[IWE](\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d+)")
_SECRET_FAILED = re.compile(r"Couldn't get secret ([^/\s]+)/(\S+?):")


def _containerd_time(line: str) -> float | None:
    match = _CONTAINERD_TIME.match(line)
    if not match:
        return None
    text = match.group(1).rstrip("Z")
    head, _, frac = text.partition(".")
    stamp = datetime.fromisoformat(head + "+00:00").timestamp()
    return stamp + float("0." + frac) if frac else stamp


def pod_times(names: Iterable[str], log_dir: Path = LOG_DIR) -> dict[str, dict[str, float]]:
    """Pod name -> ``sandbox_asked``, ``sandbox_ready``, ``container_started`` (epoch
    seconds), for the Pods of ``names`` the containerd log shows."""
    wanted = set(names)
    path = log_dir / "containerd.log"
    if not path.exists() or not wanted:
        return {}
    times: dict[str, dict[str, float]] = {}
    by_sandbox: dict[str, str] = {}
    by_container: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if "RunPodSandbox" not in line and "Container" not in line:
                continue
            stamp = _containerd_time(line)
            if stamp is None:
                continue
            line = line.rstrip("\n")
            if (ready := _SANDBOX_READY.search(line)) and ready.group(1) in wanted:
                times.setdefault(ready.group(1), {})["sandbox_ready"] = stamp
                by_sandbox[ready.group(2)] = ready.group(1)
            elif (asked := _SANDBOX_ASKED.search(line)) and asked.group(1) in wanted:
                times.setdefault(asked.group(1), {}).setdefault("sandbox_asked", stamp)
            elif (created := _CREATED.search(line)) and created.group(1) in by_sandbox:
                by_container[created.group(2)] = by_sandbox[created.group(1)]
            elif (started := _STARTED.search(line)) and started.group(1) in by_container:
                times[by_container[started.group(1)]]["container_started"] = stamp
    return times


def secret_failures(secrets: Iterable[str], log_dir: Path = LOG_DIR) -> dict[str, int]:
    """Secret name -> how many times the kubelet failed to get it for a mount."""
    wanted = set(secrets)
    path = log_dir / "kubelet.log"
    counts: dict[str, int] = {}
    if not path.exists() or not wanted:
        return counts
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if "Couldn't get secret" not in line:
                continue
            match = _SECRET_FAILED.search(line)
            if match and match.group(2) in wanted:
                counts[match.group(2)] = counts.get(match.group(2), 0) + 1
    return counts


def split(samples: list[dict[str, Any]], log_dir: Path = LOG_DIR) -> dict[str, Any] | None:
    """Medians and p99 of each part of ``samples`` (each ``pod``, ``trigger`` and
    ``task_start`` in epoch seconds, and ``secret`` when the Pod mounts one)."""
    times = pod_times((s["pod"] for s in samples), log_dir)
    failures = secret_failures((s["secret"] for s in samples if s.get("secret")), log_dir)
    parts: dict[str, list[float]] = {
        "trigger_to_sandbox_ms": [], "sandbox_ms": [], "container_ms": [],
        "process_to_task_ms": []}
    slow: list[float] = []
    for sample in samples:
        t = times.get(sample["pod"], {})
        if not {"sandbox_asked", "sandbox_ready", "container_started"} <= set(t):
            continue
        parts["trigger_to_sandbox_ms"].append((t["sandbox_asked"] - sample["trigger"]) * 1000)
        parts["sandbox_ms"].append((t["sandbox_ready"] - t["sandbox_asked"]) * 1000)
        parts["container_ms"].append((t["container_started"] - t["sandbox_ready"]) * 1000)
        parts["process_to_task_ms"].append(
            (sample["task_start"] - t["container_started"]) * 1000)
        if failures.get(sample.get("secret") or ""):
            slow.append((sample["task_start"] - sample["trigger"]) * 1000)
    measured = len(parts["sandbox_ms"])
    if not measured:
        return None
    out: dict[str, Any] = {"pods": measured}
    for name, values in parts.items():
        out[name] = {"p50": round(pct(values, 50), 1), "p99": round(pct(values, 99), 1)}
    if any(s.get("secret") for s in samples):
        out["secret_mount_failures"] = sum(failures.values())
        out["runs_with_a_failed_secret_mount"] = len(slow)
        if slow:
            out["those_runs_ms"] = {"min": round(min(slow), 1), "max": round(max(slow), 1)}
    return out
