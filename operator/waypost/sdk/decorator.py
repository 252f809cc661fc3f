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
import math
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from waypost.sdk.quantity import parse_duration, parse_memory_quantity

__all__ = [
    "FAILURE_TYPES",
    "Queue",
    "Retry",
    "Task",
    "TaskDefinition",
    "parse_duration",
    "parse_memory_quantity",
    "registered_tasks",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Failure types an attempt can end with. ``error``: the task raised;
#: ``oom``: killed for exceeding its memory limit; ``timeout``: ran past its
#: timeout; ``lost``: its heartbeats stopped (Pod or node gone); ``exit``: the
#: process exited without reporting.
FAILURE_TYPES: tuple[str, ...] = ("error", "oom", "timeout", "lost", "exit")

DEFAULT_MEMORY = "512Mi"

# A task id is used in URLs, Kubernetes label values and object names, so it
# follows the strictest of those: an RFC 1123 DNS label.
_TASK_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TASK_ID_MAX = 63


def _finite_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Retry:
    """When and how a failed attempt is retried.

    The delay before attempt ``n + 1`` is ``initial_delay * factor ** (n - 1)``
    capped at ``max_delay``, then spread by ``± jitter`` (a fraction of the
    delay) so that runs failing together do not retry together. After
    ``max_attempts`` attempts the run is dead-lettered.

    Only failures whose type is in ``retry_on`` are retried (see
    :data:`FAILURE_TYPES`); :class:`~waypost.sdk.errors.AbortRun` is never
    retried. On an out-of-memory kill, ``oom_memory_multiplier`` grows the
    next attempt's memory limit (up to ``oom_memory_ceiling``), and that
    attempt still resumes after the last checkpoint.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2
    retry_on: tuple[str, ...] = FAILURE_TYPES
    oom_memory_multiplier: float | None = None
    oom_memory_ceiling: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(
                f"Retry.max_attempts: expected an integer, got {type(self.max_attempts).__name__}"
            )
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(
                f"Retry.max_attempts: must be between 1 and 100, got {self.max_attempts}"
            )
        if _finite_number("Retry.initial_delay", self.initial_delay) < 0:
            raise ValueError(f"Retry.initial_delay: must be >= 0 seconds, got {self.initial_delay}")
        if _finite_number("Retry.factor", self.factor) < 1:
            raise ValueError(f"Retry.factor: must be >= 1, got {self.factor}")
        if _finite_number("Retry.max_delay", self.max_delay) < self.initial_delay:
            raise ValueError(
                f"Retry.max_delay: must be >= initial_delay ({self.initial_delay}), "
                f"got {self.max_delay}"
            )
        if not 0 <= _finite_number("Retry.jitter", self.jitter) <= 1:
            raise ValueError(f"Retry.jitter: must be a fraction between 0 and 1, got {self.jitter}")
        retry_on = self.retry_on
        if isinstance(retry_on, str) or not all(isinstance(t, str) for t in retry_on):
            raise ValueError("Retry.retry_on: expected a sequence of failure type names")
        unknown = [t for t in retry_on if t not in FAILURE_TYPES]
        if unknown:
            raise ValueError(
                f"Retry.retry_on: unknown failure type(s) {', '.join(map(repr, unknown))}; "
                f"known types are {', '.join(FAILURE_TYPES)}"
            )
        # A list passed by the user would make the frozen dataclass unhashable.
        object.__setattr__(self, "retry_on", tuple(dict.fromkeys(retry_on)))
        if self.oom_memory_multiplier is not None and (
            _finite_number("Retry.oom_memory_multiplier", self.oom_memory_multiplier) < 1
        ):
            raise ValueError(
                f"Retry.oom_memory_multiplier: must be >= 1, got {self.oom_memory_multiplier}"
            )
        if self.oom_memory_ceiling is not None:
            parse_memory_quantity(self.oom_memory_ceiling, field="Retry.oom_memory_ceiling")
            if self.oom_memory_multiplier is None:
                raise ValueError(
                    "Retry.oom_memory_ceiling: only meaningful with oom_memory_multiplier set"
                )

    def delay_before(self, attempt: int, random_fraction: float = 0.5) -> float:
        """Seconds to wait before ``attempt`` (2 or more) starts.

        ``random_fraction`` in ``[0, 1)`` picks the point in the jitter band:
        0.5 gives the undisturbed delay. Callers inject the randomness so that
        schedules are reproducible in tests.
        """
        if attempt < 2:
            return 0.0
        # Cap the exponent so large attempt numbers cannot overflow a float.
        exponent = min(attempt - 2, 1024)
        try:
            base = self.initial_delay * self.factor**exponent
        except OverflowError:
            base = self.max_delay
        base = min(base, self.max_delay)
        spread = base * self.jitter * (2.0 * random_fraction - 1.0)
        return max(0.0, base + spread)

    def as_dict(self) -> dict[str, Any]:
        """The policy as JSON, with the camelCase keys of the ``Task`` resource."""
        return {
            "maxAttempts": self.max_attempts,
            "backoff": {
                "initialSeconds": self.initial_delay,
                "factor": self.factor,
                "maxSeconds": self.max_delay,
                "jitter": self.jitter,
            },
            "retryOn": list(self.retry_on),
            "oomMemoryMultiplier": self.oom_memory_multiplier,
            "oomMemoryCeiling": self.oom_memory_ceiling,
        }


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
        """The queue settings as JSON, with the camelCase keys of the ``Task`` resource."""
        return {
            "name": self.name,
            "maxConcurrency": self.max_concurrency,
            "perKeyConcurrency": self.per_key_concurrency,
        }


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

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes."""
        return parse_memory_quantity(self.memory)

    @property
    def queue_name(self) -> str:
        """The queue's name: the one set on :class:`Queue`, else the task id."""
        return self.queue.name or self.id

    def as_dict(self) -> dict[str, Any]:
        """The definition as JSON, with the camelCase keys of the ``Task`` resource."""
        return {
            "id": self.id,
            "entrypoint": self.entrypoint,
            "retry": self.retry.as_dict(),
            "memory": self.memory,
            "memoryBytes": self.memory_bytes,
            "timeoutSeconds": self.timeout_seconds,
            "queue": {**self.queue.as_dict(), "name": self.queue_name},
            "description": self.description,
        }


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
) -> TaskDefinition:
    if not callable(fn):
        raise TypeError(f"@task must decorate a function, got {type(fn).__name__}")
    task_id = _validate_task_id(id if id is not None else _default_task_id(fn))
    if retry is not None and not isinstance(retry, Retry):
        raise ValueError(f"retry: expected a waypost.Retry, got {type(retry).__name__}")
    if queue is not None and not isinstance(queue, Queue):
        raise ValueError(f"queue: expected a waypost.Queue, got {type(queue).__name__}")
    parse_memory_quantity(memory, field="memory")
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
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a durable task.

    ``fn(ctx, payload)`` may be sync or async. ``id`` defaults to the
    function name with ``_`` replaced by ``-``. ``memory`` is a Kubernetes
    quantity (default ``"512Mi"``); ``timeout`` is seconds or a duration such
    as ``"15m"``. Invalid settings raise ``ValueError`` naming the field, at
    import time::

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
        )
        decorated = Task(inner, definition)
        _register(decorated)
        return decorated

    if fn is not None:
        return decorate(fn)
    return decorate
