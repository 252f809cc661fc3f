"""Scheduled runs as TaskRun objects: names, labels, owner, and history pruning."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from waypost.controller.schedule_runs import schedule_of, taskrun_for, taskrun_name, to_prune
from waypost.store.runs import ScheduledRun


def _run(key: str | None = "schedule:every-minute:2026-11-25T03:04:00+00:00") -> ScheduledRun:
    return ScheduledRun(uuid.UUID("12345678-1234-4234-8234-1234567890ab"), "team-a", "report",
                        {"x": 1}, key, datetime(2026, 11, 25, 3, 4, 0, 120000, tzinfo=UTC))


def test_name_labels_owner_and_idempotency_key() -> None:
    run = _run()
    assert schedule_of(run) == "every-minute"
    assert taskrun_name(run) == "report-every-minute-202611250304-890ab"
    body = taskrun_for(run, "uid-1")
    assert body["metadata"]["labels"]["waypost.dev/schedule"] == "every-minute"
    assert body["metadata"]["ownerReferences"][0] == {
        "apiVersion": "waypost.dev/v1alpha1", "kind": "Task", "name": "report", "uid": "uid-1"}
    # The create handler finds the existing run by this key instead of queueing another.
    assert body["spec"]["idempotencyKey"] == run.idempotency_key
    assert "ownerReferences" not in taskrun_for(run, None)["metadata"]
    assert schedule_of(_run("manual-key")) == "manual"


def _item(name: str, created: str, state: str | None) -> dict[str, Any]:
    status = {} if state is None else {"conditions": [{"type": "Succeeded", "status": state}]}
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def test_prune_keeps_the_newest_per_outcome_and_never_active_ones() -> None:
    items = [
        _item("s1", "2026-11-25T03:01:00Z", "True"),
        _item("s2", "2026-11-25T03:02:00Z", "True"),
        _item("s3", "2026-11-25T03:03:00Z", "True"),
        _item("f1", "2026-11-25T03:01:30Z", "False"),
        _item("f2", "2026-11-25T03:02:30Z", "False"),
        _item("active", "2026-11-25T03:00:00Z", "Unknown"),
        _item("new", "2026-11-25T03:04:00Z", None),
    ]
    doomed = to_prune(items, keep_succeeded=1, keep_failed=1)
    assert sorted(doomed) == ["f1", "s1", "s2"]
    assert to_prune(items, keep_succeeded=10, keep_failed=10) == []
