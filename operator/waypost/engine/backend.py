"""The interface between the engine and whatever runs attempts (Pods, processes)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from waypost.model.enums import FailureType
from waypost.model.task import TaskSpec

if TYPE_CHECKING:
    from waypost.engine.warm import PoolMember, WarmHub


@dataclass(frozen=True)
class AttemptLaunch:
    """Everything a backend needs to start one attempt."""

    run_id: uuid.UUID
    attempt: int
    claim_token: int
    namespace: str
    task: str
    entrypoint: str
    image: str | None
    memory_bytes: int
    timeout_seconds: float
    credential: str
    coordinator_url: str
    trace_id: str
    env: dict[str, str] = field(default_factory=dict)
    warm_pool: bool = True
    # Spec fingerprint (see waypost.engine.warm.fingerprint): warm runners of the
    # same fingerprint can take this attempt.
    fingerprint: str = ""
    # The Task's spec (for envFrom, service account) and the TaskRun object that
    # triggered the run, if any (its Pods are owned by it).
    spec: TaskSpec | None = None
    taskrun_name: str | None = None


@dataclass(frozen=True)
class PrewarmTarget:
    """A warm runner to start ahead of demand (no attempt yet): what it runs."""

    namespace: str
    task: str
    spec: TaskSpec
    fingerprint: str
    coordinator_url: str


@dataclass(frozen=True)
class AttemptExit:
    """How an attempt's worker ended, as the backend observed it.

    ``failure`` is None for a clean exit; the engine then checks that the runner
    reported a result before the worker went away.
    """

    run_id: uuid.UUID
    claim_token: int
    failure: FailureType | None
    message: str
    exit_code: int | None = None
    # The engine stopped the worker because it is shutting down, not because the
    # attempt failed: the run is requeued without spending an attempt of its budget.
    handed_over: bool = False


ExitHandler = Callable[[AttemptExit], Awaitable[None]]


@runtime_checkable
class ConcurrentStarts(Protocol):
    """A backend whose start is mostly waiting on remote calls (creating a Secret
    and a Pod): the dispatcher starts up to ``start_concurrency`` attempts of a
    claim batch at once instead of one after another. The backend keeps its own
    decisions that depend on each other (warm-pool caps) serialized."""

    start_concurrency: int


@runtime_checkable
class WarmCapable(Protocol):
    """A backend that keeps warm runners (processes, Pods) between attempts.

    The dispatcher first tries to hand a claimed attempt to an idle warm
    runner (one fenced statement); on a hit it calls :meth:`start_warm` instead
    of :meth:`ExecutionBackend.start`, so the backend can watch that attempt
    (memory, timeout, the runner's end) as it watches one it started.
    """

    def attach_warm(self, hub: WarmHub) -> None: ...

    def idle_runners(self, fingerprint: str) -> list[uuid.UUID]:
        """This backend's warm runners of ``fingerprint`` it believes idle."""
        ...

    async def start_warm(self, launch: AttemptLaunch, runner_id: uuid.UUID) -> None: ...

    def warm_members(self) -> list[PoolMember]:
        """Every live warm runner (retired ones too until their process or Pod is gone)."""
        ...

    def warm_limit(self) -> int:
        """The most warm runners it keeps in all (0: none)."""
        ...

    async def prewarm(self, target: PrewarmTarget) -> bool:
        """Start a warm runner with no attempt (see :mod:`waypost.engine.prewarm`);
        False when the caps leave no room (or the backend keeps no warm runners)."""
        ...


class ExecutionBackend(Protocol):
    """Starts and stops attempts; reports each worker's end through ``on_exit``."""

    name: str
    # The default start timeout: how long an attempt may take from its claim to its
    # runner's first heartbeat (Settings.start_timeout_seconds overrides it).
    start_timeout_seconds: float

    def set_exit_handler(self, handler: ExitHandler) -> None: ...

    def free_slots(self) -> int:
        """How many more attempts it can start now."""
        ...

    async def start(self, launch: AttemptLaunch) -> None: ...

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        """Stop the run's worker, if this backend has one; ``force`` kills it at once
        (it had its grace period already) instead of asking it to stop first."""
        ...

    async def close(self) -> None: ...
