"""Migrations: safe when processes start at once, and schema.sql matches them."""

from __future__ import annotations

import asyncio
import difflib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

import waypost.store
from tests import factories
from waypost.engine import history
from waypost.engine.clock import FakeClock
from waypost.engine.core import Engine
from waypost.model.enums import RunStatus
from waypost.store import checkpoints, dump_schema, maintenance, migrate, runs
from waypost.store import pool as store_pool
from waypost.store.embedded import EmbeddedPostgres
from waypost.store.pool import RawJson

SCHEMA_FILE = Path(waypost.store.__file__).parent / "schema.sql"


@pytest.fixture
async def empty_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    name = f"m_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield name
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_concurrent_apply_records_each_version_once(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    dsn = postgres.dsn_for(empty_database)
    shipped = [m.version for m in migrate.available()]
    assert shipped == list(range(1, len(shipped) + 1))
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        # Four processes starting at the same moment.
        applied = await asyncio.gather(*[migrate.apply(c) for c in conns])
        assert sorted(applied, key=len) == [[], [], [], shipped]
        rows = await conns[0].fetch(
            "SELECT version, count(*) OVER (PARTITION BY version) AS n "
            "FROM waypost.schema_migrations ORDER BY version")
        assert [(r["version"], r["n"]) for r in rows] == [(v, 1) for v in shipped]
        # Started again later, there is nothing left to do.
        assert await migrate.apply(conns[1]) == []
        # Nobody holds the migration lock afterwards.
        assert await conns[2].fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        for conn in conns:
            await conn.close()

    # The concurrently migrated schema is exactly the checked-in one.
    expected = dump_schema.normalize(SCHEMA_FILE.read_text())
    actual = dump_schema.normalize(dump_schema.pg_dump(postgres, empty_database))
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        "schema.sql (checked in)", "pg_dump of the migrated database"))
    assert actual == expected, (
        "operator/waypost/store/schema.sql is out of date; regenerate it with\n"
        "    python -m waypost.store.dump_schema > operator/waypost/store/schema.sql\n" + diff)


async def test_schema_file_is_the_rendered_dump(
    postgres: EmbeddedPostgres, template_database: str
) -> None:
    """The file is exactly what the generator writes (header included), so regenerating
    an up-to-date file changes nothing."""
    rendered = dump_schema.render(dump_schema.pg_dump(postgres, template_database))
    assert SCHEMA_FILE.read_text() == rendered
    assert rendered.startswith(dump_schema.HEADER)
    assert "python -m waypost.store.dump_schema > operator/waypost/store/schema.sql" in rendered


async def test_changed_or_newer_migrations_are_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE waypost.schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
            await migrate.apply(conn)
        newest = len(migrate.available())
        await conn.execute(
            "UPDATE waypost.schema_migrations SET checksum = $1 WHERE version = 1",
            migrate.available()[0].checksum)
        await conn.execute(
            "INSERT INTO waypost.schema_migrations (version, name, checksum) "
            "VALUES ($1, 'from_the_future', 'x')", newest + 1)
        with pytest.raises(migrate.MigrationError, match="newer than this waypost"):
            await migrate.apply(conn)
        # A refused start leaves the lock free for the next process.
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


async def _apply_up_to(conn: asyncpg.Connection, version: int) -> None:
    """Apply the shipped migrations 1..version, recorded as migrate.apply records them,
    so that a later migrate.apply applies only the newer ones."""
    await conn.execute("CREATE SCHEMA IF NOT EXISTS waypost")
    await conn.execute(
        "CREATE TABLE waypost.schema_migrations (version integer PRIMARY KEY, name text NOT "
        "NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    for m in migrate.available():
        if m.version > version:
            break
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path = waypost")
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO waypost.schema_migrations (version, name, checksum) "
                "VALUES ($1, $2, $3)", m.version, m.name, m.checksum)


# The enqueue statement of the release before migration 0010, verbatim: a replica
# of that release keeps enqueueing while a new one migrates (docs/migrations.md).
PREVIOUS_RELEASE_ENQUEUE = """
WITH task AS (
    SELECT namespace, name, spec, queue, memory_bytes, default_priority
    FROM tasks WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL
), inserted AS (
    INSERT INTO runs (id, namespace, task, queue, status, priority, payload,
                      idempotency_key, concurrency_key, spec, memory_bytes, trace_id,
                      source, replay_of, taskrun_name)
    SELECT $3, t.namespace, t.name, t.queue, 'queued', coalesce($4, t.default_priority),
           $5::jsonb, $6, $7, t.spec, t.memory_bytes, $8, $9, $10, $11
    FROM task t
    ON CONFLICT (namespace, task, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
    RETURNING *
), queued AS (
    INSERT INTO run_queue (run_id, seq, queue, concurrency_key, priority, state, available_at)
    SELECT id, seq, queue, concurrency_key, priority, 'ready', now() FROM inserted
    RETURNING run_id
)
SELECT i.id FROM inserted i JOIN queued q ON q.run_id = i.id
"""


