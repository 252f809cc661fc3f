"""Pre-warming: warm runners started ahead of the runs that will need them.

Warm runners are otherwise made by demand (an attempt that found no idle
runner starts in a new one, which stays warm afterwards) and removed by their
idle TTL, so the pool scales to zero when a task stops running. Pre-warming
adds runners before the demand arrives, from two signals the leader has:

- **queue depth**: ready runs of a task that wait for a slot or for their
  queue's concurrency limit. Each will be claimed soon; if an idle runner of
  its fingerprint exists then, it starts warm instead of cold.
- **recent rate**: a task dispatched at least :data:`RESERVE_MIN_RATE` times a
  minute (the decaying rate of :class:`waypost.engine.warm.RateTracker`) will
  probably run again soon, so it keeps at least one runner, even when its idle
  TTL retired the last one. When its rate decays below that, nothing replaces
  a runner the TTL retires: the pool still scales to zero.

:func:`plan` decides, purely (a fake clock drives the rates in tests): each task
wants ``min(maxWarm, max(busy + ready, reserve))`` live runners and gets the
difference to what it has, busiest task first, only within the global cap's
free room; a runner kept on the rate alone also leaves the last places of the
cap free (:func:`reserve_headroom`), for the attempts that evict to make room.
Pre-warming never evicts: it is a guess, eviction is for real demand (see
:func:`waypost.engine.warm.admit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from waypost.engine.backend import PrewarmTarget, WarmCapable
from waypost.engine.warm import PoolMember, RateTracker, TaskKey, WarmHub, fingerprint
from waypost.model.task import TaskSpec
from waypost.store import warm as store

log = logging.getLogger("waypost.engine.prewarm")

# Runs a minute from which a task keeps one idle runner in reserve: at that rate
# the next run comes, on average, well within the default idle TTL of 60 s.
RESERVE_MIN_RATE = 2.0


@dataclass(frozen=True)
class Demand:
    """What pre-warming knows of one task with its warm pool on."""

    task: TaskKey
    max_warm: int
    ready: int  # runs ready to be claimed now


def plan(
    demands: Iterable[Demand], members: Sequence[PoolMember], rates: RateTracker, now: float,
    max_total: int, min_rate: float = RESERVE_MIN_RATE,
) -> dict[TaskKey, int]:
    """How many runners to pre-warm now, per task (tasks needing none are left out).

    ``members`` are the backend's live warm runners (idle, busy, and retired ones
    whose process or Pod has not ended yet: they still count against the caps).
    """
    live: dict[TaskKey, int] = {}
    busy: dict[TaskKey, int] = {}
    for member in members:
        live[member.task] = live.get(member.task, 0) + 1
        if not member.idle:
            busy[member.task] = busy.get(member.task, 0) + 1
    room = max(0, max_total - len(members))
    # (rate, task, runners for runs that exist, runners held in reserve on the rate alone)
    wanted: list[tuple[float, TaskKey, int, int]] = []
    for demand in demands:
        if demand.max_warm <= 0:
            continue
        rate = rates.rate(demand.task, now)
        have = live.get(demand.task, 0)
        needed = min(demand.max_warm, busy.get(demand.task, 0) + demand.ready)
        reserve = min(demand.max_warm, 1 if rate >= min_rate else 0)
        for_runs = max(0, needed - have)
        on_rate = max(0, max(needed, reserve) - have - for_runs)
        if for_runs or on_rate:
            wanted.append((rate, demand.task, for_runs, on_rate))
    # A runner kept on the rate alone is a guess: it never takes the last
    # ``headroom`` places, which an attempt that evicted an idle runner for room
    # must find free (else each pass would refill the room it made, and that task
    # would run one-shot Pods for ever).
    headroom = reserve_headroom(max_total)
    result: dict[TaskKey, int] = {}
    # The most frequently run tasks first: their runners are likeliest to serve.
    for _rate, task, for_runs, on_rate in sorted(wanted, key=lambda w: (-w[0], w[1])):
        count = min(for_runs, room)
        room -= count
        extra = min(on_rate, max(0, room - headroom))
        room -= extra
        if count + extra:
            result[task] = count + extra
    return result


def reserve_headroom(max_total: int) -> int:
    """Places of the global cap that runners kept on a task's rate alone leave free."""
    return max(1, max_total // 10)


@functools.lru_cache(maxsize=256)
def _spec(spec_json: str) -> TaskSpec:
    # The same spec text every second: validated once. Never modified.
    return TaskSpec.model_validate_json(spec_json)


async def tick(hub: WarmHub, backend: WarmCapable, min_rate: float = RESERVE_MIN_RATE
               ) -> dict[TaskKey, int]:
    """Read the signals, plan, and pre-warm; returns how many runners each task got."""
    if backend.warm_limit() <= 0:
        return {}  # no warm runners at all: nothing to read
    now = hub.engine.clock.monotonic()
    recent = hub.rates.active(now, min_rate)
    rows = await store.demand(hub.engine.pool, recent)
    specs: dict[TaskKey, TaskSpec] = {}
    demands: list[Demand] = []
    for row in rows:
        spec = _spec(row.spec_json)
        if not spec.warm_pool.enabled:
            continue
        key = (row.namespace, row.task)
        specs[key] = spec
        demands.append(Demand(key, spec.warm_pool.max_warm, row.ready))
    if not demands:
        return {}
    todo = plan(demands, backend.warm_members(), hub.rates, now, backend.warm_limit(), min_rate)
    started: dict[TaskKey, int] = {}
    for key, count in todo.items():
        spec = specs[key]
        target = PrewarmTarget(
            namespace=key[0], task=key[1], spec=spec,
            fingerprint=fingerprint(key[0], key[1], spec, spec.memory_bytes),
            coordinator_url=hub.engine.settings.runner_coordinator_url)
        for _ in range(count):
            if not await backend.prewarm(target):
                break
            started[key] = started.get(key, 0) + 1
            hub.stats.prewarmed(key)
    if started:
        log.info("pre-warmed runners", extra={
            "runners": {f"{ns}/{task}": n for (ns, task), n in started.items()}})
    return started


async def run(hub: WarmHub, backend: WarmCapable, stop: asyncio.Event,
              interval: float = 1.0) -> None:
    """The leader's pre-warming loop (beside the dispatcher)."""
    while not stop.is_set():
        try:
            await tick(hub, backend)
        except Exception as exc:  # the store may be briefly unavailable
            log.warning("pre-warming failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
