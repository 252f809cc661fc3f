"""Stopping the engine with attempts in flight: they drain for the shutdown grace, then
the rest are handed over (requeued at once, without spending an attempt)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from examples import ledger
from tests.factories import settings
from tests.faults import fault_tasks
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone


async def test_shutdown_drains_then_hands_over(
    database_url: str, db: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    stack = await Standalone(
        settings(database_url, missed_heartbeats=10, shutdown_grace_seconds=15),
        ProcessBackend(max_parallel=2)).start()
    await stack.register(fault_tasks.fault_steps)
    quick, _ = await control.trigger(stack.engine, "default", "fault-steps", TriggerRequest(
        payload={"steps": 1, "pause": 0.3}))
    slow, _ = await control.trigger(stack.engine, "default", "fault-steps", TriggerRequest(
        payload={"steps": 2, "pause": 120}))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(stack.backend.running()) < 2:
        assert loop.time() < deadline, "the two attempts never ran together"
        await asyncio.sleep(0.05)
    await stack.stop()

    rows = {str(r["id"]): r for r in await db.fetch(
        "SELECT id, status, attempt, attempt_base, error FROM runs")}
    assert rows[quick.id]["status"] == "succeeded"  # finished within the grace
    handed = rows[slow.id]
    assert (handed["status"], handed["attempt"], handed["attempt_base"]) == ("retrying", 1, 1)
    error = handed["error"] if isinstance(handed["error"], dict) else json.loads(handed["error"])
    assert error["type"] == "lost" and "shut down" in error["message"]
    ready = await db.fetchrow("SELECT state, available_at <= now() AS due FROM run_queue "
                              "WHERE run_id = $1", handed["id"])
    assert ready is not None and ready["state"] == "ready" and ready["due"]
