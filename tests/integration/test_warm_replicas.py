"""A warm runner's poll held by one coordinator replica is woken by an assignment
the leader makes on another (LISTEN/NOTIFY), not only by its periodic recheck."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.factories import StalledBackend, settings
from waypost.coordinator.app import create_app
from waypost.engine import control, warm
from waypost.engine.core import Engine
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone


async def test_assignment_on_the_leader_wakes_a_poll_held_by_another_replica(
    database_url: str, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the NOTIFY the poll would only notice after this long.
    monkeypatch.setattr(warm, "RECHECK_SECONDS", 30.0)
    backend = StalledBackend()
    leader = await Standalone(settings(database_url), backend).start()
    replica = await Engine.open(settings(database_url), migrate_schema=False)
    runner = web.AppRunner(create_app(replica), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        spec = TaskSpec.model_validate({"entrypoint": "examples.warm:probe"})
        await control.register_task(leader.engine, TaskDefinition(
            namespace="default", name="probe", spec=spec))
        runner_id = uuid.uuid4()
        await db.execute(
            "INSERT INTO warm_runners (runner_id, namespace, task, fingerprint, state, "
            "idle_ttl_seconds, idle_since) VALUES ($1, 'default', 'probe', 'fp', 'idle', 60, "
            "now())", runner_id)
        await asyncio.sleep(1.0)  # the replica's listener is up
        credential = replica.signer.issue_runner(runner_id)
        async with aiohttp.ClientSession() as http:
            poll = asyncio.ensure_future(http.post(
                f"http://127.0.0.1:{port}/v1/runner/warm/poll", json={"waitSeconds": 20},
                headers={"Authorization": f"Bearer {credential}"}))
            await asyncio.sleep(0.5)  # the poll is held by the replica
            created, _ = await control.trigger(leader.engine, "default", "probe",
                                               TriggerRequest(payload={"n": 1}))
            launch = await backend.launched(created.id)
            started = asyncio.get_running_loop().time()
            assert await leader.engine.warm.assign(
                "fp", launch.run_id, launch.claim_token, ("default", "probe"),
                [runner_id]) == runner_id
            response = await asyncio.wait_for(poll, 15)
            waited = asyncio.get_running_loop().time() - started
            body = await response.json()
            response.release()
        assert response.status == 200, body
        assert body["assignment"]["attempt"]["runId"] == str(created.id)
        assert body["assignment"]["attempt"]["payload"] == {"n": 1}
        assert body["assignment"]["credential"].startswith("wpa.")
        assert waited < 10, waited  # woken, not the 30 s recheck
    finally:
        await runner.cleanup()
        await replica.close()
        await leader.stop()
