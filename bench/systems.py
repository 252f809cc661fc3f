"""The three systems behind one small interface, each driven the way its users drive it.

Per job, each system's worker does:

- waypost: a worker loop claims a batch with ``waypost.store.runs.claim`` (one READ
  COMMITTED transaction: lock the claimable queue rows, then one statement that
  admits runs within the queue's limits, sets them running with a fencing token and a
  lease, marks the run started and opens its attempt row), builds the backend launch
  for each claimed attempt exactly as the dispatcher does (``build_launch``: TaskSpec
  validation and a signed attempt credential), runs the no-op, and acknowledges the
  batch in the transaction of its next claim (``runs.ack_and_claim``: one statement
  completes the batch, each run fenced on its claim token: the hot row leaves
  ``run_queue``, the run gets its result, the attempt is closed). One commit per
  batch. The ``ack_each`` variant acknowledges each run on its own, as the coordinator
  does for a runner's POST /v1/runner/complete: through ``engine.completions``,
  where completions that arrive while a write is in flight share the next one. LISTEN on
  a dedicated connection wakes idle loops; an empty claim polls again after 0.5 s.
- pgqueuer: ``QueueManager.run(batch_size=B)`` per worker on its own asyncpg
  connection: dequeues a batch (one statement), runs each job as an asyncio task, and
  acknowledges through pgqueuer's ``JobStatusLogBuffer`` (jobs moved to the log
  table in batches of up to B per statement).
- procrastinate: one ``App.run_worker_async(concurrency=N)``: each of the N slots
  fetches one job (``procrastinate_fetch_job``), runs it and finishes it
  (``procrastinate_finish_job``): two statements and two commits per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

OnStart = Callable[[float], None]  # called with the job's enqueue time (perf_counter)

NAMESPACE = "bench"
TASKS = {
    # name -> queue spec (camelCase, as a Task's YAML has it)
    "noop": {},
    "noop-queue-limit": {"maxConcurrency": 100000},
    "noop-key-limit": {"perKeyConcurrency": 100000},
}


class System:
    name = "?"

    async def install(self, dsn: str) -> None:
        raise NotImplementedError

    async def open(self, dsn: str, workers: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def enqueue_one(self, t0: float) -> None:
        raise NotImplementedError

    async def enqueue_many(self, n: int) -> None:
        raise NotImplementedError

    async def start_workers(self, n: int, batch: int, on_start: OnStart,
                            *, drain_count: int | None = None) -> None:
        """Start n workers; with drain_count they stop by themselves once that many
        jobs are done (and acknowledged) and the queue is empty."""
        raise NotImplementedError

    async def wait_workers(self) -> None:
        raise NotImplementedError

    async def stop_workers(self) -> None:
        raise NotImplementedError

    async def done_count(self, conn: asyncpg.Connection) -> int:
        raise NotImplementedError


# --- waypost ------------------------------------------------------------------

class Waypost(System):
    name = "waypost"

    def __init__(self, task: str = "noop", keys: int = 0, ack_each: bool = False) -> None:
        self.task = task
        # False: a batch's acknowledgements go in the transaction of the next claim
        # (runs.ack_and_claim); True: one completion per run through
        # engine.completions, as the coordinator does for POST /v1/runner/complete.
        self.ack_each = ack_each
        self.keys = keys  # spread runs over this many concurrency keys (0: none)
        self.t0: dict[uuid.UUID, float] = {}

    async def install(self, dsn: str) -> None:
        from waypost.engine import control
        from waypost.model.task import TaskDefinition, TaskSpec
        from waypost.store import migrate

        await migrate.apply_dsn(dsn)
        await self.open(dsn, 1)
        try:
            for name, queue in TASKS.items():
                spec = TaskSpec.model_validate({"entrypoint": "bench.tasks:noop",
                                                "queue": queue})
                await control.register_task(
                    self.engine, TaskDefinition(namespace=NAMESPACE, name=name, spec=spec))
        finally:
            await self.close()

    async def open(self, dsn: str, workers: int) -> None:
        from waypost.engine.core import Engine
        from waypost.model.settings import Settings

        self.dsn = dsn
        settings = Settings(database_url=dsn, worker_name="bench")
        self.engine = await Engine.open(settings, migrate_schema=False,
                                        pool_size=max(4, 2 * workers))
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None

    async def close(self) -> None:
        await self.engine.close()

    def _key(self, i: int) -> str | None:
        return f"tenant-{i % self.keys}" if self.keys else None

    async def enqueue_one(self, t0: float) -> None:
        from waypost.store import runs
        from waypost.store.pool import RawJson

        run_id = uuid.uuid4()
        self.t0[run_id] = t0
        await runs.enqueue(
            self.engine.pool, namespace=NAMESPACE, task=self.task, run_id=run_id,
            payload=RawJson("{}"), priority=None, idempotency_key=None,
            concurrency_key=self._key(len(self.t0)), trace_id=secrets.token_hex(16),
            source="bench")

    async def enqueue_many(self, n: int) -> None:
        from waypost.store import runs
        from waypost.store.pool import RawJson

        payload = RawJson("{}")
        await runs.enqueue_bulk(
            self.engine.pool, namespace=NAMESPACE, task=self.task,
            run_ids=[uuid.uuid4() for _ in range(n)], priorities=[None] * n,
            payloads=[payload] * n, idempotency_keys=[None] * n,
            concurrency_keys=[self._key(i) for i in range(n)],
            trace_ids=[secrets.token_hex(16) for _ in range(n)], source="bench")

    async def start_workers(self, n: int, batch: int, on_start: OnStart,
                            *, drain_count: int | None = None) -> None:
        from waypost.store import pool as store_pool

        self._stop = asyncio.Event()
        self._wakes = [asyncio.Event() for _ in range(n)]
        self._idle: set[int] = set()
        self._done = 0
        self._drain_count = drain_count
        listener = await store_pool.connect(self.dsn)

        def wake_all(*_: Any) -> None:
            for w in self._wakes:
                w.set()

        def wake_one(*_: Any) -> None:
            # One NOTIFY wakes one idle loop, like the dispatcher's single claimer; a
            # loop that claims a full batch wakes the next (there may be more).
            idle = self._idle
            self._wakes[idle.pop() if idle else 0].set()

        await listener.add_listener("waypost_ready", wake_one)
        self._listener = listener
        self._wake_all = wake_all
        self._wake_one = wake_one
        self._tasks = [asyncio.create_task(self._loop(i, batch, on_start)) for i in range(n)]
        # The dispatcher's companion: rotate or vacuum run_queue once it holds enough dead tuples.
        from waypost.engine import hot_table
        self._tasks.append(asyncio.create_task(hot_table.clean_loop(self.engine, self._stop)))

    async def _loop(self, i: int, batch: int, on_start: OnStart) -> None:
        from waypost import aiotime
        from waypost.engine.dispatcher import build_launch
        from waypost.store import runs
        from waypost.store.pool import RawJson

        engine = self.engine
        lease = engine.settings.lease_seconds
        result = RawJson("null")
        wake = self._wakes[i]
        pending: list[runs.Ack] = []
        while not self._stop.is_set():
            wake.clear()
            if self.ack_each:
                claimed = await runs.claim(engine.pool, limit=batch, lease_seconds=lease,
                                           worker=f"bench-{i}")
            else:
                acked, claimed = await runs.ack_and_claim(
                    engine.pool, acks=pending, limit=batch, lease_seconds=lease,
                    worker=f"bench-{i}")
                assert len(acked) == len(pending), "a completion was refused"
                self._count(len(pending))
                pending = []
            if claimed:
                if len(claimed) == batch:
                    self._wake_one()  # there may be more: another loop claims meanwhile
                for c in claimed:
                    build_launch(engine, c)  # what the dispatcher hands to a backend
                    on_start(self.t0.pop(c.run_id, 0.0))
                if self.ack_each:
                    oks = await asyncio.gather(*(
                        engine.completions.complete(c.run_id, c.claim_token, result)
                        for c in claimed))
                    assert all(oks), "a completion was refused"
                    self._count(len(claimed))
                else:
                    pending = [(c.run_id, c.claim_token, result) for c in claimed]
                continue
            self._idle.add(i)
            await aiotime.sleep(0.5, wake)
            self._idle.discard(i)
        if pending:
            await runs.complete_many(engine.pool, pending)
            self._count(len(pending))

    def _count(self, n: int) -> None:
        self._done += n
        if self._drain_count is not None and self._done >= self._drain_count:
            self._stop.set()
            self._wake_all()

    async def wait_workers(self) -> None:
        await asyncio.gather(*self._tasks)
        await self._close_listener()

    async def stop_workers(self) -> None:
        self._stop.set()
        self._wake_all()
        await self.wait_workers()

    async def _close_listener(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def done_count(self, conn: asyncpg.Connection) -> int:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM waypost.runs WHERE status = 'succeeded'")
        return n


# --- pgqueuer -----------------------------------------------------------------

class PgQueuer(System):
    name = "pgqueuer"

    async def install(self, dsn: str) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    async def open(self, dsn: str, workers: int) -> None:
        from pgqueuer import AsyncpgPoolDriver, Queries

        self.dsn = dsn
        self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max(4, 2 * workers))
        self.queries = Queries(AsyncpgPoolDriver(self.pool))
        self._conns: list[asyncpg.Connection] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def close(self) -> None:
        await self.pool.close()

    async def enqueue_one(self, t0: float) -> None:
        await self.queries.enqueue("noop", json.dumps({"t": t0}).encode(), 0)

    async def enqueue_many(self, n: int) -> None:
        payload = b"{}"
        await self.queries.enqueue(["noop"] * n, [payload] * n, [0] * n)

    async def start_workers(self, n: int, batch: int, on_start: OnStart,
                            *, drain_count: int | None = None) -> None:
        from pgqueuer import AsyncpgDriver, Queries, QueueManager
        from pgqueuer.domain.types import QueueExecutionMode

        self._qms = []
        for _ in range(n):
            conn = await asyncpg.connect(self.dsn)
            self._conns.append(conn)
            qm = QueueManager(Queries(AsyncpgDriver(conn)))

            @qm.entrypoint("noop")
            async def noop(job: Any) -> None:
                t0 = json.loads(job.payload).get("t", 0.0) if job.payload else 0.0
                on_start(t0)

            self._qms.append(qm)
        mode = QueueExecutionMode.drain if drain_count is not None else (
            QueueExecutionMode.continuous)
        self._tasks = [asyncio.create_task(qm.run(batch_size=batch, mode=mode))
                       for qm in self._qms]

    async def wait_workers(self) -> None:
        await asyncio.gather(*self._tasks)
        for conn in self._conns:
            with contextlib.suppress(Exception):
                await conn.close()
        self._conns = []

    async def stop_workers(self) -> None:
        for qm in self._qms:
            qm.shutdown.set()
        await self.wait_workers()

    async def done_count(self, conn: asyncpg.Connection) -> int:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
        return n


# --- procrastinate ------------------------------------------------------------

class Procrastinate(System):
    name = "procrastinate"

    def _app(self, dsn: str, max_size: int) -> Any:
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=dsn, min_size=1, max_size=max_size))
        self._on_start: OnStart = lambda t0: None

        @app.task(name="noop")
        async def noop(t: float = 0.0) -> None:
            self._on_start(t)

        self._noop = noop
        return app

    async def install(self, dsn: str) -> None:
        app = self._app(dsn, 2)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def open(self, dsn: str, workers: int) -> None:
        self.app = self._app(dsn, max(4, 2 * workers))
        await self.app.open_async()
        self._task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue_one(self, t0: float) -> None:
        await self._noop.defer_async(t=t0)

    async def enqueue_many(self, n: int) -> None:
        await self._noop.batch_defer_async(*({} for _ in range(n)))

    async def start_workers(self, n: int, batch: int, on_start: OnStart,
                            *, drain_count: int | None = None) -> None:
        self._on_start = on_start
        self._task = asyncio.create_task(self.app.run_worker_async(
            concurrency=n, wait=drain_count is None, install_signal_handlers=False,
            listen_notify=True))

    async def wait_workers(self) -> None:
        assert self._task is not None
        await self._task

    async def stop_workers(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def done_count(self, conn: asyncpg.Connection) -> int:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        return n


SYSTEMS: dict[str, Callable[[], System]] = {
    "waypost": Waypost, "pgqueuer": PgQueuer, "procrastinate": Procrastinate,
}


def now() -> float:
    return time.perf_counter()
