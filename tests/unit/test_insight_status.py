"""The Task's Degraded condition for failure patterns (a pure decision)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from waypost.controller import status
from waypost.model.insights import Pattern

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
READY = {"type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
         "lastTransitionTime": "2026-11-29T11:00:00Z"}


def degraded(body: dict[str, Any]) -> dict[str, Any]:
    [cond] = [c for c in body["conditions"] if c["type"] == "Degraded"]
    return cond


def test_a_pattern_sets_degraded_with_its_reason_and_keeps_ready() -> None:
    body, changed = status.task_degraded(
        {Pattern.RETRY_STORM: "6 of 6 attempts failed", Pattern.CHECKPOINT_GAP: "ran 700 s"},
        {"conditions": [READY]}, now=NOW)
    assert changed
    cond = degraded(body)
    assert (cond["status"], cond["reason"]) == ("True", "RetryStorm")
    assert cond["message"] == "RetryStorm: 6 of 6 attempts failed; CheckpointGap: ran 700 s"
    assert READY in body["conditions"]


def test_the_same_patterns_change_nothing_and_clearing_sets_false() -> None:
    patterns = {Pattern.TIMEOUT_LOOP: "1 run timed out twice"}
    body, _ = status.task_degraded(patterns, {"conditions": [READY]}, now=NOW)
    _, changed = status.task_degraded(patterns, body, now=NOW)
    assert not changed
    cleared, changed = status.task_degraded({}, body, now=NOW)
    assert changed
    cond = degraded(cleared)
    assert (cond["status"], cond["reason"]) == ("False", "NoFailurePatterns")


def test_a_task_that_never_had_a_pattern_is_left_alone() -> None:
    _, changed = status.task_degraded({}, {"conditions": [READY]}, now=NOW)
    assert not changed


def test_reasons_are_camel_case() -> None:
    assert [p.reason for p in Pattern] == ["TimeoutLoop", "RetryStorm", "CheckpointGap",
                                           "MemoryGrowth"]