async def test_queues_per_namespace_migration_moves_every_row_over(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    """Migration 0010 on a database written by the previous release: one global
    queue `hello` used by Tasks of two namespaces becomes one queue per namespace
    with the same limits; every active run's hot row points at its own namespace's
    queue; runs that can still be requeued keep a queue; nothing is lost, and
    claims and the previous release's enqueue work afterwards."""
    conn = await asyncpg.connect(postgres.dsn_for(empty_database))
    try:
        await _apply_up_to(conn, 9)
        await conn.execute("SET search_path = waypost")
        await conn.execute("""
            INSERT INTO queues (name, max_concurrency, per_key_concurrency) VALUES
                ('hello', 2, NULL), ('shared', NULL, 3), ('unused', 7, NULL);
            INSERT INTO tasks (namespace, name, spec, queue, memory_bytes) VALUES
                ('a', 'hello', '{"retry": {"maxAttempts": 3}}', 'hello', 1024),
                ('b', 'hello', '{"retry": {"maxAttempts": 3}}', 'hello', 1024),
                ('c', 'other', '{"retry": {"maxAttempts": 3}}', 'shared', 1024);
        """)
        run_ids: dict[tuple[str, str], uuid.UUID] = {}
        for namespace, task, queue, status, state in [
            ("a", "hello", "hello", "queued", "ready"),
            ("b", "hello", "hello", "queued", "ready"),
            ("b", "hello", "hello", "running", "running"),
            ("c", "other", "shared", "dead_lettered", None),
            ("c", "other", "shared", "succeeded", None),
        ]:
            run_id = uuid.uuid4()
            run_ids[(namespace, status)] = run_id
            seq = await conn.fetchval(
                "INSERT INTO runs (id, namespace, task, queue, status, spec, memory_bytes, "
                "trace_id) VALUES ($1, $2, $3, $4, $5, '{}', 1024, 't') RETURNING seq",
                run_id, namespace, task, queue, status)
            if state:
                await conn.execute(
                    "INSERT INTO run_queue (run_id, seq, queue, priority, state, available_at, "
                    "claim_token, lease_expires_at) VALUES ($1, $2, $3, 0, $4, now(), $5, "
                    "CASE WHEN $4 = 'running' THEN now() + interval '1 minute' END)",
                    run_id, seq, queue, state, 1 if state == "running" else None)
        before = await conn.fetchval("SELECT count(*) FROM runs")

        assert await migrate.apply(conn) == [m.version for m in migrate.available()
                                             if m.version >= 10]

        queues = await conn.fetch(
            "SELECT namespace, name, max_concurrency, per_key_concurrency FROM queues "
            "ORDER BY namespace, name")
        assert [tuple(r) for r in queues] == [
            ("a", "hello", 2, None), ("b", "hello", 2, None), ("c", "shared", None, 3)]
        hot = await conn.fetch(
            "SELECT r.namespace, q.namespace AS queue_namespace, q.name, h.state "
            "FROM run_queue h JOIN runs r ON r.id = h.run_id JOIN queues q ON q.id = h.queue_id "
            "ORDER BY r.namespace, h.state")
        assert [tuple(r) for r in hot] == [
            ("a", "a", "hello", "ready"), ("b", "b", "hello", "ready"),
            ("b", "b", "hello", "running")]
        assert await conn.fetchval("SELECT count(*) FROM runs") == before
        assert await conn.fetchval("SELECT count(*) FROM run_queue WHERE queue IS NOT NULL") == 0

        # The previous release's enqueue still lands in its own namespace's queue.
        old_run = uuid.uuid4()
        assert await conn.fetchval(
            PREVIOUS_RELEASE_ENQUEUE, "b", "hello", old_run, None, "{}", None, None, "t",
            "api", None, None) == old_run
        assert await conn.fetchval(
            "SELECT q.namespace FROM run_queue h JOIN queues q ON q.id = h.queue_id "
            "WHERE h.run_id = $1", old_run) == "b"

        # Claims see the moved rows: b's queue (limit 2, one running) admits one more,
        # a's queue its one run.
        claimed = await conn.fetch(
            "SELECT namespace FROM claim_runs('{}', '{}', '{}', 10, 30, 'w', NULL) "
            "WHERE NOT acked ORDER BY namespace")
        assert [r["namespace"] for r in claimed] == ["a", "b"]
    finally:
        await conn.close()


# The log append of the release before migration 0012, verbatim.
PREVIOUS_RELEASE_APPEND_LOGS = """
INSERT INTO run_logs (run_id, attempt, ts, level, message, fields)
SELECT q.run_id, q.attempt, l.ts, l.level, l.message, l.fields
FROM run_queue q,
     unnest($3::timestamptz[], $4::text[], $5::text[], $6::jsonb[]) AS l(ts, level, message, fields)
WHERE q.run_id = $1 AND q.claim_token = $2 AND q.state = 'running'
"""


async def test_run_events_migration_keeps_logs_and_the_previous_release_logging(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    """Migration 0012 on a database written by the previous release: its log lines
    become log events, and a coordinator of that release can still append lines
    (they reach the event log) while a new replica is rolling out."""
    conn = await asyncpg.connect(postgres.dsn_for(empty_database))
    try:
        await _apply_up_to(conn, 11)
        await conn.execute("SET search_path = waypost")
        await conn.execute("INSERT INTO queues (namespace, name) VALUES ('a', 'q')")
        run_id = uuid.uuid4()
        seq = await conn.fetchval(
            "INSERT INTO runs (id, namespace, task, queue, status, spec, memory_bytes, "
            "trace_id, attempt) VALUES ($1, 'a', 't', 'q', 'running', '{}', 1024, 't', 1) "
            "RETURNING seq", run_id)
        await conn.execute(
            "INSERT INTO run_queue (run_id, seq, queue_id, priority, state, available_at, "
            "attempt, claim_token, lease_expires_at) SELECT $1, $2, id, 0, 'running', now(), "
            "1, 7, now() + interval '1 minute' FROM queues", run_id, seq)
        now = datetime.now(UTC)
        await conn.execute(PREVIOUS_RELEASE_APPEND_LOGS, run_id, 7, [now], ["info"],
                           ["before the upgrade"], ['{"n": 1}'])

        assert await migrate.apply(conn) == [12] + [
            m.version for m in migrate.available() if m.version > 12]

        status = await conn.execute(PREVIOUS_RELEASE_APPEND_LOGS, run_id, 7, [now], ["warning"],
                                    ["during the upgrade"], ['{"n": 2}'])
        assert status == "INSERT 0 1"  # the old coordinator sees its line stored
        events = await conn.fetch(
            "SELECT attempt, data FROM run_events WHERE run_id = $1 AND kind = 'log' "
            "ORDER BY tx, id", run_id)
        data = [json.loads(e["data"]) for e in events]  # no JSON codec on this connection
        assert [(e["attempt"], d["message"], d["level"], d["fields"])
                for e, d in zip(events, data, strict=True)] == [
            (1, "before the upgrade", "info", {"n": 1}),
            (1, "during the upgrade", "warning", {"n": 2})]
    finally:
        await conn.close()


# The Task upsert of the release before migration 0014 (no retain_seconds), verbatim.
PREVIOUS_RELEASE_UPSERT_TASK = """
WITH queue AS (
    INSERT INTO queues (namespace, name, max_concurrency, per_key_concurrency)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (namespace, name) DO UPDATE
        SET max_concurrency = excluded.max_concurrency,
            per_key_concurrency = excluded.per_key_concurrency,
            updated_at = now()
)
INSERT INTO tasks (namespace, name, spec, queue, memory_bytes, default_priority, generation)
VALUES ($1, $5, $6::jsonb, $2, $7, 0, 1)
ON CONFLICT (namespace, name) DO UPDATE
    SET spec = excluded.spec,
        queue = excluded.queue,
        memory_bytes = excluded.memory_bytes,
        default_priority = excluded.default_priority,
        generation = excluded.generation,
        deleted_at = NULL,
        updated_at = now()
RETURNING namespace, name, spec, generation;
"""


async def test_history_retention_migration_on_a_filled_database(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    """Migration 0014 on a database the previous release filled: every run and its
    records survive the upgrade, the previous release's Task upsert still works, and
    the new release's retention pass then expires the old finished runs by the
    installation's default, keeping dead letters and active runs."""
    dsn = postgres.dsn_for(empty_database)
    conn = await asyncpg.connect(dsn)
    try:
        await _apply_up_to(conn, 13)
    finally:
        await conn.close()
    pool = await store_pool.create_pool(dsn, max_size=2)
    try:
        spec = json.dumps({"entrypoint": "examples.hello:hello"})
        await pool.execute(PREVIOUS_RELEASE_UPSERT_TASK, "default", "t", None, None, "t", spec,
                           1024)
        # Statements unchanged by 0014 are the previous release's own.
        ids = [await factories.enqueue(pool, "t") for _ in range(30)]
        claimed = await runs.claim(pool, limit=100, lease_seconds=600, worker="old")
        tokens = {c.run_id: c.claim_token for c in claimed}
        for run_id in ids[:20]:
            assert await checkpoints.write(pool, run_id, tokens[run_id], "k", RawJson("1"))
        assert len(await runs.complete_many(
            pool, [(r, tokens[r], RawJson("1")) for r in ids[:25]])) == 25
        assert await runs.finish_failed(pool, ids[25], tokens[ids[25]],
                                        error={"type": "error", "message": "x"},
                                        status=RunStatus.DEAD_LETTERED)
        queued = await factories.enqueue(pool, "t")
        before = {t: await pool.fetchval(f"SELECT count(*) FROM {t}")
                  for t in ("runs", "attempts", "checkpoints", "run_events")}

        assert await migrate.apply_dsn(dsn) == [
            m.version for m in migrate.available() if m.version >= 14]
        assert {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in before} == before
        # A replica of the previous release still stores Tasks (retain_seconds stays NULL:
        # the installation's default).
        await pool.execute(PREVIOUS_RELEASE_UPSERT_TASK, "default", "t", None, None, "t", spec,
                           1024)
        assert await pool.fetchval("SELECT retain_seconds FROM tasks") is None

        clock = FakeClock(start=await pool.fetchval("SELECT now()"))
        engine = await Engine.open(factories.settings(dsn), clock=clock, migrate_schema=False,
                                   pool_size=2)
        try:
            clock.advance(8 * 86400)
            assert await history.expire(engine) == {"succeeded": 25}
        finally:
            await engine.close()
        left = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM runs")}
        assert left == {**{r: "running" for r in ids[26:]}, ids[25]: "dead_lettered",
                        queued: "queued"}
        assert await pool.fetchval("SELECT count(*) FROM checkpoints") == 0
    finally:
        await pool.close()


# The previous release's hot-table statements (before migration 0019), verbatim: its
# leader keeps running them against the partitioned table until it is replaced.
PREVIOUS_RELEASE_HOT_TABLE_DEAD_TUPLES = """
SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                 WHERE schemaname = current_schema() AND relname = 'run_queue'), 0)
"""
PREVIOUS_RELEASE_VACUUM_HOT_TABLE = "VACUUM (SKIP_LOCKED) run_queue"


async def test_hot_table_rotation_migration_keeps_active_runs(
    postgres: EmbeddedPostgres, empty_database: str
) -> None:
    """Migration 0019 makes run_queue a partitioned table with a live database: every
    ready and running run keeps its hot row as it was (tokens, leases, order), the
    running attempts finish through their tokens, the previous release's enqueue,
    claim and vacuum still work, and the new release rotates the table."""
    dsn = postgres.dsn_for(empty_database)
    conn = await asyncpg.connect(dsn)
    try:
        await _apply_up_to(conn, 18)
    finally:
        await conn.close()
    pool = await store_pool.create_pool(dsn, max_size=2)
    columns = ("run_id, seq, queue_id, concurrency_key, priority, state, available_at, "
               "attempt, claim_token, lease_expires_at, cancel_requested")
    try:
        await factories.register_task(pool)
        ids = [await factories.enqueue(pool, "t", priority=i % 2) for i in range(20)]
        claimed = await runs.claim(pool, limit=5, lease_seconds=600, worker="old")
        before = {r["run_id"]: dict(r)
                  for r in await pool.fetch(f"SELECT {columns} FROM run_queue")}
        assert len(before) == 20

        assert await migrate.apply_dsn(dsn) == [
            m.version for m in migrate.available() if m.version >= 19]
        after = {r["run_id"]: dict(r)
                 for r in await pool.fetch(f"SELECT {columns} FROM run_queue")}
        assert after == before
        assert await pool.fetchval("SELECT count(*) FROM run_queue_0") == 20
        # The previous release's leader: its statistics read zero, its vacuum runs.
        assert await pool.fetchval(PREVIOUS_RELEASE_HOT_TABLE_DEAD_TUPLES) == 0
        await pool.execute(PREVIOUS_RELEASE_VACUUM_HOT_TABLE)
        # Its runners finish their attempts; it enqueues and claims (statements that
        # 0019 leaves unchanged are the previous release's own).
        assert len(await runs.complete_many(
            pool, [(c.run_id, c.claim_token, RawJson("1")) for c in claimed])) == 5
        late = await factories.enqueue(pool, "t", priority=1)
        expected = await pool.fetch(
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY priority DESC, seq")
        rest = await runs.claim(pool, limit=100, lease_seconds=600, worker="old")
        assert [c.run_id for c in rest] == [r["id"] for r in expected]
        assert sorted([*[c.run_id for c in claimed], *[c.run_id for c in rest]]) == sorted(
            [*ids, late])
        # The new release's rotation moves the 16 running rows to generation 1.
        assert await maintenance.rotate_hot_table(pool, lock_timeout_ms=1000) == 16
        assert await pool.fetchval("SELECT count(*) FROM run_queue_1") == 16
    finally:
        await pool.close()
