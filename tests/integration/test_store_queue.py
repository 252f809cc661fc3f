from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg

from tests.factories import enqueue, register_task
from waypost.engine.core import DEPOSED_EPOCH
from waypost.store import checkpoints, runs
from waypost.store.pool import RawJson


async def test_claim_respects_priority_then_age(db: asyncpg.Pool) -> None:
    await register_task(db)
    a = await enqueue(db)
    b = await enqueue(db)
    c = await enqueue(db, priority=5)
    claimed = await runs.claim(db, limit=10, lease_seconds=30, worker="w")
    assert [x.run_id for x in claimed] == [c, a, b]
    assert {x.attempt for x in claimed} == {1}
    assert len({x.claim_token for x in claimed}) == 3


async def test_complete_is_fenced(db: asyncpg.Pool) -> None:
    await register_task(db)
    run_id = await enqueue(db)
    [att] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    # The one completion path (the engine's batcher writes through complete_many).
    assert await runs.complete_many(db, [(run_id, att.claim_token + 1000, RawJson("1"))]) == []
    assert await checkpoints.write(db, run_id, att.claim_token, "k", RawJson('{"a":1}'))
    assert await runs.complete_many(
        db, [(run_id, att.claim_token, RawJson('{"ok":true}'))]) == [run_id]
    assert await runs.complete_many(db, [(run_id, att.claim_token, RawJson("2"))]) == []
    run = await runs.get(db, run_id)
    assert run is not None and run.status == "succeeded" and run.result == {"ok": True}


async def test_max_concurrency_with_parallel_claims(db: asyncpg.Pool) -> None:
    await register_task(db, maxConcurrency=3)
    for _ in range(20):
        await enqueue(db)
    results = await asyncio.gather(
        *[runs.claim(db, limit=10, lease_seconds=30, worker=f"w{i}") for i in range(5)]
    )
    assert sum(len(r) for r in results) == 3


async def test_a_former_leader_claims_nothing(db: asyncpg.Pool) -> None:
    from waypost.store import leadership

    await register_task(db)
    await enqueue(db)
    assert await leadership.record_epoch(db, 1, "replica-a")
    assert await leadership.record_epoch(db, 2, "replica-b")
    assert not await leadership.record_epoch(db, 1, "replica-a")  # never goes back
    assert await leadership.current(db) == (2, "replica-b")
    stale = await runs.claim(db, limit=10, lease_seconds=30, worker="a", leader_epoch=1)
    assert stale == []
    # A process that stopped leading claims nothing, whatever epoch is stored.
    deposed = await runs.claim(db, limit=10, lease_seconds=30, worker="a",
                               leader_epoch=DEPOSED_EPOCH)
    assert deposed == []
    fresh = await runs.claim(db, limit=10, lease_seconds=30, worker="b", leader_epoch=2)
    assert len(fresh) == 1


async def test_a_claim_carries_the_taskrun_that_triggered_the_run(db: asyncpg.Pool) -> None:
    await register_task(db)
    run_id = uuid.uuid4()
    assert await runs.enqueue(
        db, namespace="default", task="t", run_id=run_id, payload=RawJson("{}"), priority=None,
        idempotency_key="uid-1", concurrency_key=None, trace_id="0" * 32, source="taskrun",
        taskrun_name="order-1",
    )
    [claimed] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    # The Kubernetes backend owns the attempt's Pod by this TaskRun.
    assert (claimed.taskrun_name, claimed.idempotency_key) == ("order-1", "uid-1")


