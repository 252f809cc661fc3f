"""Pre-warming decisions driving the Kubernetes backend, with a fake clock and an
in-memory PodApi: which warm Pods the leader starts from queue depth and a task's
recent rate, within ``maxWarm`` and the global cap, and that the pool goes back to
zero when the task stops running. (The cluster path: e2e/test_warm_prewarm.py.)"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.test_kubernetes_backend import FakeHub, _drain, _terminated, _warm_backend
from waypost.engine import prewarm
from waypost.engine.clock import FakeClock
from waypost.model import k8s
from waypost.store import warm as store

SPEC = {"entrypoint": "examples.warm:probe", "image": "waypost-runner:1",
        "warmPool": {"maxWarm": 2, "idleTTLSeconds": 60}}


class Signals:
    """What ``warm_demand`` would read: ready runs per task (every task is active)."""

    def __init__(self) -> None:
        self.ready: dict[str, int] = {}

    async def demand(self, db: Any, recent: list[tuple[str, str]]) -> list[store.TaskDemand]:
        del db
        tasks = set(self.ready) | {task for _, task in recent}
        return [store.TaskDemand("team-a", task, json.dumps(SPEC), self.ready.get(task, 0))
                for task in sorted(tasks)]


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> Signals:
    fake = Signals()
    monkeypatch.setattr(store, "demand", fake.demand)
    return fake


def _hub(hub: FakeHub, clock: FakeClock) -> FakeHub:
    hub.engine = SimpleNamespace(clock=clock, pool=None, settings=SimpleNamespace(
        runner_coordinator_url="http://c:8080"))
    hub.stats = SimpleNamespace(prewarmed=lambda key: None)  # type: ignore[attr-defined]
    return hub


def _pods(api: Any) -> list[dict[str, Any]]:
    return [p for p in api.pods.values() if k8s.LABEL_RUN_ID not in p["metadata"]["labels"]]


async def test_queue_depth_starts_pods_up_to_max_warm(signals: Signals) -> None:
    clock = FakeClock()
    backend, api, _, raw_hub = await _warm_backend(max_warm_pods=3)
    hub = _hub(raw_hub, clock)
    signals.ready = {"probe": 5}
    started = await prewarm.tick(hub, backend)  # type: ignore[arg-type]
    assert started == {("team-a", "probe"): 2}  # maxWarm 2, though 5 wait
    assert len(_pods(api)) == 2
    # Nothing more while they live; another task gets what the global cap leaves (1).
    signals.ready = {"probe": 5, "other": 4}
    assert await prewarm.tick(hub, backend) == {("team-a", "other"): 1}  # type: ignore[arg-type]
    assert await prewarm.tick(hub, backend) == {}  # type: ignore[arg-type]
    assert len(backend.warm_members()) == 3 and raw_hub.retired == []
    await backend.close()


async def test_a_frequent_task_keeps_one_pod_and_the_pool_goes_to_zero_when_it_stops(
        signals: Signals) -> None:
    clock = FakeClock()
    backend, api, _, raw_hub = await _warm_backend()
    hub = _hub(raw_hub, clock)
    key = ("team-a", "probe")
    # A task run once: nothing is kept for it.
    hub.rates.record(key, clock.monotonic())
    assert await prewarm.tick(hub, backend) == {}  # type: ignore[arg-type]
    # Twenty runs over a minute: one Pod in reserve, not more.
    for _ in range(20):
        clock.advance(3.0)
        hub.rates.record(key, clock.monotonic())
    assert await prewarm.tick(hub, backend) == {key: 1}  # type: ignore[arg-type]
    assert await prewarm.tick(hub, backend) == {}  # type: ignore[arg-type]
    [pod] = _pods(api)
    # Its idle TTL retires it and its runner exits: while the rate holds, another.
    [runner_id] = raw_hub.enrolled
    await raw_hub.retire([runner_id], "idle_ttl")
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(pod, "Completed", 0))
    await _drain()
    assert backend.warm_members() == []
    clock.advance(30.0)
    assert await prewarm.tick(hub, backend) == {key: 1}  # type: ignore[arg-type]
    # Ten quiet minutes: the rate has decayed; when the TTL retires this one, none follows.
    [pod] = [p for p in _pods(api) if p is not pod]
    clock.advance(600.0)
    await raw_hub.retire([raw_hub.enrolled[-1]], "idle_ttl")
    api.emit("MODIFIED", _terminated(pod, "Completed", 0))
    await _drain()
    assert await prewarm.tick(hub, backend) == {}  # type: ignore[arg-type]
    assert backend.warm_members() == []
    await backend.close()
