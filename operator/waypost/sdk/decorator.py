"""The ``@task`` decorator and the definitions it records.

A task is a function ``fn(ctx, payload)``, sync or async, decorated with
``@task(...)``. The decorator does not change how the function behaves when
called directly (so it can be unit-tested like any function); it attaches a
:class:`TaskDefinition` and adds the task to a process-wide registry that
``waypost dev`` and the runner use to find tasks.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from waypost.sdk.quantity import format_duration, parse_duration, parse_memory_quantity
from waypost.sdk.retry import FAILURE_TYPES, Retry

__all__ = [
    "FAILURE_TYPES",
    "Queue",
    "Retry",
    "Schedule",
    "Task",
    "TaskDefinition",
    "parse_duration",
    "parse_memory_quantity",
    "registered_tasks",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MEMORY = "512Mi"

# A task id is used in URLs, Kubernetes label values and object names, so it
# follows the strictest of those: an RFC 1123 DNS label.
_TASK_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TASK_ID_MAX = 63


def _optional_positive_int(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: must be at least 1, got {value}")


@dataclass(frozen=True)
class Queue:
    """Which queue a task's runs wait in, and how many may run at once.

    ``name`` defaults to the task id. ``max_concurrency`` caps running
    attempts of the whole queue; ``per_key_concurrency`` caps running
    attempts per ``concurrencyKey`` (a tenant, a user), so that one key with
    many queued runs cannot starve the others. ``None`` means unlimited.
    """

    name: str | None = None
    max_concurrency: int | None = None
    per_key_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError("Queue.name: must be a non-empty string or None")
        _optional_positive_int("Queue.max_concurrency", self.max_concurrency)
        _optional_positive_int("Queue.per_key_concurrency", self.per_key_concurrency)

    def as_dict(self) -> dict[str, Any]:
        """The ``queue`` block of the Task resource; unset limits are left out."""
        block = {
            "name": self.name,
            "maxConcurrency": self.max_concurrency,
            "perKeyConcurrency": self.per_key_concurrency,
        }
        return {key: value for key, value in block.items() if value is not None}


_MISSED_RUNS = {"skip": "Skip", "catchup": "Catchup"}
_SCHEDULE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Schedule:
    """A cron schedule that triggers runs of the task it is declared on.

    ``cron`` is five fields or a macro such as ``"@hourly"``, read in
    ``timezone`` (an IANA name). Every run it triggers gets ``payload``.
    ``missed_runs`` says what happens to ticks missed while nothing ran:
    ``"skip"`` them, or ``"catchup"`` (at most ``catchup_limit`` of them).
    ``name`` (used by ``waypost schedules trigger TASK NAME``) defaults to
    ``schedule-1``, ``schedule-2``, … in declaration order::

        @task(schedules=[Schedule(cron="0 2 * * *", timezone="Europe/Berlin", name="nightly")])
    """

    cron: str
    timezone: str = "UTC"
    payload: Any = None
    missed_runs: str = "skip"
    name: str | None = None
    catchup_limit: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str) or not (
            self.cron.strip().startswith("@") or len(self.cron.split()) == 5
        ):
            raise ValueError(f"Schedule.cron: {self.cron!r} is not five cron fields or a "
                             "macro such as '@hourly'")
        if not isinstance(self.timezone, str) or not self.timezone:
            raise ValueError("Schedule.timezone: must be an IANA time zone name, e.g. 'UTC'")
        if str(self.missed_runs).lower() not in _MISSED_RUNS:
            raise ValueError(f"Schedule.missed_runs: {self.missed_runs!r} is not "
                             "'skip' or 'catchup'")
        if self.name is not None and (
            not isinstance(self.name, str) or len(self.name) > 63
            or not _SCHEDULE_NAME_RE.match(self.name)
        ):
            raise ValueError(f"Schedule.name: {self.name!r} must be 1-63 lowercase letters, "
                             "digits or '-'")
        if isinstance(self.catchup_limit, bool) or not isinstance(self.catchup_limit, int) or (
            not 1 <= self.catchup_limit <= 1000
        ):
            raise ValueError("Schedule.catchup_limit: must be an integer from 1 to 1000")

    def as_dict(self, index: int = 0) -> dict[str, Any]:
        """The schedule as JSON, with the keys of the ``Task`` resource's ``schedules``."""
        block: dict[str, Any] = {
            "name": self.name or f"schedule-{index + 1}",
            "cron": self.cron.strip(),
            "timezone": self.timezone,
        }
        if self.payload is not None:
            block["payload"] = self.payload
        block["missedRuns"] = _MISSED_RUNS[str(self.missed_runs).lower()]
        block["catchupLimit"] = self.catchup_limit
        return block