async def test_per_key_claim_takes_each_keys_head_in_global_order(db: asyncpg.Pool) -> None:
    await register_task(db, perKeyConcurrency=2)
    a_running = await enqueue(db, ckey="A")
    [first] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    assert first.run_id == a_running  # A now has one of its two places taken
    a = [await enqueue(db, ckey="A") for _ in range(4)]
    b = [await enqueue(db, ckey="B") for _ in range(3)]
    keyless = [await enqueue(db) for _ in range(2)]
    urgent_c = await enqueue(db, ckey="C", priority=9)
    later_c = await enqueue(db, ckey="C")

    claimed = [x.run_id for x in await runs.claim(db, limit=100, lease_seconds=30, worker="w")]
    # Priority first, then age across keys; A gets the one place it has left, B and C
    # two each, keyless runs are not limited by key.
    assert claimed == [urgent_c, a[0], b[0], b[1], *keyless, later_c]
    assert await runs.claim(db, limit=100, lease_seconds=30, worker="w") == []


async def test_per_key_claim_honours_a_small_batch_and_max_concurrency(db: asyncpg.Pool) -> None:
    await register_task(db, perKeyConcurrency=1, maxConcurrency=3)
    ids = {k: [await enqueue(db, ckey=k) for _ in range(3)] for k in "WXYZ"}
    one = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    assert [x.run_id for x in one] == [ids["W"][0]]
    more = await runs.claim(db, limit=100, lease_seconds=30, worker="w")
    # maxConcurrency 3 leaves two places; the oldest heads of the other keys take them.
    assert [x.run_id for x in more] == [ids["X"][0], ids["Y"][0]]
    assert await runs.claim(db, limit=100, lease_seconds=30, worker="w") == []


async def test_claims_read_the_hot_table_through_its_indexes_whatever_the_statistics(
    db: asyncpg.Pool,
) -> None:
    """After autoanalyze has seen a large backlog, the planner once costed the ready
    check as a sequential scan that finds a ready row at once; the heap starts with
    claimed rows, so every claim read thousands of buffers."""
    await register_task(db)
    await register_task(db, "limited", maxConcurrency=100_000)
    await register_task(db, "tenanted", perKeyConcurrency=100_000)
    await runs.enqueue_bulk(
        db, namespace="default", task="t", run_ids=[uuid.uuid4() for _ in range(4000)],
        priorities=[None] * 4000, payloads=[RawJson("{}")] * 4000,
        idempotency_keys=[None] * 4000, concurrency_keys=[None] * 4000,
        trace_ids=["0" * 32] * 4000, source="test")
    for task in ("limited", "tenanted"):
        for i in range(20):
            await enqueue(db, task, ckey=f"k{i % 5}")
    await runs.claim(db, limit=1500, lease_seconds=30, worker="w")
    await db.execute("ANALYZE run_queue")
    async with db.acquire() as conn, conn.transaction():
        rows = await conn.fetch("SELECT * FROM claim_runs('{}', '{}', '{}', 50, 30, 'w', NULL)")
        # Sequential scans of run_queue's partitions in this transaction so far (the
        # "numscans" of a table count its sequential scans).
        seq_scans = await conn.fetchval(
            "SELECT sum(pg_stat_get_xact_numscans(relid)) FROM pg_partition_tree('run_queue') "
            "WHERE isleaf")
    assert len(rows) == 50
    assert seq_scans == 0


