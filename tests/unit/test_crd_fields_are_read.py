"""Nothing advertised that does nothing: every CRD field is read (or written) by code.

``READERS`` names, for each leaf field of the generated schemas, the module
that reads it (spec) or writes it (status), and the Python name through which
it does — an attribute (``spec.retry.max_attempts``) or a keyword argument
(``TaskRunStatus(run_id=...)``) that the module's source must contain. A new
field fails the test until it is listed here with its reader; a listed field
that the schema no longer has fails it too.

The listed exceptions are fields other issues build (none at present); each of those
issues removes its exception.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from waypost.model import crd

# field path -> (module that reads or writes it, the Python name it goes by there)
TASK_READERS: dict[str, tuple[str, str]] = {
    "spec.entrypoint": ("waypost.engine.dispatcher", "entrypoint"),
    "spec.image": ("waypost.engine.dispatcher", "image"),
    # Through TaskSpec.memory_bytes: the store keeps the bytes a run starts with.
    "spec.resources.memory": ("waypost.store.tasks", "memory_bytes"),
    "spec.retry.maxAttempts": ("waypost.engine.retry", "max_attempts"),
    # The backoff is read whole by Backoff.delay, which the engine's retry calls.
    "spec.retry.backoff.initialSeconds": ("waypost.model.task", "initial_seconds"),
    "spec.retry.backoff.factor": ("waypost.model.task", "factor"),
    "spec.retry.backoff.maxSeconds": ("waypost.model.task", "max_seconds"),
    "spec.retry.backoff.jitter": ("waypost.engine.retry", "jitter"),
    "spec.retry.retryOn": ("waypost.engine.retry", "retry_on"),
    "spec.retry.oom.memoryMultiplier": ("waypost.engine.retry", "memory_multiplier"),
    # The warm pool: whether the dispatcher tries a warm runner, the per-task cap
    # (shared by both backends through warm.admit), and the idle TTL each warm
    # runner is enrolled with.
    "spec.warmPool.enabled": ("waypost.engine.dispatcher", "enabled"),
    "spec.warmPool.maxWarm": ("waypost.backends.kubernetes", "max_warm"),
    "spec.warmPool.idleTTLSeconds": ("waypost.backends.kubernetes", "idle_ttl_seconds"),
    "spec.retry.oom.memoryCeiling": ("waypost.engine.retry", "memory_ceiling"),
    # Through TaskSpec.timeout_seconds: the backend kills an attempt past it.
    "spec.timeout.maxDuration": ("waypost.engine.dispatcher", "timeout_seconds"),
    # Stored as tasks.retain_seconds; the expire_finished_runs query reads it.
    "spec.history.retainFor": ("waypost.store.tasks", "retain_seconds"),
    # Announced to the runner in the attempt document; the cancel_run query cuts
    # the lease of a cancelled attempt to it (its SQL reads the stored spec).
    "spec.cancellation.gracePeriodSeconds": ("waypost.engine.attempts", "grace_period_seconds"),
    # Through TaskSpec.queue_name: the queue a Task's runs wait in.
    "spec.queue.name": ("waypost.store.tasks", "queue_name"),
    "spec.queue.maxConcurrency": ("waypost.store.tasks", "max_concurrency"),
    "spec.queue.perKeyConcurrency": ("waypost.store.tasks", "per_key_concurrency"),
    "spec.queue.defaultPriority": ("waypost.store.tasks", "default_priority"),
    "spec.schedules[].name": ("waypost.store.schedules", "name"),
    "spec.schedules[].cron": ("waypost.store.schedules", "cron"),
    "spec.schedules[].timezone": ("waypost.store.schedules", "timezone"),
    "spec.schedules[].payload": ("waypost.store.schedules", "payload"),
    "spec.schedules[].missedRuns": ("waypost.store.schedules", "missed_runs"),
    "spec.schedules[].catchupLimit": ("waypost.store.schedules", "catchup_limit"),
    "spec.schedules[].suspend": ("waypost.store.schedules", "suspend"),
    "spec.successfulRunsHistoryLimit": ("waypost.controller.mirror",
                                        "successful_runs_history_limit"),
    "spec.failedRunsHistoryLimit": ("waypost.controller.mirror", "failed_runs_history_limit"),
    "spec.env": ("waypost.engine.dispatcher", "env"),
    "spec.envFrom[].configMapRef.name": ("waypost.backends.pod_spec", "config_map_ref"),
    "spec.envFrom[].secretRef.name": ("waypost.backends.pod_spec", "secret_ref"),
    "spec.envFrom[].prefix": ("waypost.backends.pod_spec", "prefix"),
    "spec.serviceAccountName": ("waypost.backends.pod_spec", "service_account_name"),
    "status.conditions[].type": ("waypost.controller.status", "type"),
    "status.conditions[].status": ("waypost.controller.status", "status"),
    "status.conditions[].reason": ("waypost.controller.status", "reason"),
    "status.conditions[].message": ("waypost.controller.status", "message"),
    "status.conditions[].lastTransitionTime": ("waypost.controller.status",
                                               "last_transition_time"),
    "status.conditions[].observedGeneration": ("waypost.controller.status",
                                               "observed_generation"),
    "status.observedGeneration": ("waypost.controller.status", "observed_generation"),
    "status.queueDepth": ("waypost.controller.status", "queue_depth"),
    "status.running": ("waypost.controller.status", "running"),
    # Idle warm runners of the Task, counted from the store by the mirror.
    "status.warmPods": ("waypost.controller.status", "warm_pods"),
    "status.lastScheduleTime": ("waypost.controller.status", "last_schedule_time"),
    "status.nextScheduleTime": ("waypost.controller.status", "next_schedule_time"),
}
TASKRUN_READERS: dict[str, tuple[str, str]] = {
    "spec.taskRef.name": ("waypost.controller.handlers", "task_ref"),
    "spec.payload": ("waypost.controller.handlers", "payload"),
    "spec.priority": ("waypost.controller.handlers", "priority"),
    "spec.idempotencyKey": ("waypost.controller.handlers", "idempotency_key"),
    "spec.concurrencyKey": ("waypost.controller.handlers", "concurrency_key"),
    "spec.delay": ("waypost.controller.handlers", "delay"),
    "spec.runAt": ("waypost.controller.handlers", "run_at"),
    "spec.ttl": ("waypost.controller.handlers", "ttl"),
    # The replay request a TaskRun stands for is built by replay.from_taskrun.
    "spec.replay.fromRun": ("waypost.engine.replay", "from_run"),
    "spec.replay.fromCheckpoint": ("waypost.engine.replay", "from_checkpoint"),
    "spec.replay.payload": ("waypost.engine.replay", "payload"),
    "spec.replay.checkpoints": ("waypost.engine.replay", "checkpoints"),
    "spec.replay.spec": ("waypost.engine.replay", "spec"),
    "status.conditions[].type": ("waypost.model.taskrun", "type"),
    "status.conditions[].status": ("waypost.model.taskrun", "status"),
    "status.conditions[].reason": ("waypost.model.taskrun", "reason"),
    "status.conditions[].message": ("waypost.model.taskrun", "message"),
    "status.conditions[].lastTransitionTime": ("waypost.model.taskrun", "last_transition_time"),
    "status.conditions[].observedGeneration": ("waypost.model.taskrun", "observed_generation"),
    "status.observedGeneration": ("waypost.controller.status", "observed_generation"),
    "status.runId": ("waypost.controller.status", "run_id"),
    "status.attempt": ("waypost.controller.status", "attempt"),
    "status.startTime": ("waypost.controller.status", "start_time"),
    "status.completionTime": ("waypost.controller.status", "completion_time"),
    "status.lastCheckpoint": ("waypost.controller.status", "last_checkpoint"),
    "status.result": ("waypost.controller.status", "result"),
    "status.error.type": ("waypost.controller.status", "type"),
    "status.error.message": ("waypost.controller.status", "message"),
    "status.error.exitCode": ("waypost.controller.status", "exit_code"),
    "status.error.oomKilled": ("waypost.controller.status", "oom_killed"),
    "status.podName": ("waypost.controller.status", "pod_name"),
    "status.traceId": ("waypost.controller.status", "trace_id"),
    "status.waitingUntil": ("waypost.controller.status", "waiting_until"),
    "status.waitingForToken": ("waypost.controller.status", "waiting_for_token"),
    "status.waitingForChildren": ("waypost.controller.status", "waiting_for_children"),
}
# Accepted by the schema, read by nothing yet: the issues that build them remove these.
EXCEPTIONS: dict[str, set[str]] = {
    "Task": set(),
    "TaskRun": set(),
}
READERS = {"Task": TASK_READERS, "TaskRun": TASKRUN_READERS}
BUILDERS = {"Task": crd.task_crd, "TaskRun": crd.taskrun_crd}


def _leaves(node: dict[str, Any], path: str) -> Iterator[str]:
    if node.get("type") == "object" and "properties" in node:
        for key, child in node["properties"].items():
            yield from _leaves(child, f"{path}.{key}" if path else key)
    elif node.get("type") == "array" and "properties" in node.get("items", {}):
        yield from _leaves(node["items"], f"{path}[]")
    else:
        yield path


def _schema_fields(kind: str) -> set[str]:
    root = BUILDERS[kind]()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return {p for p in _leaves(root, "") if p.split(".")[0] in ("spec", "status")}


@functools.cache
def _names_used(module: str) -> set[str]:
    path = importlib.import_module(module).__file__
    assert path is not None
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg is not None:
            names.add(node.arg)
    return names


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_every_field_of_the_schema_has_a_reader_and_no_other(kind: str) -> None:
    fields = _schema_fields(kind)
    listed = set(READERS[kind]) | EXCEPTIONS[kind]
    assert sorted(fields - listed) == [], "fields that no code reads (add their reader here)"
    assert sorted(listed - fields) == [], "listed fields the schema no longer has"
    assert not set(READERS[kind]) & EXCEPTIONS[kind]


@pytest.mark.parametrize("kind", ["Task", "TaskRun"])
def test_each_reader_uses_the_field(kind: str) -> None:
    missing = [
        f"{field}: {module} never uses {name!r}"
        for field, (module, name) in sorted(READERS[kind].items())
        if name not in _names_used(module)
    ]
    assert missing == []
