"""POST /v1/runs/bulk: requeue, cancel and replay by filter in bounded batches, dry
runs, idempotent repeats and bad filters, over HTTP against real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples import flaky, hello, ledger
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone


@pytest.fixture
async def idle(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Standalone, list[str]]]:
    """Three dead-lettered runs of always-fails and one succeeded hello, then a
    coordinator without a dispatcher, so that nothing moves unless the test moves it."""
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    busy = await Standalone(settings(database_url, missed_heartbeats=10),
                            ProcessBackend(max_parallel=4)).start()
    try:
        await busy.register(flaky.always_fails, hello.hello)
        dead = [(await control.trigger(busy.engine, "default", "always-fails",
                                       TriggerRequest(payload={"n": n})))[0].id
                for n in range(3)]
        ok, _ = await control.trigger(busy.engine, "default", "hello", TriggerRequest())
        for run_id in dead:
            await wait_for_status(busy.engine, run_id, {RunStatus.DEAD_LETTERED}, timeout=90)
        await wait_for_status(busy.engine, ok.id, {RunStatus.SUCCEEDED})
    finally:
        await busy.stop()
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        yield app, dead
    finally:
        await app.stop()


async def bulk(app: Standalone, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{app.url}/v1/runs/bulk", json=body) as resp:
        return resp.status, await resp.json()


async def statuses(app: Standalone, run_ids: list[str]) -> list[str]:
    return [str((await control.get(app.engine, uuid.UUID(r))).status)
            for r in run_ids]


async def test_requeue_cancel_replay_in_batches_and_repeats_change_nothing(
    idle: tuple[Standalone, list[str]],
) -> None:
    app, dead = idle
    only_dead = {"task": "always-fails", "deadLettered": True}
    status, dry = await bulk(app, {"action": "requeue", "filter": only_dead, "dryRun": True})
    assert status == 200 and dry["matched"] == 3 and dry["changed"] == 0
    assert await statuses(app, dead) == ["dead_lettered"] * 3
    _, by_type = await bulk(app, {"action": "requeue", "dryRun": True,
                                  "filter": {"errorType": "oom"}})
    assert by_type["matched"] == 0
    _, by_error = await bulk(app, {"action": "requeue", "dryRun": True,
                                   "filter": {"errorType": "error"}})
    assert by_error["matched"] == 3

    # Two batches of two: the cursor carries the second call on.
    # The requeues run the spec each run was triggered with (requeue.spec).
    original = {"spec": "original"}
    _, first = await bulk(app, {"action": "requeue", "filter": only_dead, "batchSize": 2,
                                "requeue": original})
    assert (first["processed"], first["changed"], first["matched"]) == (2, 2, 3)
    assert first["nextCursor"] is not None
    _, second = await bulk(app, {"action": "requeue", "filter": only_dead, "batchSize": 2,
                                 "cursor": first["nextCursor"], "requeue": original})
    assert (second["processed"], second["changed"], second["nextCursor"]) == (1, 1, None)
    assert sorted(first["runIds"] + second["runIds"]) == sorted(dead)
    assert await statuses(app, dead) == ["queued"] * 3
    for run_id in dead:
        assert (await control.get(app.engine, uuid.UUID(run_id))).spec_choice == "original"
    _, again = await bulk(app, {"action": "requeue", "filter": only_dead})
    assert (again["matched"], again["changed"]) == (0, 0)

    # Cancel the queued ones by task and status; the succeeded hello is untouched.
    _, cancelled = await bulk(app, {"action": "cancel", "filter": {"task": "always-fails"}})
    assert cancelled["changed"] == 3 and await statuses(app, dead) == ["cancelled"] * 3
    _, again = await bulk(app, {"action": "cancel", "filter": {"task": "always-fails"}})
    assert (again["matched"], again["changed"]) == (0, 0)

    # Replay the cancelled runs; repeating it makes no second replays.
    replay_filter = {"task": "always-fails", "statuses": ["cancelled"]}
    _, replayed = await bulk(app, {"action": "replay", "filter": replay_filter})
    assert replayed["changed"] == 3 and not set(replayed["runIds"]) & set(dead)
    for new_id in replayed["runIds"]:
        run = await control.get(app.engine, uuid.UUID(new_id), details=True)
        assert run.replay_of in dead and run.status is RunStatus.QUEUED
        assert run.replay is not None and run.replay.requested_by == "anonymous (bulk replay)"
    _, again = await bulk(app, {"action": "replay", "filter": replay_filter})
    assert (again["changed"], again["skipped"]) == (0, 3)


@pytest.mark.parametrize(("body", "words"), [
    ({"action": "delete"}, "action"),
    ({"action": "requeue", "filter": {"statuses": ["nope"]}}, "statuses"),
    ({"action": "requeue", "filter": {"namespace": "a\u0000b"}}, "namespace"),
    ({"action": "requeue", "filter": {"since": "2026-02-01T00:00:00"}}, "timezone"),
    ({"action": "requeue", "filter": {"errorType": "gremlins"}}, "errorType"),
    ({"action": "requeue", "batchSize": 0}, "batchSize"),
    ({"action": "requeue", "cursor": -1}, "cursor"),
    ({"action": "requeue", "requeue": {"spec": "newest"}}, "requeue.spec"),
    ({"action": "cancel", "filter": {"colour": "red"}}, "colour"),
])
async def test_bad_bulk_requests_are_refused(
    database_url: str, body: dict[str, Any], words: str
) -> None:
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        status, answer = await bulk(app, body)
    finally:
        await app.stop()
    assert status == 400
    assert words in answer["error"]["message"]


async def test_an_empty_time_window_takes_no_run(database_url: str) -> None:
    """since at or after until is a valid filter that matches nothing (its schema
    cannot say otherwise), not an error."""
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        status, answer = await bulk(app, {"action": "requeue", "dryRun": True, "filter": {
            "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}})
    finally:
        await app.stop()
    assert status == 200 and answer["matched"] == 0
