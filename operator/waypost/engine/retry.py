"""The retry policy: what happens after a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from waypost.model import quantity
from waypost.model.enums import FailureType
from waypost.model.task import RetrySpec


class Outcome(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"  # retries exhausted
    FAIL = "fail"  # not retryable: fail at once


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay_seconds: float = 0.0
    memory_bytes: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    spec: RetrySpec

    def next_delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Backoff before the next attempt, after ``failed_attempts`` (≥ 1) failures.

        initial · factor^(n-1), capped at max, then spread by ±jitter so that many
        runs failing together do not retry in lockstep.
        """
        backoff = self.spec.backoff
        base = min(backoff.initial_seconds * backoff.factor ** (failed_attempts - 1),
                   backoff.max_seconds)
        if backoff.jitter == 0:
            return base
        spread = (rng or random).uniform(-backoff.jitter, backoff.jitter)
        return max(0.0, min(base * (1 + spread), backoff.max_seconds))

    def next_memory(self, current_bytes: int, failure: FailureType) -> int:
        """Memory for the next attempt: grown after an OOM kill when the policy says so."""
        oom = self.spec.oom
        if failure != FailureType.OOM or oom.memory_multiplier is None:
            return current_bytes
        grown = int(current_bytes * oom.memory_multiplier)
        if oom.memory_ceiling is not None:
            grown = min(grown, quantity.memory_bytes(oom.memory_ceiling))
        return max(grown, current_bytes)

    def decide(
        self,
        *,
        attempts_used: int,
        failure: FailureType,
        retryable: bool,
        memory_bytes: int,
        rng: random.Random | None = None,
    ) -> Decision:
        """What to do after attempt number ``attempts_used`` of this budget failed."""
        if not retryable or failure not in self.spec.retry_on:
            return Decision(Outcome.FAIL, memory_bytes=memory_bytes)
        if attempts_used >= self.spec.max_attempts:
            return Decision(Outcome.DEAD_LETTER, memory_bytes=memory_bytes)
        return Decision(
            Outcome.RETRY,
            delay_seconds=self.next_delay(attempts_used, rng),
            memory_bytes=self.next_memory(memory_bytes, failure),
        )
