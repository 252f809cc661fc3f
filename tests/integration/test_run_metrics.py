"""Counters and histograms from the event log, and run counts without a full scan.

Real runners (process backend) on a real Postgres: an order that fails its payment
once and then succeeds, a run that is dead-lettered after three failures. The
leader's telemetry reader turns their events into series, scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples import flaky
from tests.factories import enqueue, example_stack, register_task, wait_for_status
from waypost.engine import control
from waypost.engine.metrics import BYTES_BUCKETS, OTHER_TASK, SECONDS_BUCKETS, RunMetrics
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.sdk.tracing import trace_sampler
from waypost.standalone import Standalone
from waypost.store import checkpoints, runs, telemetry
from waypost.store.events import START
from waypost.store.pool import RawJson

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(url: str) -> Samples:
    out: Samples = {}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == want for k, want in labels.items()))


@pytest.fixture
async def stack(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    async with example_stack(database_url, tmp_path / "ledger.jsonl", monkeypatch,
                             also=[flaky.always_fails], telemetry_poll_seconds=0.2) as app:
        yield app


async def test_runs_attempts_and_checkpoints_are_counted(stack: Standalone) -> None:
    order, _ = await control.trigger(
        stack.engine, "default", "process-order",
        TriggerRequest(payload={"orderId": "o-1", "failPaymentOnAttempts": [1]}))
    failing, _ = await control.trigger(stack.engine, "default", "always-fails",
                                       TriggerRequest(payload={}))
    await wait_for_status(stack.engine, order.id, {RunStatus.SUCCEEDED}, timeout=90)
    await wait_for_status(stack.engine, failing.id, {RunStatus.DEAD_LETTERED}, timeout=90)

    po = {"task_namespace": "default", "task": "process-order"}
    af = {"task_namespace": "default", "task": "always-fails"}
    deadline = time.monotonic() + 20
    while True:  # the reader follows the log a moment behind
        m = await scrape(stack.url)
        if (value(m, "waypost_runs_finished_total", **po) == 1
                and value(m, "waypost_runs_finished_total", **af) == 1):
            break
        assert time.monotonic() < deadline, m.get("waypost_runs_finished_total")
        await asyncio.sleep(0.2)

    assert value(m, "waypost_runs_triggered_total", **po, source="api") == 1
    assert value(m, "waypost_runs_triggered_total", **af, source="api") == 1
    assert value(m, "waypost_runs_finished_total", **po, status="succeeded") == 1
    assert value(m, "waypost_runs_finished_total", **af, status="dead_lettered") == 1
    assert value(m, "waypost_runs_dead_lettered_total", **af) == 1
    # The order failed its payment once, then succeeded; always-fails failed 3 times.
    assert value(m, "waypost_attempts_finished_total", **po, outcome="error") == 1
    assert value(m, "waypost_attempts_finished_total", **po, outcome="succeeded") == 1
    assert value(m, "waypost_attempts_finished_total", **af, outcome="error") == 3
    assert value(m, "waypost_run_retries_total", **po) == 1
    assert value(m, "waypost_run_retries_total", **af) == 2
    assert value(m, "waypost_attempt_oom_kills_total", **af) == 0
    # Histograms: one queue wait per attempt, one duration per run and attempt.
    assert value(m, "waypost_queue_wait_seconds_count", **po) == 2
    assert value(m, "waypost_queue_wait_seconds_count", **af) == 3
    assert value(m, "waypost_run_duration_seconds_count", **po, status="succeeded") == 1
    assert value(m, "waypost_attempt_duration_seconds_count", **af, outcome="error") == 3
    # The order wrote order-fetched (attempt 1) and payment-complete (attempt 2).
    assert value(m, "waypost_checkpoint_size_bytes_count", **po) == 2
    assert value(m, "waypost_checkpoint_size_bytes_sum", **po) > 20
    # A run's duration covers its retry's backoff: more than the first attempt's.
    run_seconds = value(m, "waypost_run_duration_seconds_sum", **po)
    attempt_seconds = value(m, "waypost_attempt_duration_seconds_sum", **po)
    assert run_seconds >= attempt_seconds > 0
    # The exact path: a small table is counted, not estimated.
    assert value(m, "waypost_runs_estimated") == 0
    assert value(m, "waypost_runs", status="succeeded") == 1
    assert value(m, "waypost_runs", status="dead_lettered") == 1


async def test_a_retry_read_after_it_finished_keeps_its_queue_wait(db: asyncpg.Pool) -> None:
    """The reader follows the log a moment behind: by the time it reads a quick
    retry's start, the retry may have finished and left the hot table. Its queue
    wait (backoff end to claim) is still known: the start event carries it."""
    await register_task(db, "t")
    run_id = await enqueue(db, "t")
    [first] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    assert await runs.retry(db, run_id, first.claim_token, delay_seconds=0.3,
                            error={"type": "error", "message": "boom"}, memory_bytes=1)
    await asyncio.sleep(0.5)  # the backoff ends at 0.3 s; claimed about 0.2 s later
    [second] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    assert second.run_id == run_id and second.attempt == 2
    await runs.complete_many(db, [(run_id, second.claim_token, None)])
    assert await db.fetchval("SELECT count(*) FROM waypost.run_queue WHERE run_id = $1",
                             run_id) == 0

    page = await telemetry.page_after(db, START, spans=trace_sampler({}),
                                      second_bounds=SECONDS_BUCKETS,
                                      byte_bounds=BYTES_BUCKETS)
    starts = {s.attempt: s for s in telemetry.decode_spans(page.spans)
              if s.kind == "attempt_started"}
    assert set(starts) == {1, 2}
    waits = {n: (s.ts - s.available_at).total_seconds()
             for n, s in starts.items() if s.available_at is not None}
    assert set(waits) == {1, 2}, "a finished attempt's queue wait was lost"
    assert 0.1 <= waits[2] < 5, waits
    # The series summed by the database hold both waits too.
    tallies = [t for t in page.tallies if t.series == "queue_wait"]
    assert sum(t.n for t in tallies) == 2
    assert sum(t.total or 0 for t in tallies) == pytest.approx(sum(waits.values()))


async def test_status_counts_are_estimated_from_statistics_on_a_large_table(
    database_url: str, db: asyncpg.Pool
) -> None:
    await register_task(db, "t")
    await register_task(db, "u")
    for _ in range(40):
        await enqueue(db, "u")
    claimed = await runs.claim(db, limit=50, lease_seconds=30, worker="w")
    assert len(claimed) == 40
    await runs.complete_many(db, [(c.run_id, c.claim_token, None) for c in claimed[:30]])
    for _ in range(3):
        await enqueue(db, "t")
    await db.execute("ANALYZE waypost.runs")
    expected = {"succeeded": 30, "running": 10, "queued": 3}
    exact = await telemetry.status_counts(db)
    assert not exact.estimated
    assert exact.counts == expected
    # Treated as large: the finished statuses come from pg_stats, the active ones from
    # the hot table. ANALYZE sampled every row of this small table: the estimate is exact.
    est = await telemetry.status_counts(db, exact_below=10)
    assert est.estimated
    assert est.counts == expected


def test_task_labels_are_bounded() -> None:
    metrics = RunMetrics(max_tasks=2)
    assert metrics.task_labels("a", "x") == ("a", "x")
    assert metrics.task_labels("a", "y") == ("a", "y")
    assert metrics.task_labels("b", "z") == ("b", OTHER_TASK)
    assert metrics.task_labels("a", "x") == ("a", "x")


async def test_the_database_sums_a_page_into_the_buckets_prometheus_would(
    db: asyncpg.Pool
) -> None:
    """telemetry.sql places an observation as prometheus_client does (a value equal to
    a bucket's upper bound is in that bucket), and pages cut anywhere add up to the
    same series as one page."""
    await register_task(db, "t")
    run_id = await enqueue(db, "t")
    [claim] = await runs.claim(db, limit=1, lease_seconds=30, worker="w")
    # Encoded sizes 1, 64 (the first bound) and 65 bytes.
    for key, text in (("a", "1"), ("b", '"' + "x" * 62 + '"'), ("c", '"' + "x" * 63 + '"')):
        assert await checkpoints.write(db, run_id, claim.claim_token, key, RawJson(text))
    await runs.complete_many(db, [(run_id, claim.claim_token, None)])

    async def read(limit: int) -> tuple[dict[tuple[str, str | None, int | None], int], int]:
        sums: dict[tuple[str, str | None, int | None], int] = {}
        cursor, pages = START, 0
        while True:
            page = await telemetry.page_after(db, cursor, limit=limit, spans=None,
                                              second_bounds=SECONDS_BUCKETS,
                                              byte_bounds=BYTES_BUCKETS)
            assert page.spans is None  # not asked for
            for t in page.tallies:
                key = (t.series, t.label, t.bucket)
                sums[key] = sums.get(key, 0) + t.n
            pages += 1
            if page.events < limit:
                return sums, pages
            assert page.cursor > cursor
            cursor = page.cursor

    whole, _ = await read(2000)
    assert whole[("checkpoint_size", None, 0)] == 2  # 1 and 64 bytes: le="64"
    assert whole[("checkpoint_size", None, 1)] == 1  # 65 bytes: le="256"
    assert sum(n for (series, _, _), n in whole.items() if series == "triggered") == 1
    assert whole[("finished", "succeeded", None)] == 1
    assert whole[("attempts", "succeeded", None)] == 1
    assert sum(n for (series, _, _), n in whole.items() if series == "queue_wait") == 1
    by_two, pages = await read(2)
    assert pages >= 3 and by_two == whole


async def test_only_the_spans_of_sampled_runs_are_read(db: asyncpg.Pool) -> None:
    """The database applies the trace sampler (sdk.tracing.TraceSampler) to the span
    rows, so a leader sampling at 10% decodes a tenth of them; its decision is the
    sampler's own, on the trace id's lower 64 bits and on a caller's flag."""
    await register_task(db, "t")
    # Lower 64 bits: 0, 2^63 - 1, 2^63 (the sign bit), 2^64 - 1; with and without a
    # caller (whose flag says the opposite of what a ratio of 0.5 says of the id).
    lows = ("0" * 16, "7" + "f" * 15, "8" + "0" * 15, "f" * 16)
    made: dict[uuid.UUID, tuple[str, bool | None]] = {}
    for low in lows:
        for caller in (None, True, False):
            trace_id, run_id = "ab" * 8 + low, uuid.uuid4()
            assert await runs.enqueue(
                db, namespace="default", task="t", run_id=run_id, payload=RawJson("{}"),
                priority=None, idempotency_key=None, concurrency_key=None,
                trace_id=trace_id, source="test",
                parent_span_id=None if caller is None else "1" * 16,
                parent_sampled=caller is not False)
            made[run_id] = (trace_id, caller)
    claimed = await runs.claim(db, limit=len(made), lease_seconds=30, worker="w")
    await runs.complete_many(db, [(c.run_id, c.claim_token, None) for c in claimed])

    for env in ({}, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
                {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                 "OTEL_TRACES_SAMPLER_ARG": "0.5"},
                {"OTEL_TRACES_SAMPLER": "always_off"},
                {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}):
        sampler = trace_sampler(env)
        page = await telemetry.page_after(db, START, spans=sampler,
                                          second_bounds=SECONDS_BUCKETS,
                                          byte_bounds=BYTES_BUCKETS)
        signals = telemetry.decode_spans(page.spans)
        got = {s.run_id for s in signals}
        want = {run_id for run_id, (trace_id, caller) in made.items()
                if sampler(trace_id, caller)}
        assert got == want, env
        # Each recorded run: its attempt's start and its end.
        assert len(signals) == 2 * len(want), env
        assert [s.cursor for s in signals] == sorted(s.cursor for s in signals)
    # The ratio's boundary falls between 2^63 - 1 (kept) and 2^63 (dropped).
    ratio = trace_sampler({"OTEL_TRACES_SAMPLER": "traceidratio",
                           "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert [ratio("ab" * 8 + low) for low in lows] == [True, True, False, False]