@dataclass(frozen=True)
class TaskDefinition:
    """Everything the decorator recorded about a task.

    ``entrypoint`` is ``"module:qualname"``, what the runner imports to run
    it. ``memory`` is the Kubernetes quantity as written; ``memory_bytes``
    its value. ``timeout_seconds`` is ``None`` when the task sets none (the
    engine's default applies).
    """

    id: str
    entrypoint: str
    retry: Retry = field(default_factory=Retry)
    memory: str = DEFAULT_MEMORY
    timeout_seconds: float | None = None
    queue: Queue = field(default_factory=Queue)
    is_async: bool = True
    description: str | None = None
    schedules: tuple[Schedule, ...] = ()

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes."""
        return parse_memory_quantity(self.memory)

    @property
    def queue_name(self) -> str:
        """The queue's name: the one set on :class:`Queue`, else the task id."""
        return self.queue.name or self.id

    def as_dict(self, *, image: str | None = None) -> dict[str, Any]:
        """The ``spec`` of the Task resource this declaration stands for.

        The one conversion from ``@task(...)`` to a Task: ``waypost dev``
        registers it, ``waypost manifests`` prints it, and the operator's
        schema accepts it unchanged. ``image`` is the container image of the
        task code (Pods need one; local processes do not).
        """
        spec: dict[str, Any] = {"entrypoint": self.entrypoint}
        if image is not None:
            spec["image"] = image
        spec["resources"] = {"memory": self.memory}
        spec["retry"] = self.retry.as_dict()
        spec["queue"] = self.queue.as_dict()
        if self.timeout_seconds is not None:
            spec["timeout"] = {"maxDuration": format_duration(self.timeout_seconds)}
        if self.schedules:
            spec["schedules"] = [s.as_dict(i) for i, s in enumerate(self.schedules)]
        return spec


class Task(Generic[P, R]):
    """A decorated task function.

    Calling it calls the original function unchanged; ``definition`` holds
    the :class:`TaskDefinition` and ``fn`` the original function.
    """

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str

    def __init__(self, fn: Callable[P, R], definition: TaskDefinition) -> None:
        self.fn = fn
        self.definition = definition
        functools.update_wrapper(self, fn)

    @property
    def id(self) -> str:
        """The task id."""
        return self.definition.id

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<waypost task {self.definition.id!r} {self.definition.entrypoint}>"


_registry: dict[str, Task[..., Any]] = {}
_registry_lock = threading.Lock()


def registered_tasks() -> tuple[Task[..., Any], ...]:
    """Every task decorated so far in this process, in import order."""
    with _registry_lock:
        return tuple(_registry.values())


def get_registered_task(task_id: str) -> Task[..., Any] | None:
    """The registered task with this id, or ``None``."""
    with _registry_lock:
        return _registry.get(task_id)


def _register(decorated: Task[..., Any]) -> None:
    definition = decorated.definition
    with _registry_lock:
        existing = _registry.get(definition.id)
        if existing is not None and existing.definition.entrypoint != definition.entrypoint:
            # Celery and Trigger.dev let the later definition win; say so, because
            # two functions sharing an id is almost always a copy-paste mistake.
            warnings.warn(
                f"task id {definition.id!r} was already registered by "
                f"{existing.definition.entrypoint}; {definition.entrypoint} replaces it",
                stacklevel=4,
            )
        _registry[definition.id] = decorated