async def test_claim_functions_run_without_jit_and_with_cached_generic_plans(
    db: asyncpg.Pool,
) -> None:
    """Settings the claim path depends on (migrations 0005, 0008, 0009, 0024): without
    ``jit = off`` the priced-out sequential scans pushed the ready check over
    jit_above_cost and every claim spent ~365 ms compiling it; without generic plans
    every call planned its statements again, a hidden millisecond per claim."""
    rows = await db.fetch(
        "SELECT proname, proconfig FROM pg_proc WHERE pronamespace = 'waypost'::regnamespace "
        "AND proname = ANY($1)",
        ["claim_gates", "admit_heads", "admit_by_key", "start_claimed", "claim_runs",
         "complete_attempts"])
    config = {r["proname"]: set(r["proconfig"]) for r in rows}
    assert set(config) == {"claim_gates", "admit_heads", "admit_by_key", "start_claimed",
                           "claim_runs", "complete_attempts"}
    assert all("jit=off" in c for c in config.values()), config
    for name in ("claim_gates", "admit_heads", "admit_by_key", "start_claimed"):
        assert {"enable_seqscan=off", "enable_bitmapscan=off",
                "plan_cache_mode=force_generic_plan"} <= config[name], config[name]


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every scan node of an EXPLAIN (FORMAT JSON) plan tree."""
    found = [node] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


async def test_a_claim_finds_its_hot_rows_by_run_id_in_its_generic_plan(
    db: asyncpg.Pool,
) -> None:
    """Guards migration 0021. With 0019's key (run_id, generation), the generic plan
    of the claim's write, made before any statistics existed, found the admitted runs
    by reading the whole ready index (a hash join: 59,950 rows for a claim of 10 from
    60,000 ready, 100 ms); with a unique index on run_id it looks each one up.
    Autovacuum is kept off run_queue here so that no ANALYZE runs before the plan is
    made, as in a burst after a quiet spell. Every statement the claim runs is
    captured by auto_explain: no scan of run_queue may read more than a few rows per
    claimed run."""
    await register_task(db)
    for part in ("run_queue_0", "run_queue_1"):
        await db.execute(f"ALTER TABLE {part} SET (autovacuum_enabled = off)")
    n = 20_000
    await runs.enqueue_bulk(
        db, namespace="default", task="t", run_ids=[uuid.uuid4() for _ in range(n)],
        priorities=[None] * n, payloads=[RawJson("{}")] * n, idempotency_keys=[None] * n,
        concurrency_keys=[None] * n, trace_ids=["0" * 32] * n, source="test")
    assert await db.fetchval(
        "SELECT count(*) FROM pg_stats WHERE tablename LIKE 'run_queue%'") == 0
    plans: list[dict[str, Any]] = []
    async with db.acquire() as conn:
        await conn.execute("LOAD 'auto_explain'")
        for name, value in {"log_min_duration": "0", "log_nested_statements": "on",
                            "log_analyze": "on", "log_timing": "off", "log_format": "json",
                            "log_level": "notice"}.items():
            await conn.execute(f"SET auto_explain.{name} = '{value}'")
        def capture(_conn: object, msg: asyncpg.PostgresLogMessage) -> None:
            plans.append(json.loads(msg.message.split("plan:", 1)[1]))

        conn.add_log_listener(capture)
        try:
            claimed = await conn.fetch(
                "SELECT * FROM claim_runs('{}', '{}', '{}', 10, 30, 'w', NULL)")
        finally:
            await conn.execute("SET auto_explain.log_min_duration = -1")
            conn.remove_log_listener(capture)
    assert len(claimed) == 10
    writes = [p for p in plans if "UPDATE run_queue" in p["Query Text"]]
    assert writes, "auto_explain did not capture the claim's write"
    read: dict[str, int] = {}  # the most rows one scan read, by table and index
    for plan in plans:
        for scan in _scans(plan["Plan"]):
            if scan["Relation Name"].startswith("run_queue"):
                where = f"{scan['Relation Name']} via {scan.get('Index Name', scan['Node Type'])}"
                read[where] = max(read.get(where, 0), scan["Actual Rows"] * scan["Actual Loops"])
    assert read and max(read.values()) <= 50, read


async def test_a_run_row_stores_its_spec_without_defaults(db: asyncpg.Pool) -> None:
    """The run row is rewritten whole at its claim and completion: its copy of the spec
    leaves out what the model's defaults give back (TaskSpec.stored), and the fields
    SQL reads stay in it."""
    from waypost.model.task import TaskSpec

    await register_task(db)
    run_id = await enqueue(db)
    stored = await db.fetchval("SELECT spec FROM runs WHERE id = $1", run_id)
    assert stored == {"entrypoint": "examples.hello:hello", "retry": {"maxAttempts": 3},
                      "cancellation": {"gracePeriodSeconds": 30}}
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello"})
    [claimed] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    assert TaskSpec.model_validate_json(claimed.spec_json) == spec
    run = await runs.get(db, run_id)
    assert run is not None and run.max_attempts == spec.retry.max_attempts
