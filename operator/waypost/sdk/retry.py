"""How a failed attempt is retried, and the one backoff formula of waypost.

:class:`Retry` is what ``@task(retry=...)`` takes; its :meth:`Retry.as_dict`
is the ``retry`` block of the Task resource. :func:`backoff_delay` is the only
place the exponential backoff is computed: the engine's retry of a failed
attempt (through the Task's ``retry.backoff``), the SDK's transient request
retries and the operator's reconnect loops all call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from waypost.sdk.quantity import parse_memory_quantity

#: Failure types an attempt can end with. ``error``: the task raised;
#: ``oom``: killed for exceeding its memory limit; ``timeout``: ran past its
#: timeout; ``lost``: its heartbeats stopped (Pod or node gone); ``exit``: the
#: process exited without reporting.
FAILURE_TYPES: tuple[str, ...] = ("error", "oom", "timeout", "lost", "exit")


def backoff_delay(
    failures: int,
    *,
    initial: float,
    factor: float,
    maximum: float,
    jitter: float = 0.0,
    random_fraction: float = 0.5,
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1-based).

    ``initial * factor ** (failures - 1)``, capped at ``maximum``, then spread
    by ``± jitter`` (a fraction of the delay) so that many callers failing
    together do not retry together; the result stays within ``[0, maximum]``.
    ``random_fraction`` in ``[0, 1)`` picks the point in the jitter band (0.5:
    no spread); callers inject the randomness so schedules are reproducible.
    """
    if failures < 1:
        return 0.0
    # Cap the exponent so large failure counts cannot overflow a float.
    exponent = min(failures - 1, 1024)
    try:
        base = initial * factor**exponent
    except OverflowError:
        base = maximum
    base = min(base, maximum)
    spread = base * jitter * (2.0 * random_fraction - 1.0)
    return max(0.0, min(base + spread, maximum))


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
        return backoff_delay(attempt - 1, initial=self.initial_delay, factor=self.factor,
                             maximum=self.max_delay, jitter=self.jitter,
                             random_fraction=random_fraction)

    def delay_after(self, failures: int, random_fraction: float = 0.5) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return self.delay_before(failures + 1, random_fraction)

    def as_dict(self) -> dict[str, Any]:
        """The ``retry`` block of the Task resource (its camelCase keys and shape)."""
        oom: dict[str, Any] = {}
        if self.oom_memory_multiplier is not None:
            oom["memoryMultiplier"] = self.oom_memory_multiplier
        if self.oom_memory_ceiling is not None:
            oom["memoryCeiling"] = self.oom_memory_ceiling
        return {
            "maxAttempts": self.max_attempts,
            "backoff": {
                "initialSeconds": self.initial_delay,
                "factor": self.factor,
                "maxSeconds": self.max_delay,
                "jitter": self.jitter,
            },
            "retryOn": list(self.retry_on),
            "oom": oom,
        }
