"""The retry policy: what happens after a failed attempt.

The policy is the Task's ``retry`` block (:class:`RetrySpec`, the CRD schema);
these functions read it. The backoff formula is the SDK's
(:func:`waypost.sdk.retry.backoff_delay`), reached through
:meth:`waypost.model.task.Backoff.delay`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from waypost.model.enums import FailureType
from waypost.model.task import RetrySpec
from waypost.sdk import quantity


class Outcome(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"  # retries exhausted
    FAIL = "fail"  # not retryable: fail at once


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay_seconds: float = 0.0
    memory_bytes: int = 0


def next_delay(spec: RetrySpec, failed_attempts: int, rng: random.Random | None = None) -> float:
    """Backoff before the next attempt, after ``failed_attempts`` (≥ 1) failures."""
    # No draw without jitter: the sequence of a seeded rng stays as it was.
    fraction = (rng or random).random() if spec.backoff.jitter else 0.5
    return spec.backoff.delay(failed_attempts, random_fraction=fraction)


def next_memory(spec: RetrySpec, current_bytes: int, failure: FailureType) -> int:
    """Memory for the next attempt: grown after an OOM kill when the policy says so."""
    oom = spec.oom
    if failure != FailureType.OOM or oom.memory_multiplier is None:
        return current_bytes
    grown = int(current_bytes * oom.memory_multiplier)
    if oom.memory_ceiling is not None:
        grown = min(grown, quantity.parse_memory_quantity(oom.memory_ceiling))
    return max(grown, current_bytes)


def decide(
    spec: RetrySpec,
    *,
    attempts_used: int,
    failure: FailureType,
    retryable: bool,
    memory_bytes: int,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after attempt number ``attempts_used`` of this budget failed."""
    if not retryable or failure not in spec.retry_on:
        return Decision(Outcome.FAIL, memory_bytes=memory_bytes)
    if attempts_used >= spec.max_attempts:
        return Decision(Outcome.DEAD_LETTER, memory_bytes=memory_bytes)
    return Decision(
        Outcome.RETRY,
        delay_seconds=next_delay(spec, attempts_used, rng),
        memory_bytes=next_memory(spec, memory_bytes, failure),
    )
