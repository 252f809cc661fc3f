"""The interface between the engine and whatever runs attempts (Pods, processes)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from waypost.model.enums import FailureType
from waypost.model.task import TaskSpec


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
    # The Task's spec (for envFrom, service account) and the TaskRun object that
    # triggered the run, if any (its Pods are owned by it).
    spec: TaskSpec | None = None
    taskrun_name: str | None = None


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


ExitHandler = Callable[[AttemptExit], Awaitable[None]]


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