def _default_task_id(fn: Callable[..., Any]) -> str:
    return fn.__name__.replace("_", "-").lower()


def _validate_task_id(task_id: str) -> str:
    if not isinstance(task_id, str):
        raise ValueError(f"task id: expected a string, got {type(task_id).__name__}")
    if len(task_id) > _TASK_ID_MAX or not _TASK_ID_RE.match(task_id):
        raise ValueError(
            f"task id: {task_id!r} must be 1-{_TASK_ID_MAX} lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (it is used in URLs and Kubernetes names)"
        )
    return task_id


def _build_definition(
    fn: Callable[..., Any],
    *,
    id: str | None,
    retry: Retry | None,
    memory: str,
    timeout: str | float | None,
    queue: Queue | None,
    description: str | None,
    schedules: Sequence[Schedule] = (),
) -> TaskDefinition:
    if not callable(fn):
        raise TypeError(f"@task must decorate a function, got {type(fn).__name__}")
    task_id = _validate_task_id(id if id is not None else _default_task_id(fn))
    if retry is not None and not isinstance(retry, Retry):
        raise ValueError(f"retry: expected a waypost.Retry, got {type(retry).__name__}")
    if queue is not None and not isinstance(queue, Queue):
        raise ValueError(f"queue: expected a waypost.Queue, got {type(queue).__name__}")
    parse_memory_quantity(memory, field="memory")
    for item in schedules:
        if not isinstance(item, Schedule):
            raise ValueError(f"schedules: expected waypost.Schedule items, got "
                             f"{type(item).__name__}")
    names = [s.as_dict(i)["name"] for i, s in enumerate(schedules)]
    if len(set(names)) != len(names):
        raise ValueError(f"schedules: names must differ, got {names}")
    timeout_seconds = None if timeout is None else parse_duration(timeout, field="timeout")
    doc = description if description is not None else inspect.getdoc(fn)
    return TaskDefinition(
        id=task_id,
        entrypoint=f"{fn.__module__}:{fn.__qualname__}",
        retry=retry if retry is not None else Retry(),
        memory=memory,
        timeout_seconds=timeout_seconds,
        queue=queue if queue is not None else Queue(),
        is_async=inspect.iscoroutinefunction(fn),
        description=doc.splitlines()[0] if doc else None,
        schedules=tuple(schedules),
    )


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    id: str | None = None,
    retry: Retry | None = None,
    memory: str = DEFAULT_MEMORY,
    timeout: str | float | None = None,
    queue: Queue | None = None,
    description: str | None = None,
    schedules: Sequence[Schedule] = (),
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    id: str | None = None,
    retry: Retry | None = None,
    memory: str = DEFAULT_MEMORY,
    timeout: str | float | None = None,
    queue: Queue | None = None,
    description: str | None = None,
    schedules: Sequence[Schedule] = (),
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a durable task.

    ``fn(ctx, payload)`` may be sync or async. ``id`` defaults to the
    function name with ``_`` replaced by ``-``. ``memory`` is a Kubernetes
    quantity (default ``"512Mi"``); ``timeout`` is seconds or a duration such
    as ``"15m"``; ``schedules`` are :class:`Schedule` crons that trigger it.
    Invalid settings raise ``ValueError`` naming the field, at import time::

        @task(id="process-order", retry=Retry(max_attempts=5), memory="512Mi")
        async def process_order(ctx, payload): ...
    """

    def decorate(inner: Callable[P, R]) -> Task[P, R]:
        definition = _build_definition(
            inner,
            id=id,
            retry=retry,
            memory=memory,
            timeout=timeout,
            queue=queue,
            description=description,
            schedules=schedules,
        )
        decorated = Task(inner, definition)
        _register(decorated)
        return decorated

    if fn is not None:
        return decorate(fn)
    return decorate
