"""An attempt handed to a pre-warmed runner that has not started yet keeps the start
timeout as its lease (issue 16 §3: start-up is not heartbeat time); one handed to a
runner that is up gets the heartbeat lease at once."""

from __future__ import annotations

import uuid

import asyncpg

from tests.factories import StalledBackend, settings
from waypost.engine import control
from waypost.model.run import TriggerRequest
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone


async def _idle_runner(db: asyncpg.Pool, fingerprint: str, *, polled: bool) -> uuid.UUID:
    runner_id = uuid.uuid4()
    # As warm_enroll_idle registers a pre-warmed runner; one that polled since was
    # seen after its registration (warm_poll).
    await db.execute(
        "INSERT INTO warm_runners (runner_id, namespace, task, fingerprint, state, "
        "idle_ttl_seconds, idle_since) VALUES ($1, 'default', 'probe', $2, 'idle', 60, now())",
        runner_id, fingerprint)
    if polled:
        await db.execute("UPDATE warm_runners SET last_seen_at = registered_at + "
                         "interval '1 second' WHERE runner_id = $1", runner_id)
    return runner_id


async def test_a_runner_still_starting_leaves_the_start_timeout_as_the_lease(
    database_url: str, db: asyncpg.Pool
) -> None:
    backend = StalledBackend()  # claims, never starts anything itself
    app = await Standalone(settings(database_url), backend).start()
    try:
        engine = app.engine
        heartbeat_lease = engine.settings.lease_seconds
        assert heartbeat_lease < 10 < backend.start_timeout_seconds
        spec = TaskSpec.model_validate({"entrypoint": "examples.warm:probe"})
        await control.register_task(engine, TaskDefinition(namespace="default", name="probe",
                                                           spec=spec))
        leases = {}
        for polled in (False, True):
            fingerprint = f"fp-{polled}"
            runner_id = await _idle_runner(db, fingerprint, polled=polled)
            created, _ = await control.trigger(engine, "default", "probe",
                                               TriggerRequest(payload={}))
            launch = await backend.launched(created.id)
            assert await engine.warm.assign(fingerprint, launch.run_id, launch.claim_token,
                                            ("default", "probe"), [runner_id]) == runner_id
            leases[polled] = await db.fetchval(
                "SELECT extract(epoch FROM lease_expires_at - now())::float8 FROM run_queue "
                "WHERE run_id = $1 AND claim_token = $2", launch.run_id, launch.claim_token)
            worker = await db.fetchval(
                "SELECT worker FROM attempts WHERE run_id = $1 AND claim_token = $2",
                launch.run_id, launch.claim_token)
            assert worker == f"warm:{runner_id}"
        # Not yet polled: the claim's start timeout stands (less the time since).
        assert leases[False] > backend.start_timeout_seconds - 10, leases
        # Up and polling: the heartbeat lease.
        assert leases[True] <= heartbeat_lease + 0.5, leases
    finally:
        await app.stop()
