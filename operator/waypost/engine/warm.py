"""Warm runners: runners that outlive their attempt and take the next one of the same task.

One runner, two modes (see the design): a cold runner is started for one
attempt named in its environment; a warm runner is started the same way and
also holds a *runner credential*. After its attempt it long-polls the
coordinator (``POST /v1/runner/warm/poll``) for the next attempt of the same
task and spec fingerprint, until its idle TTL runs out.

The state of every warm runner is a row of ``warm_runners`` and each change is
one fenced statement in the store:

- **enroll**: a runner started in warm mode is registered *busy* with its first attempt;
- **poll**: a runner whose attempt is no longer current becomes *idle* (or is
  retired, when its memory grew across runs);
- **assign**: the dispatcher binds a claimed attempt to an idle runner of the
  same fingerprint in one statement, only while that attempt is current; a
  runner holds at most one attempt, an attempt is bound to at most one runner;
- **retire**: idle TTL, eviction, a changed spec, a lost attempt, an ended process.

A runner that vanishes mid-attempt loses the attempt to the heartbeat expiry,
exactly as a cold one, and its registration is retired as ``lost``: if it wakes
up, its attempt calls and its next poll get 409 and it takes nothing more.

:class:`WarmHub` is the in-process side: it wakes a waiting poll at once when
this process assigned or retired its runner (a poll on another replica is woken
by NOTIFY, or finds out within :data:`RECHECK_SECONDS` at worst), keeps the
recent run rate of every task for eviction and pre-warming, and counts hits,
misses and evictions for the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import AttemptSuperseded, RunNotFound
from waypost.model.task import TaskSpec
from waypost.sdk import protocol
from waypost.store import insights
from waypost.store import warm as store
from waypost.store.pool import RawJson

if TYPE_CHECKING:
    from waypost.engine.core import Engine

log = logging.getLogger("waypost.engine.warm")

# How often a waiting poll re-reads its registration when nothing woke it: a
# fallback only, since an assignment made here wakes it in-process and one made
# by the leader on another replica wakes it by NOTIFY (see listen()).
RECHECK_SECONDS = 5.0
# The longest a poll is held open; the runner polls again after an empty answer.
MAX_POLL_SECONDS = 20.0  # below protocol.MAX_WARM_POLL_SECONDS
# Retired registrations are kept this long so a late poll still learns why.
PRUNE_AFTER_SECONDS = 600.0

TaskKey = tuple[str, str]  # (namespace, task)


class RetireReason(enum.StrEnum):
    """Why a warm runner left the pool (the ``reason`` label of the eviction metric)."""

    IDLE_TTL = "idle_ttl"
    EVICTED = "evicted"  # the global cap needed room for a busier task
    SPEC_CHANGED = "spec_changed"
    MEMORY_GROWTH = "memory_growth"
    LOST = "lost"  # its attempt's heartbeats stopped
    EXITED = "exited"  # its process or Pod ended (OOM kill, crash, deletion)
    SHUTDOWN = "shutdown"


@functools.lru_cache(maxsize=256)
def _spec(spec_json: str) -> TaskSpec:
    # A task version's spec text repeats with every run: validated once, never modified.
    return TaskSpec.model_validate_json(spec_json)


def fingerprint(namespace: str, task: str, spec: TaskSpec, memory_bytes: int) -> str:
    """What makes two attempts interchangeable for one warm runner.

    The task (a runner registers for one task), its image, entrypoint,
    resources (the attempt's memory limit, which an OOM retry raises, so a
    bigger retry never lands in a smaller warm runner) and the environment,
    including where it comes from and the service account.
    """
    material = {
        "task": [namespace, task],
        "image": spec.image,
        "entrypoint": spec.entrypoint,
        "memory": memory_bytes,
        "env": sorted(spec.env.items()),
        "envFrom": [e.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for e in spec.env_from],
        "serviceAccountName": spec.service_account_name,
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest[:32]


# --- eviction ---------------------------------------------------------------

@dataclass
class RateTracker:
    """Each task's recent run rate: an exponentially decaying count of dispatches.

    ``rate(task, now)`` is in runs per minute, averaged over about the last
    ``half_life`` seconds (older runs count half as much per half-life).
    """

    half_life: float = 60.0
    _state: dict[TaskKey, tuple[float, float]] = field(default_factory=dict)

    def _decayed(self, key: TaskKey, now: float) -> float:
        value, at = self._state.get(key, (0.0, now))
        return value * math.pow(0.5, max(0.0, now - at) / self.half_life)

    def record(self, key: TaskKey, now: float, count: int = 1) -> None:
        self._state[key] = (self._decayed(key, now) + count, now)

    def active(self, now: float, min_rate: float) -> list[TaskKey]:
        """The tasks whose rate is at least ``min_rate``; forgets those decayed to nothing."""
        keys = []
        for key in list(self._state):
            rate = self.rate(key, now)
            if rate >= min_rate:
                keys.append(key)
            elif rate < 0.01:
                del self._state[key]
        return keys

    def rate(self, key: TaskKey, now: float) -> float:
        # A decaying sum over a half-life h holds about h / ln 2 seconds' worth of runs.
        window_minutes = self.half_life / math.log(2) / 60.0
        return self._decayed(key, now) / window_minutes


@dataclass(frozen=True)
class IdleRunner:
    """What eviction knows of an idle runner."""

    runner_id: uuid.UUID
    task: TaskKey
    last_used: float  # monotonic seconds when its last attempt ended


# Seconds of recency a task gains per doubling of its run rate (runs/minute):
# a runner of a task run 60 times a minute is treated as if used ~6 minutes
# later than it was, so it outlives the idle runner of a task run once an hour.
RATE_BOOST_SECONDS = 60.0


def eviction_order(
    idle: Iterable[IdleRunner], rates: RateTracker, now: float,
    boost_seconds: float = RATE_BOOST_SECONDS,
) -> list[uuid.UUID]:
    """Idle runners in the order they should be evicted: least recently used first,
    each runner's last use moved later by its task's recent run rate."""

    def score(runner: IdleRunner) -> tuple[float, str]:
        boost = boost_seconds * math.log2(1.0 + rates.rate(runner.task, now))
        return (runner.last_used + boost, str(runner.runner_id))

    return [r.runner_id for r in sorted(idle, key=score)]


# --- the in-process hub ----------------------------------------------------

@dataclass(frozen=True)
class WarmEvent:
    """A warm runner changed state: ``idle`` (its attempt ended) or ``retired``."""

    runner_id: uuid.UUID
    kind: str
    run_id: uuid.UUID | None = None
    rss_bytes: int = 0
    reason: str | None = None


Listener = Callable[[WarmEvent], None]


# Dispatch latency buckets (seconds): a warm hand-off is one statement, a cold
# start spawns a process or creates a Pod.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class WarmStats:
    """Hits, misses, evictions and dispatch latencies of this process's dispatcher.

    Kept as Prometheus metrics in a registry of their own, which ``/metrics``
    appends to the figures it reads from the store; the plain counts are there
    for tests and logs.
    """

    def __init__(self) -> None:
        self.hits: dict[TaskKey, int] = defaultdict(int)
        self.misses: dict[TaskKey, int] = defaultdict(int)
        self.evictions: dict[str, int] = defaultdict(int)
        self.registry = CollectorRegistry()
        self._hits = Counter("waypost_warm_hits", "Attempts handed to an idle warm runner.",
                             ["namespace", "task"], registry=self.registry)
        self._misses = Counter("waypost_warm_misses",
                               "Attempts of warm-pool tasks that found no idle warm runner.",
                               ["namespace", "task"], registry=self.registry)
        self._prewarmed = Counter("waypost_warm_prewarmed",
                                  "Warm runners started ahead of demand (queue depth, "
                                  "recent run rate).", ["namespace", "task"],
                                  registry=self.registry)
        self._evictions = Counter("waypost_warm_evictions",
                                  "Warm runners retired, by reason.", ["reason"],
                                  registry=self.registry)
        self._latency = Histogram(
            "waypost_dispatch_latency_seconds",
            "From the claim to the attempt being with its runner: bound to an idle warm "
            "runner (warm) or its process/Pod started (cold).",
            ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def prewarmed(self, key: TaskKey) -> None:
        self._prewarmed.labels(*key).inc()

    def hit(self, key: TaskKey) -> None:
        self.hits[key] += 1
        self._hits.labels(*key).inc()

    def miss(self, key: TaskKey) -> None:
        self.misses[key] += 1
        self._misses.labels(*key).inc()

    def evicted(self, reason: str, count: int) -> None:
        self.evictions[reason] += count
        self._evictions.labels(reason).inc(count)

    def observe_latency(self, kind: str, seconds: float) -> None:
        self._latency.labels(kind).observe(seconds)


class WarmHub:
    """Warm-runner operations of one engine process (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rates = RateTracker()
        self.stats = WarmStats()
        self._waiters: dict[uuid.UUID, asyncio.Event] = {}
        # Assignments made here for polls held here: the woken poll answers with
        # it without reading the store (runner id -> (run id, claim token, answer)).
        self._prepared: dict[uuid.UUID, tuple[uuid.UUID, int, protocol.WarmAssignment]] = {}
        self._listeners: list[Listener] = []

    # -- plumbing --

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` for each state change this process observes."""
        self._listeners.append(listener)

    def _emit(self, event: WarmEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("warm listener failed")

    def _wake(self, runner_ids: Iterable[uuid.UUID]) -> None:
        for runner_id in runner_ids:
            waiter = self._waiters.get(runner_id)
            if waiter is not None:
                waiter.set()

    def _retired(self, runner_ids: Sequence[uuid.UUID], reason: str) -> None:
        if runner_ids:
            self.stats.evicted(reason, len(runner_ids))
        self._wake(runner_ids)
        for runner_id in runner_ids:
            self._emit(WarmEvent(runner_id, "retired", reason=reason))

    # -- runner side --

    def credential(self, runner_id: uuid.UUID) -> str:
        return self.engine.signer.issue_runner(runner_id)

    async def enroll(
        self, *, namespace: str, task: str, fingerprint: str, run_id: uuid.UUID,
        claim_token: int, idle_ttl_seconds: float,
    ) -> tuple[uuid.UUID, str]:
        """Register a runner about to start in warm mode with its first attempt;
        returns its id and credential."""
        runner_id = uuid.uuid4()
        await store.enroll(self.engine.pool, runner_id, namespace=namespace, task=task,
                           fingerprint=fingerprint, run_id=run_id, claim_token=claim_token,
                           idle_ttl_seconds=idle_ttl_seconds)
        return runner_id, self.credential(runner_id)

    async def enroll_idle(self, *, namespace: str, task: str, fingerprint: str,
                          idle_ttl_seconds: float) -> tuple[uuid.UUID, str]:
        """Register a runner about to be pre-warmed (idle, no attempt); returns its id
        and credential."""
        runner_id = uuid.uuid4()
        await store.enroll_idle(self.engine.pool, runner_id, namespace=namespace, task=task,
                                fingerprint=fingerprint, idle_ttl_seconds=idle_ttl_seconds)
        return runner_id, self.credential(runner_id)

    async def poll(
        self, runner_id: uuid.UUID, *, finished_run: uuid.UUID | None,
        finished_attempt: int | None, rss_after_bytes: int, wait_seconds: float,
        success: tuple[AttemptIdentity, RawJson, protocol.Usage | None] | None = None,
    ) -> protocol.WarmPollAnswer:
        """A warm runner's long poll (see ``POST /v1/runner/warm/poll``).

        ``success``: the finished attempt's success (its identity, checked by the
        caller against the attempt's own credential, its encoded result and the
        runner's memory report), taken in the same statement that makes the runner
        idle; AttemptSuperseded when that attempt is no longer current."""
        settings = self.engine.settings
        growth_limit = settings.warm_memory_growth_mib * 1024 * 1024
        found: store.WarmRunner | None
        if success is not None and finished_run is not None and finished_attempt is not None:
            ident, result, usage = success
            found, finished_now, completed = await store.finish_poll(
                self.engine.pool, runner_id, finished_run=finished_run,
                claim_token=ident.claim_token, finished_attempt=finished_attempt,
                result=result, rss_after_bytes=rss_after_bytes,
                growth_limit_bytes=growth_limit)
            if not completed:
                raise AttemptSuperseded(
                    f"attempt with claim token {ident.claim_token} of run {ident.run_id} is "
                    "no longer current (it was superseded, cancelled, or the run already "
                    "finished)")
            log.info("attempt succeeded", extra={"run_id": str(ident.run_id)})
            from waypost.engine import attempts  # attempts imports this module's users

            # Queued before the poll waits (written in the background, batched).
            attempts.record_usage(self.engine, ident, usage)
        else:
            polled = await store.poll(
                self.engine.pool, runner_id, finished_run=finished_run,
                finished_attempt=finished_attempt, rss_after_bytes=rss_after_bytes,
                growth_limit_bytes=growth_limit,
            )
            found, finished_now = polled if polled is not None else (None, False)
        if found is None:
            raise RunNotFound(f"no warm runner {runner_id} is registered")
        row = found
        if finished_now:
            # Its attempt ended: it is idle, or was retired for memory growth.
            self._emit(WarmEvent(runner_id, "idle", run_id=finished_run,
                                 rss_bytes=rss_after_bytes))
            if row.retired_reason == RetireReason.MEMORY_GROWTH:
                log.warning("warm runner retired: memory grew across runs", extra={
                    "runner_id": str(runner_id), "task": row.task,
                    "first_rss_mib": (row.first_rss_bytes or 0) // 2**20,
                    "rss_mib": rss_after_bytes // 2**20, "runs_served": row.runs_served})
            if row.state == "retired":
                # Memory growth, or its Task's spec changed while it ran.
                self._retired([runner_id], row.retired_reason or "retired")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait_seconds, 0.0), MAX_POLL_SECONDS)
        waiter = self._waiters.setdefault(runner_id, asyncio.Event())
        try:
            while True:
                if row.state == "retired":
                    if row.retired_reason == RetireReason.LOST:
                        raise AttemptSuperseded(
                            f"warm runner {runner_id} lost its attempt (no heartbeat within "
                            "the lease); it takes nothing more")
                    return protocol.WarmPollAnswer(retire=row.retired_reason or "retired")
                if row.state == "busy":
                    # Bound to an attempt: a new assignment, or one whose answer
                    # the runner did not receive (it is sent again).
                    assert row.run_id is not None and row.claim_token is not None
                    return protocol.WarmPollAnswer(
                        assignment=await self._assignment(row.run_id, row.claim_token))
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return protocol.WarmPollAnswer()
                waiter.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), min(remaining, RECHECK_SECONDS))
                prepared = self._prepared.pop(runner_id, None)
                if prepared is not None:
                    # Assigned by this process a moment ago, document and all.
                    return protocol.WarmPollAnswer(assignment=prepared[2])
                fresh = await store.get(self.engine.pool, runner_id)
                if fresh is None:
                    raise RunNotFound(f"no warm runner {runner_id} is registered")
                row = fresh
        finally:
            if self._waiters.get(runner_id) is waiter:
                del self._waiters[runner_id]
            self._prepared.pop(runner_id, None)

    async def _assignment(self, run_id: uuid.UUID, claim_token: int
                          ) -> protocol.WarmAssignment:
        from waypost.engine import attempts  # attempts imports this module's users

        ident = AttemptIdentity(run_id, claim_token)
        return protocol.WarmAssignment(
            credential=self.engine.signer.issue(run_id, claim_token),
            attempt=await attempts.describe(self.engine, ident),
        )

    # -- dispatcher and pool manager side --

    def record_dispatch(self, key: TaskKey) -> None:
        self.rates.record(key, self.engine.clock.monotonic())

    async def assign(self, fingerprint: str, run_id: uuid.UUID, claim_token: int,
                     key: TaskKey, candidates: Sequence[uuid.UUID]) -> uuid.UUID | None:
        """Hand one claimed attempt to one of ``candidates`` (the backend's idle runners
        of this fingerprint) if the store agrees it is still idle."""
        made = await self.assign_many([(fingerprint, run_id, claim_token, key)], candidates)
        return made.get(run_id)

    async def assign_many(
        self, items: Sequence[tuple[str, uuid.UUID, int, TaskKey]],
        candidates: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Hand a claim batch's attempts (fingerprint, run id, claim token, task) to idle
        runners among ``candidates`` in one statement; returns run id -> runner id.

        A poll held here is answered with the assignment built from what that
        statement returned; one held elsewhere is woken by NOTIFY and reads it."""
        bound: list[store.Assigned] = []
        if candidates and items:
            bound = await store.assign_many(
                self.engine.pool, [(fp, run_id, token) for fp, run_id, token, _ in items],
                candidates, self.engine.settings.lease_seconds)
        made = {a.run_id: a.runner_id for a in bound}
        for _, run_id, _, key in items:
            if run_id in made:
                self.stats.hit(key)
            else:
                self.stats.miss(key)
        for assigned in bound:
            if assigned.runner_id in self._waiters:
                self._prepared[assigned.runner_id] = (
                    assigned.run_id, assigned.claim_token, self._assigned(assigned))
                self._wake([assigned.runner_id])
            else:
                await store.notify(self.engine.pool, assigned.runner_id)
        return made

    def _assigned(self, a: store.Assigned) -> protocol.WarmAssignment:
        from waypost.engine import attempts  # attempts imports this module's users

        # Where its task's time starts, for an attempt killed before it reports (patterns).
        self.engine.usage.record(insights.RunnerStart(a.claim_token, a.run_id))
        doc = attempts.document(
            self.engine, run_id=a.run_id, attempt=a.attempt, namespace=a.namespace,
            task=a.task, spec=_spec(a.spec_json), payload=a.payload, trace_id=a.trace_id,
            idempotency_key=a.idempotency_key, parent_sampled=a.parent_sampled,
            checkpoints=[protocol.AttemptCheckpoint(
                key=c["key"], data=c.get("data"), attempt=c.get("attempt"),
                created_at=datetime.fromisoformat(c["createdAt"]) if c.get("createdAt")
                else None) for c in a.checkpoints])
        return protocol.WarmAssignment(
            credential=self.engine.signer.issue(a.run_id, a.claim_token), attempt=doc)

    def wake(self, runner_id: uuid.UUID) -> None:
        """Wake the poll of ``runner_id`` if this process holds it (a NOTIFY arrived)."""
        self._wake([runner_id])

    async def retire(self, runner_ids: Sequence[uuid.UUID], reason: str, *,
                     busy_too: bool = False) -> list[uuid.UUID]:
        """Retire idle runners (and busy ones with ``busy_too``); wakes their polls."""
        if not runner_ids:
            return []
        done = await store.retire(self.engine.pool, runner_ids, reason, busy_too=busy_too)
        self._retired(done, reason)
        return done

    async def attempt_lost(self, run_id: uuid.UUID, claim_token: int) -> None:
        """The attempt's heartbeats stopped: its runner, if warm, is retired as lost."""
        done = await store.retire_attempt(self.engine.pool, run_id, claim_token,
                                          RetireReason.LOST)
        self._retired(done, RetireReason.LOST)

    async def spec_changed(self, namespace: str, task: str, spec: TaskSpec) -> list[uuid.UUID]:
        """The Task's spec is now ``spec``: retire its idle runners of other fingerprints."""
        keep = fingerprint(namespace, task, spec, spec.memory_bytes)
        done = await store.retire_stale(self.engine.pool, namespace, task, [keep])
        self._retired(done, RetireReason.SPEC_CHANGED)
        return done

    async def code_changed(self, namespace: str, task: str) -> list[uuid.UUID]:
        """The task's code changed on disk (``waypost dev`` reloaded it) while its spec
        did not: every runner of the task holds the old module, so idle ones retire
        now and busy ones when their run ends."""
        done = await store.retire_stale(self.engine.pool, namespace, task, [])
        self._retired(done, RetireReason.SPEC_CHANGED)
        return done

    async def attempt_gone(self, run_id: uuid.UUID, claim_token: int) -> None:
        """The runner bound to this attempt could not take it (it ended): retire it."""
        done = await store.retire_attempt(self.engine.pool, run_id, claim_token,
                                          RetireReason.EXITED)
        self._retired(done, RetireReason.EXITED)

    async def expire_idle(self) -> list[store.WarmRunner]:
        """Retire idle runners past their TTL (on the database clock)."""
        expired = await store.expire_idle(self.engine.pool)
        self._retired([r.runner_id for r in expired], RetireReason.IDLE_TTL)
        return expired

    async def members(self) -> list[store.WarmRunner]:
        return await store.members(self.engine.pool)

    async def prune(self) -> int:
        return await store.prune(self.engine.pool, PRUNE_AFTER_SECONDS)


async def listen(hub: WarmHub, stop: asyncio.Event) -> None:
    """Every coordinator replica: wake local polls on the other replicas' NOTIFYs,
    so that an assignment made by the leader reaches a poll held here at once
    (without it, within :data:`RECHECK_SECONDS`)."""
    from waypost.store import pool as store_pool

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            hub.wake(uuid.UUID(payload))

    while not stop.is_set():
        conn = None
        try:
            # LISTEN needs a session of its own, never a transaction pooler.
            conn = await store_pool.connect(hub.engine.settings.session_url)
            await conn.add_listener(store.CHANNEL, on_notify)
            while not stop.is_set() and not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5.0)
        except Exception as exc:  # the database away: polls fall back to rechecks
            log.warning("warm listener cannot reach the store: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()


@dataclass(frozen=True)
class PoolMember:
    """A backend's view of one of its warm runners, for admission."""

    runner_id: uuid.UUID
    task: TaskKey
    idle: bool
    last_used: float
    # Retired (TTL, eviction, spec change) but its process or Pod has not ended yet:
    # it still counts against the caps, and cannot be evicted again.
    retired: bool = False


def has_room(members: Sequence[PoolMember], key: TaskKey, max_warm: int,
             max_total: int) -> bool:
    """Whether one more warm runner of ``key`` fits both caps as they are (no eviction)."""
    return (max_warm > 0 and max_total > 0 and len(members) < max_total
            and sum(1 for m in members if m.task == key) < max_warm)


async def admit(hub: WarmHub, members: Sequence[PoolMember], key: TaskKey, max_warm: int,
                max_total: int) -> tuple[bool, list[uuid.UUID]]:
    """May a new warm runner of ``key`` start? Returns the answer and the runners
    evicted to make room.

    Per task at most ``max_warm`` (the Task's ``warmPool.maxWarm``); in all at
    most ``max_total``. ``members`` are every live runner, retired ones too until
    their process or Pod is gone: a cap that users rely on counts what runs, not
    what is registered. When only the global cap is full, the first idle runner
    in :func:`eviction_order` (LRU boosted by run rate) is retired to make room,
    and the answer is still no: the room exists once that runner has exited, for
    the next attempt; this one gets a one-shot runner. Backends decide this where
    they create runners, on the leader, so the caps hold without a race.
    """
    if max_warm <= 0 or max_total <= 0:
        return False, []
    if sum(1 for m in members if m.task == key) >= max_warm:
        return False, []
    if len(members) < max_total:
        return True, []
    if any(m.retired for m in members):
        # Room is already on its way (an evicted or expired runner is exiting).
        return False, []
    idle = [IdleRunner(m.runner_id, m.task, m.last_used) for m in members
            if m.idle and not m.retired]
    for victim in eviction_order(idle, hub.rates, hub.engine.clock.monotonic()):
        if await hub.retire([victim], RetireReason.EVICTED):
            return False, [victim]
    return False, []


async def manage(hub: WarmHub, stop: asyncio.Event, interval: float = 1.0) -> None:
    """The leader's pool upkeep: idle TTL expiry and pruning of retired registrations.

    Caps and eviction are decided where runners are created (the backend, on
    the leader), so they hold without a race; this loop only removes.
    """
    last_prune = 0.0
    while not stop.is_set():
        try:
            await hub.expire_idle()
            now = hub.engine.clock.monotonic()
            if now - last_prune > 60.0:
                await hub.prune()
                last_prune = now
        except Exception as exc:  # the store may be briefly unavailable
            log.warning("warm pool upkeep failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
