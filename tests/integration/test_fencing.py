"""Fencing: a zombie attempt cannot touch its successor's run.

The runner here is the test itself, speaking the runner protocol over HTTP with
the credentials the dispatcher issued. ``StalledBackend`` accepts attempts and
never starts anything, like a runner that froze: its heartbeats stop, the
dispatcher's own reaper fails the attempt once its lease (heartbeat interval x
missed beats, on the database clock) runs out, and the retry is claimed as a
new attempt with a new claim token. Then the first attempt "wakes up".
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import aiohttp
import asyncpg

from tests.factories import StalledBackend, settings, wait_for_status
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone


class Runner:
    """The runner protocol, spoken with one attempt's credential."""

    def __init__(self, http: aiohttp.ClientSession, url: str, credential: str) -> None:
        self.http, self.url = http, url
        self.headers = {"Authorization": f"Bearer {credential}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.url}/v1/runner/{path}", json=body,
                                     headers=self.headers) as resp:
            return resp.status, await resp.json()


async def test_zombie_attempt_gets_409_and_changes_nothing(
    database_url: str, db: asyncpg.Pool
) -> None:
    backend = StalledBackend()
    stack = await Standalone(
        settings(database_url, heartbeat_interval_seconds=0.3, missed_heartbeats=2,
                 poll_interval_seconds=0.1),
        backend,  # type: ignore[arg-type]
    ).start()
    beating: asyncio.Task[None] | None = None
    try:
        spec = TaskSpec.model_validate({
            "entrypoint": "examples.hello:hello",
            "retry": {"maxAttempts": 3, "backoff": {"initialSeconds": 0.05, "jitter": 0}},
        })
        await control.register_task(
            stack.engine, TaskDefinition(namespace="default", name="fenced", spec=spec))
        run, _ = await control.trigger(stack.engine, "default", "fenced",
                                       TriggerRequest(payload={"name": "z"}))
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: len(backend.launches) >= 1)
            zombie = Runner(http, stack.url, backend.launches[0].credential)
            status, doc = await zombie.call("GET", "attempt")
            assert status == 200 and doc["attempt"] == 1
            # Its first beat ends the start timeout: from here the heartbeat window counts.
            assert (await zombie.call("POST", "heartbeat"))[0] == 200
            assert (await zombie.call("POST", "checkpoints",
                                      {"key": "progress", "data": {"by": 1}}))[0] == 201

            # Attempt 1 stops beating: the reaper fails it as lost, the retry is claimed.
            await wait_until(lambda: len(backend.launches) >= 2, timeout=10)
            first, second = backend.launches[:2]
            assert (first.run_id, first.attempt) == (second.run_id, 1)
            assert second.attempt == 2 and second.claim_token != first.claim_token
            assert (uuid.UUID(run.id), "heartbeat lost") in backend.stopped
            lost = await db.fetchrow(
                "SELECT status, error FROM attempts WHERE run_id = $1 AND attempt = 1",
                first.run_id)
            assert lost is not None and lost["status"] == "failed"
            assert lost["error"]["type"] == "lost"

            current = Runner(http, stack.url, second.credential)

            async def beat() -> None:
                while True:
                    await current.call("POST", "heartbeat")
                    await asyncio.sleep(0.05)

            beating = asyncio.get_running_loop().create_task(beat())
            status, doc = await current.call("GET", "attempt")
            assert status == 200 and doc["attempt"] == 2
            # The successor resumes from what attempt 1 checkpointed.
            assert [(c["key"], c["data"]) for c in doc["checkpoints"]] == [
                ("progress", {"by": 1})]
            assert (await current.call("POST", "checkpoints",
                                       {"key": "progress", "data": {"by": 2}}))[0] == 201

            # The zombie wakes up: every call is refused with 409 and says why.
            refused = [
                await zombie.call("POST", "checkpoints",
                                  {"key": "progress", "data": {"by": "zombie"}}),
                await zombie.call("POST", "checkpoints", {"key": "zombie-only", "data": 1}),
                await zombie.call("POST", "heartbeat"),
                await zombie.call("POST", "logs", {"entries": [
                    {"ts": "2026-01-01T00:00:00Z", "message": "zombie line"}]}),
                await zombie.call("GET", "attempt"),
                await zombie.call("POST", "fail", {"error": {"message": "zombie failure"}}),
                await zombie.call("POST", "complete", {"result": {"by": "zombie"}}),
            ]
            for status, body in refused:
                assert status == 409, body
                assert body["error"]["code"] == "attempt_superseded"
                assert "no longer current" in body["error"]["message"]

            mid = await control.get(stack.engine, first.run_id, details=True)
            assert mid.status == RunStatus.RUNNING and mid.attempt == 2
            assert mid.checkpoints is not None
            assert [(c.key, c.data, c.attempt) for c in mid.checkpoints] == [
                ("progress", {"by": 2}, 2)]

            status, _ = await current.call("POST", "complete", {"result": {"by": 2}})
            assert status == 200
            beating.cancel()
            # After the run finished, the zombie is still refused.
            status, _ = await zombie.call("POST", "complete", {"result": {"by": "zombie"}})
            assert status == 409
            status, _ = await current.call("POST", "complete", {"result": {"by": "again"}})
            assert status == 409  # a finished attempt cannot report twice

        done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=5)
        assert done.result == {"by": 2}
        assert done.attempts is not None
        assert [(a.attempt, a.status) for a in done.attempts] == [
            (1, "failed"), (2, "succeeded")]
        assert done.checkpoints is not None
        assert [(c.key, c.data, c.attempt) for c in done.checkpoints] == [
            ("progress", {"by": 2}, 2)]
        assert await db.fetchval(
            "SELECT count(*) FROM run_events WHERE run_id = $1 AND kind = 'log'",
            first.run_id) == 0
        assert len(backend.launches) == 2  # nothing else was started
    finally:
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(BaseException):
                await beating
        await stack.stop()


async def wait_until(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
