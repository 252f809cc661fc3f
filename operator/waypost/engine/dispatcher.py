"""The dispatcher: claims ready runs in batches and hands them to a backend.

LISTEN/NOTIFY wakes it when runs are queued, requeued or cancelled; polling is
only the fallback. The same loop expires attempts whose heartbeats stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import uuid
from typing import Any

import asyncpg

from waypost import aiotime
from waypost.engine import attempts, history, hot_table, prewarm, warm
from waypost.engine.backend import (
    AttemptExit,
    AttemptLaunch,
    ConcurrentStarts,
    ExecutionBackend,
    WarmCapable,
)
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity
from waypost.engine.errors import BackendUnavailable
from waypost.model.enums import FailureType
from waypost.model.run import ErrorInfo
from waypost.model.task import TaskSpec
from waypost.store import notify, runs
from waypost.store import pool as store_pool
from waypost.store.runs import ClaimedAttempt

log = logging.getLogger("waypost.engine.dispatcher")

#: How long the end of an attempt is retried while the store is unreachable; after
#: that, the attempt's lease running out retries it (the reaper's job).
EXIT_REPORT_PATIENCE_SECONDS = 60.0
#: After the backend could not start an attempt because its control plane did not
#: answer, the run is claimable again after this long (the backend meanwhile offers
#: no free slots, so it is not claimed in a loop while the outage lasts).
HAND_BACK_DELAY_SECONDS = 2.0


@functools.lru_cache(maxsize=512)
def _parse_spec(spec_json: str) -> TaskSpec:
    # Every claim of a task version carries the same spec text; validating it once
    # instead of per claim was a third of the dispatcher's CPU per run in the drain
    # benchmark. TaskSpec instances are shared, so nothing may modify one.
    return TaskSpec.model_validate_json(spec_json)


def build_launch(engine: Engine, claimed: ClaimedAttempt) -> AttemptLaunch:
    """What the backend gets for a claimed attempt (a pure function of the claim)."""
    spec = _parse_spec(claimed.spec_json)
    return AttemptLaunch(
        run_id=claimed.run_id,
        attempt=claimed.attempt,
        claim_token=claimed.claim_token,
        namespace=claimed.namespace,
        task=claimed.task,
        entrypoint=spec.entrypoint,
        image=spec.image,
        memory_bytes=claimed.memory_bytes,
        timeout_seconds=spec.timeout_seconds,
        credential=engine.signer.issue(claimed.run_id, claimed.claim_token),
        coordinator_url=engine.settings.runner_coordinator_url,
        trace_id=claimed.trace_id,
        env=dict(spec.env),
        warm_pool=spec.warm_pool.enabled,
        fingerprint=warm.fingerprint(claimed.namespace, claimed.task, spec,
                                     claimed.memory_bytes),
        spec=spec,
        taskrun_name=claimed.taskrun_name,
    )


class Dispatcher:
    """One dispatcher per engine process (the leader, in the operator)."""

    def __init__(self, engine: Engine, backend: ExecutionBackend) -> None:
        self.engine = engine
        self.backend = backend
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        # Pending wake-ups for retries whose backoff has not run out; each leaves
        # the set when it fires, so the set holds only what is still to come.
        self._timers: set[asyncio.TimerHandle] = set()
        # When the grace periods of cancelled attempts run out (monotonic, a heap):
        # the reaper runs then rather than at its next periodic check.
        self._cancel_deadlines: list[float] = []
        backend.set_exit_handler(self._on_exit)
        self._warm = backend if isinstance(backend, WarmCapable) else None
        if self._warm is not None:
            self._warm.attach_warm(engine.warm)
            # A warm runner going idle frees a slot, as an ended worker does.
            engine.warm.add_listener(self._on_warm_event)

    def _on_warm_event(self, event: warm.WarmEvent) -> None:
        self._wake.set()

    async def _on_exit(self, exit: AttemptExit) -> None:
        # A worker's end seen during a database outage is recorded once the store is
        # back, not dropped: the attempt would otherwise wait for its lease to run out
        # (and a cancelled or handed-over run would be retried as lost).
        loop = asyncio.get_running_loop()
        give_up = loop.time() + EXIT_REPORT_PATIENCE_SECONDS
        failures = 0
        while True:
            try:
                await attempts.report_exit(self.engine, exit)
                break
            except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                failures += 1
                if loop.time() >= give_up:
                    log.warning("could not record the end of an attempt; its lease decides",
                                extra={"run_id": str(exit.run_id), "error": str(exc)})
                    break
                if failures == 1:
                    log.warning("store unavailable; the end of an attempt is recorded when "
                                "it is back", extra={"run_id": str(exit.run_id),
                                                     "error": str(exc)})
                await asyncio.sleep(aiotime.reconnect_delay(failures, ceiling=5.0))
        self._wake.set()  # a slot is free

    def wake(self) -> None:
        self._wake.set()

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == notify.CANCEL_CHANNEL:
            with contextlib.suppress(ValueError):
                # A little after the database's deadline, so that the lease has ended.
                heapq.heappush(self._cancel_deadlines,
                               self.engine.clock.monotonic() + float(payload) + 0.2)
                self._wake.set()
            return
        delay = 0.0
        with contextlib.suppress(ValueError):
            delay = float(payload) if payload else 0.0
        if delay > 0:
            # A retry becomes claimable after its backoff: wake up then.
            def due() -> None:
                self._timers.discard(handle)
                self._wake.set()

            handle = asyncio.get_running_loop().call_later(delay, due)
            self._timers.add(handle)
        else:
            self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        # LISTEN needs a session of its own: a transaction pooler would hand the
        # notifications to whichever client holds the server connection next.
        conn = await store_pool.connect(self.engine.settings.session_url)
        await conn.add_listener(notify.READY_CHANNEL, self._on_notify)
        await conn.add_listener(notify.CANCEL_CHANNEL, self._on_notify)
        self._listener = conn

    async def dispatch_once(self) -> int:
        """Claim what fits in the backend's free slots and start it; returns how many."""
        slots = self.backend.free_slots()
        if slots <= 0:
            return 0
        settings = self.engine.settings
        # Until the runner's first heartbeat, the lease is the start timeout: starting a
        # Pod or a process and importing the task is not heartbeat time.
        start_timeout = settings.start_timeout_seconds or self.backend.start_timeout_seconds
        claimed = await runs.claim(
            self.engine.pool, limit=min(slots, settings.claim_batch),
            lease_seconds=start_timeout, worker=settings.worker_name,
            leader_epoch=self.engine.leader_epoch,
        )
        if not claimed:
            return 0
        started = self.engine.clock.monotonic()
        launches: list[tuple[ClaimedAttempt, AttemptLaunch]] = []
        for item in claimed:
            try:
                launches.append((item, build_launch(self.engine, item)))
            except Exception as exc:
                await self._could_not_start(item, exc)
        bound = await self._assign_warm(launches)
        width = (self.backend.start_concurrency
                 if isinstance(self.backend, ConcurrentStarts) else 1)
        if width <= 1 or len(launches) <= 1:
            for item, launch in launches:
                await self._start(item, launch, bound.get(item.run_id), started)
        else:
            # A Pod's creation is two API calls; a batch of cold starts made one
            # after another made the last attempt of a burst wait for all the others.
            gate = asyncio.Semaphore(width)

            async def gated(item: ClaimedAttempt, launch: AttemptLaunch) -> None:
                async with gate:
                    await self._start(item, launch, bound.get(item.run_id), started)

            await asyncio.gather(*(gated(item, launch) for item, launch in launches))
        return len(claimed)

    async def _assign_warm(self, launches: list[tuple[ClaimedAttempt, AttemptLaunch]]
                           ) -> dict[uuid.UUID, uuid.UUID]:
        """The warm hand-off of the whole batch in one statement: run id -> runner id."""
        hub = self.engine.warm
        for item, _ in launches:
            hub.record_dispatch((item.namespace, item.task))
        if self._warm is None:
            return {}
        wanted = [(launch.fingerprint, item.run_id, item.claim_token, (item.namespace, item.task))
                  for item, launch in launches if launch.warm_pool]
        if not wanted:
            return {}
        candidates: set[uuid.UUID] = set()
        for fingerprint in {w[0] for w in wanted}:
            candidates.update(self._warm.idle_runners(fingerprint))
        try:
            return await hub.assign_many(wanted, sorted(candidates))
        except Exception:
            # They start cold instead; their claims stand.
            log.exception("warm hand-off failed")
            return {}

    async def _start(self, item: ClaimedAttempt, launch: AttemptLaunch,
                     runner_id: uuid.UUID | None, started: float) -> None:
        try:
            hub = self.engine.warm
            if runner_id is not None and self._warm is not None:
                await self._warm.start_warm(launch, runner_id)
                hub.stats.observe_latency("warm", self.engine.clock.monotonic() - started)
            else:
                await self.backend.start(launch)
                hub.stats.observe_latency("cold", self.engine.clock.monotonic() - started)
            log.info("attempt started", extra={
                "run_id": str(item.run_id), "attempt": item.attempt, "task": item.task,
                "warm_runner": str(runner_id) if runner_id else None})
        except asyncio.CancelledError:
            # The engine stopped (a leader stepping down: its Kubernetes API calls hang
            # while the apiserver is away) before the start went through. Handed back
            # now; left claimed, it would hold its start timeout (10 min on Kubernetes)
            # and, under a maxConcurrency, its whole queue. A Pod created after all has
            # a stale claim: its runner gets 409 and stops.
            await asyncio.shield(self._could_not_start(item, BackendUnavailable(
                "the engine stopped before the attempt was started")))
            raise
        except Exception as exc:
            await self._could_not_start(item, exc)

    async def _could_not_start(self, item: ClaimedAttempt, exc: Exception) -> None:
        ident = AttemptIdentity(item.run_id, item.claim_token)
        if isinstance(exc, BackendUnavailable):
            # The Kubernetes API did not answer (an apiserver outage: the leader still
            # leads for up to its renew deadline). Nothing ran and it is not the task's
            # failure: the run is ready again shortly, this attempt not counted, so an
            # API blip never spends a run's retry budget (nor fails a maxAttempts=1 one).
            log.warning("could not start attempt, handed back: %s", exc.message,
                        extra={"run_id": str(item.run_id)})
            with contextlib.suppress(Exception):
                await attempts.hand_over(self.engine, ident, f"not started: {exc.message}",
                                         delay_seconds=HAND_BACK_DELAY_SECONDS)
        else:
            log.error("could not start attempt", exc_info=exc,
                      extra={"run_id": str(item.run_id)})
            with contextlib.suppress(Exception):
                await attempts.fail(self.engine, ident, ErrorInfo(
                    type=FailureType.LOST, message=f"the backend could not start it: {exc}"))
        # A warm runner bound to it in the store but gone from the backend.
        with contextlib.suppress(Exception):
            await self.engine.warm.attempt_gone(item.run_id, item.claim_token)

    async def expire_lost(self) -> int:
        lost = await attempts.expire_lost_attempts(self.engine)
        for ident, why in lost:
            # A lost attempt's worker, or a cancelled one past its grace period: kill it.
            await self.backend.stop(ident.run_id, why, force=True)
        return len(lost)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set. Database outages are waited out."""
        # Beside the claim loop, so that neither a vacuum nor a retention pass ever
        # holds a claim back.
        vacuum = asyncio.create_task(hot_table.clean_loop(self.engine, stop))
        retention = asyncio.create_task(history.retention_loop(self.engine, stop))
        upkeep = asyncio.create_task(warm.manage(self.engine.warm, stop))
        background = [vacuum, retention, upkeep]
        if self._warm is not None:
            background.append(asyncio.create_task(prewarm.run(self.engine.warm, self._warm,
                                                              stop)))
        # A run queued by this process wakes the loop at once (Engine.runs_ready).
        self.engine.ready_listeners.append(self.wake)
        try:
            await self._dispatch_until(stop)
        finally:
            with contextlib.suppress(ValueError):
                self.engine.ready_listeners.remove(self.wake)
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.close()

    async def _dispatch_until(self, stop: asyncio.Event) -> None:
        settings = self.engine.settings
        reap_every = max(0.5, min(settings.heartbeat_interval_seconds, 10.0))
        last_reap = self.engine.clock.monotonic()
        failures = 0
        while not stop.is_set():
            try:
                await self._listen()
                self._wake.clear()
                started = await self.dispatch_once()
                now = self.engine.clock.monotonic()
                cancel_due = bool(self._cancel_deadlines) and self._cancel_deadlines[0] <= now
                if now - last_reap >= reap_every or cancel_due:
                    while self._cancel_deadlines and self._cancel_deadlines[0] <= now:
                        heapq.heappop(self._cancel_deadlines)
                    await self.expire_lost()
                    last_reap = self.engine.clock.monotonic()
                failures = 0
                if started and self.backend.free_slots() > 0:
                    continue  # there may be more ready work
            except (*store_pool.UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                failures += 1
                log.warning("dispatcher cannot reach the store: %s", exc)
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.close()
                    self._listener = None
                await aiotime.sleep(aiotime.reconnect_delay(failures), stop)
                continue
            pause = min(settings.poll_interval_seconds, reap_every)
            if self._cancel_deadlines:
                pause = max(0.0, min(pause, self._cancel_deadlines[0]
                                     - self.engine.clock.monotonic()))
            await aiotime.sleep(pause, stop, self._wake)

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

