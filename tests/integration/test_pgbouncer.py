"""waypost behind a real PgBouncer in transaction mode (Debian's package, `make deps`).

The engine's pool goes through PgBouncer (``WAYPOST_DATABASE_URL``); LISTEN and the
migration lock use a direct session (``WAYPOST_DATABASE_SESSION_URL``); the role's
search_path names the schema, as docs/scale.md tells an operator to set it. A run
of the hello example then goes all the way through: trigger, claim, the runner's
checkpoint, log and completion through the coordinator, and its event log, while
Postgres sees no more server connections than PgBouncer's pool holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from examples import hello
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone
from waypost.store import events as store_events
from waypost.store.embedded import free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")
POOL_SIZE = 3


@pytest.fixture
def pgbouncer(database_url: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test database; its DSN."""
    if not PGBOUNCER.exists():
        pytest.fail(f"{PGBOUNCER} is missing: install Debian's pgbouncer with `make deps`")
    target = urlsplit(database_url)
    database = target.path.lstrip("/")
    port = free_port()
    # PgBouncer refuses to run as root; it runs as the user the embedded Postgres
    # runs as, from a folder that user can read.
    folder = Path(tempfile.mkdtemp(prefix="waypost-pgbouncer-", dir="/var/tmp"))
    os.chmod(folder, 0o755)
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(f"""
[databases]
{database} = host={target.hostname} port={target.port} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 200
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
""")
    proc = subprocess.Popen([*run_as, str(PGBOUNCER), str(folder / "pgbouncer.ini")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield f"postgresql://{target.username}@127.0.0.1:{port}/{database}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


async def _ready(dsn: str) -> None:
    for _ in range(100):
        try:
            conn = await asyncpg.connect(dsn, statement_cache_size=0)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
            continue
        await conn.close()
        return
    pytest.fail(f"PgBouncer did not answer at {dsn}")


@pytest.fixture
async def behind_pgbouncer(
    database_url: str, pgbouncer: str
) -> AsyncIterator[Standalone]:
    direct = await asyncpg.connect(database_url)
    try:
        # What docs/scale.md asks of an operator: the role's search_path, since
        # PgBouncer does not pass a client's search_path on.
        database = urlsplit(database_url).path.lstrip("/")
        await direct.execute(
            f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" SET search_path = waypost')
    finally:
        await direct.close()
    # (Set before PgBouncer opens its server sessions: a session reads it when it starts.)
    await _ready(pgbouncer)
    app = await Standalone(
        # Generous leases: 20 runner processes start at once on a shared machine.
        settings(pgbouncer, database_session_url=database_url, heartbeat_interval_seconds=2.0,
                 missed_heartbeats=15, start_timeout_seconds=120),
        ProcessBackend(max_parallel=4)).start()
    try:
        await app.register(hello.hello)
        yield app
    finally:
        await app.stop()


async def _server_connections(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")
        return n
    finally:
        await conn.close()


async def test_runs_go_through_pgbouncer_in_transaction_mode(
    behind_pgbouncer: Standalone, database_url: str
) -> None:
    engine = behind_pgbouncer.engine
    assert engine.settings.pooled
    # Concurrent transactions on the engine's pool (10 client connections):
    # PgBouncer multiplexes them onto its few server connections.
    triggered = await asyncio.gather(*(
        control.trigger(engine, "default", "hello",
                        TriggerRequest(payload={"name": f"n{i}"},
                                       idempotency_key=f"k{i}-{uuid.uuid4().hex}"))
        for i in range(20)))
    seen = await _server_connections(database_url)
    # PgBouncer's pool, and two LISTEN sessions (the dispatcher's, and the
    # coordinator's for warm-runner wake-ups); nothing else connects here.
    assert seen <= POOL_SIZE + 2, seen
    for run, _created in triggered:
        done = await wait_for_status(engine, run.id, {RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                      RunStatus.DEAD_LETTERED}, timeout=180)
        assert done.status is RunStatus.SUCCEEDED, done.error
    detail = await control.get(engine, triggered[0][0].id, details=True)
    assert [c.key for c in detail.checkpoints] == ["greeting"]
    assert detail.result is not None and detail.result["greeting"] == "Hello, n0!"
    # Through the store's reader: a status row carries its attempt events (0025).
    found, _ = await store_events.for_run(engine.pool, triggered[0][0].id, store_events.START)
    kinds = [e.kind for e in found]
    assert {"status", "attempt_started", "checkpoint", "log", "attempt_finished"} <= set(kinds)
    assert await _server_connections(database_url) <= POOL_SIZE + 2


async def test_a_session_url_is_what_listen_and_migrations_use(
    database_url: str, pgbouncer: str
) -> None:
    """Without WAYPOST_DATABASE_SESSION_URL everything uses the one URL as before."""
    plain = settings(database_url)
    assert (plain.session_url, plain.pooled) == (database_url, False)
    split = settings(pgbouncer, database_session_url=database_url)
    assert (split.session_url, split.pooled) == (database_url, True)
