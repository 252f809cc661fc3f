"""Helpers shared by test modules: settings, store records, fake backends, waits.

Test modules import what they share from here, never from one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from examples import hello, ledger, orders
from waypost.backends.process import ProcessBackend
from waypost.engine import attempts, control
from waypost.engine.backend import AttemptExit, AttemptLaunch, ExitHandler
from waypost.engine.core import Engine
from waypost.engine.credentials import AttemptIdentity
from waypost.model.enums import RunStatus
from waypost.model.run import Run
from waypost.model.settings import Settings
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import runs, tasks
from waypost.store.pool import RawJson


def settings(database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "coordinator_port": 0,
        "heartbeat_interval_seconds": 1.0,
        "missed_heartbeats": 3,
        "poll_interval_seconds": 0.5,
        # A test that stops its engine with runs in flight hands them over at once
        # rather than waiting the 20 s default for them (test_shutdown_handover).
        "shutdown_grace_seconds": 1.0,
    }
    base.update(overrides)
    return Settings.model_validate(base)


@contextlib.asynccontextmanager
async def api_only(database_url: str, **overrides: object) -> AsyncIterator[Standalone]:
    """Engine and coordinator over HTTP without a dispatcher: the test claims."""
    app = await Standalone(settings(database_url, **overrides), dispatch=False).start()
    try:
        yield app
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def example_stack(
    database_url: str, ledger_file: Path, monkeypatch: pytest.MonkeyPatch, *,
    max_parallel: int = 2, also: Iterable[Any] = (), **overrides: object,
) -> AsyncIterator[Standalone]:
    """A running engine, coordinator and process backend with the order and hello
    examples (and the tasks in ``also``) registered and their ledger in
    ``ledger_file``. Leases are generous (10 missed heartbeats): on a loaded machine
    a runner can take seconds to start, and the tests using this are not about lost
    attempts."""
    monkeypatch.setenv(ledger.LEDGER_ENV, str(ledger_file))
    app = await Standalone(settings(database_url, missed_heartbeats=10, **overrides),
                           ProcessBackend(max_parallel=max_parallel)).start()
    try:
        await app.register(orders.process_order, hello.hello, *also)
        yield app
    finally:
        await app.stop()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a service a test started (SIGTERM, then SIGKILL after 10 s)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_for_status(
    engine: object, run_id: str | uuid.UUID, statuses: Iterable[RunStatus], timeout: float = 60
) -> Run:
    wanted = set(statuses)
    rid = uuid.UUID(str(run_id))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await control.get(engine, rid, details=True)  # type: ignore[arg-type]
        if run.status in wanted:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {rid} is {run.status} after {timeout}s, wanted {wanted}: "
                                 f"{run.error}")
        await asyncio.sleep(0.1)


async def register_task(
    db: asyncpg.Pool, name: str = "t", namespace: str = "default", **queue: int
) -> None:
    """Store a Task (the hello example's entrypoint) with ``queue`` limits in camelCase."""
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello", "queue": queue})
    await tasks.upsert(db, TaskDefinition(namespace=namespace, name=name, spec=spec))


async def enqueue(db: asyncpg.Pool, task: str = "t", **kw: object) -> uuid.UUID:
    """Queue a run of ``task``: ``priority``, ``key`` (idempotency), ``ckey`` (concurrency)."""
    run_id = uuid.uuid4()
    ok = await runs.enqueue(
        db, namespace="default", task=task, run_id=run_id, payload=RawJson("{}"),
        priority=kw.get("priority"), idempotency_key=kw.get("key"),  # type: ignore[arg-type]
        concurrency_key=kw.get("ckey"), trace_id="0" * 32, source="test",  # type: ignore[arg-type]
    )
    assert ok
    return run_id


class StalledBackend:
    """Takes attempts and does nothing with them; records launches and stops."""

    name = "stalled"
    start_timeout_seconds = 60.0

    def __init__(self) -> None:
        self.launches: list[AttemptLaunch] = []
        self.stopped: list[tuple[uuid.UUID, str]] = []

    def set_exit_handler(self, handler: ExitHandler) -> None:
        pass

    def free_slots(self) -> int:
        return 10

    async def start(self, launch: AttemptLaunch) -> None:
        self.launches.append(launch)

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        self.stopped.append((run_id, reason))

    async def close(self) -> None:
        pass

    async def launched(self, run_id: str | uuid.UUID, timeout: float = 30) -> AttemptLaunch:
        """The launch this backend got for ``run_id`` (waits for the dispatcher)."""
        rid = uuid.UUID(str(run_id))
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for launch in self.launches:
                if launch.run_id == rid:
                    return launch
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"run {rid} was not launched within {timeout}s")
            await asyncio.sleep(0.05)


@dataclass
class InMemoryBackend:
    """Completes each attempt after ``work_seconds`` via ``attempts.complete``.

    It also counts how many attempts are working at once (from start until just
    before the completion commits, a window inside the database's running
    interval), as a second check besides the sampled database counts.
    """

    engine: Engine
    slots: int = 10
    work_seconds: float = 0.005
    name: str = "in-memory"
    start_timeout_seconds: float = 60.0
    started: list[uuid.UUID] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # counters shared by all backends

    def __post_init__(self) -> None:
        self._handler: ExitHandler | None = None
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}  # attempts holding a slot
        self._all: set[asyncio.Task[None]] = set()  # until their exit is reported too
        self.shared.setdefault("active", Counter())
        self.shared.setdefault("peak", Counter())

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._handler = handler

    def free_slots(self) -> int:
        return self.slots - len(self._tasks)

    async def start(self, launch: AttemptLaunch) -> None:
        self.started.append(launch.run_id)
        task = asyncio.get_running_loop().create_task(self._work(launch))
        self._tasks[launch.run_id] = task
        self._all.add(task)
        task.add_done_callback(self._all.discard)

    async def _work(self, launch: AttemptLaunch) -> None:
        row = await self.engine.pool.fetchrow(
            "SELECT namespace, queue, concurrency_key FROM runs WHERE id = $1", launch.run_id)
        assert row is not None
        scopes = [("queue", row["namespace"], row["queue"]), ("key", row["concurrency_key"])]
        active, peak = self.shared["active"], self.shared["peak"]
        for scope in scopes:
            active[scope] += 1
            peak[scope] = max(peak[scope], active[scope])
        try:
            await asyncio.sleep(self.work_seconds)
        finally:
            # Counted down before the completion commits, so this window lies
            # inside the database's running interval of the attempt.
            for scope in scopes:
                active[scope] -= 1
        try:
            ident = self.engine.signer.verify(launch.credential)
            assert ident == AttemptIdentity(launch.run_id, launch.claim_token)
            await attempts.complete(self.engine, ident, {"run": str(launch.run_id)})
        finally:
            self._tasks.pop(launch.run_id, None)
        if self._handler is not None:
            await self._handler(AttemptExit(launch.run_id, launch.claim_token, None, "exited 0", 0))

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._all):
            with contextlib.suppress(BaseException):
                await task
