"""Failure patterns: the leader looks for them in Postgres; nothing acts on them.

Every ``insights.interval_seconds`` the leader runs one bounded query per pattern
over the attempts that ended within ``insights.window_seconds`` (an index on their
end keeps each query to the window's traffic), stores what holds in
``task_insights`` and marks what stopped as cleared. Every replica serves the
stored result (``GET /v1/insights``, the UI, the ``waypost_task_pattern``
metric); the operator turns it into the Task's ``Degraded`` condition and an
Event (controller.mirror). No run is retried, resized or stopped because of a
pattern: a person decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import timedelta
from typing import Any

import asyncpg

from waypost.engine.core import Engine
from waypost.model.insights import (
    Finding,
    InsightSettings,
    InsightsPage,
    Pattern,
    Sizing,
    StepMemory,
    TaskInsight,
)
from waypost.store import insights as store

log = logging.getLogger("waypost.engine.insights")

MIB = 1024 * 1024
#: Cleared patterns are kept this long (the operator announces the clearing).
KEEP_CLEARED_SECONDS = 86400.0


def _mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB"


async def detect(engine: Engine) -> list[Finding]:
    """What holds now, per task and pattern, with evidence and figures."""
    t: InsightSettings = engine.settings.insights
    since = engine.clock.now() - timedelta(seconds=t.window_seconds)
    window = f"in the last {t.window_seconds / 60:g} min"
    found: list[Finding] = []
    pool = engine.pool
    for r in await store.timeout_loops(pool, since, t.timeout_loop_attempts, t.timeout_loop_runs):
        found.append(Finding(
            namespace=r["namespace"], task=r["task"], pattern=Pattern.TIMEOUT_LOOP,
            summary=f"{r['runs']} run(s) timed out on {r['max_timeouts']} attempts or more "
                    f"{window}: the work does not fit the task's maxDuration",
            evidence=list(r["evidence"]),
            figures={"runs": r["runs"], "maxTimeoutsPerRun": r["max_timeouts"]}))
    for r in await store.retry_storms(pool, since, t.retry_storm_failure_ratio,
                                      t.retry_storm_runs):
        ratio = r["failed"] / r["attempts"]
        by_type: dict[str, int] = dict(r["by_type"] or {})
        top = max(by_type, key=lambda k: by_type[k]) if by_type else "error"
        found.append(Finding(
            namespace=r["namespace"], task=r["task"], pattern=Pattern.RETRY_STORM,
            summary=f"{r['failed']} of {r['attempts']} attempts failed ({ratio:.0%}) over "
                    f"{r['failed_runs']} runs {window}; most often: {top}",
            evidence=list(r["evidence"]),
            figures={"attempts": r["attempts"], "failed": r["failed"],
                     "failedRuns": r["failed_runs"], "failureRatio": round(ratio, 3),
                     "byErrorType": by_type}))
    gaps: dict[tuple[str, str], list[asyncpg.Record]] = {}
    for r in await store.checkpoint_gaps(pool, since, t.checkpoint_gap_seconds):
        gaps.setdefault((r["namespace"], r["task"]), []).append(r)
    for (namespace, task), rows in gaps.items():
        if len(rows) < t.checkpoint_gap_attempts:
            continue
        longest = max(float(r["longest"]) for r in rows)
        redone = sum(float(r["tail"] or 0) for r in rows if r["status"] == "failed")
        found.append(Finding(
            namespace=namespace, task=task, pattern=Pattern.CHECKPOINT_GAP,
            summary=f"{len(rows)} attempt(s) ran up to {longest:.0f} s without a checkpoint "
                    f"{window}"
                    + (f"; failed attempts lost {redone:.0f} s of work to redo" if redone else ""),
            evidence=list(dict.fromkeys(r["run_id"] for r in rows))[:5],
            figures={"attempts": len(rows), "longestGapSeconds": round(longest, 1),
                     "redoneSeconds": round(redone, 1)}))
    for r in await store.attempt_memory(pool, since):
        if r["attempts"] < t.memory_min_attempts or not r["limit_bytes"]:
            continue
        limit = int(r["limit_bytes"])
        p95 = float(r["p95"])
        slope = float(r["slope"] or 0.0)
        r2 = float(r["r2"] or 0.0)
        # Peaks rising along a good fit that would reach the limit if the trend went
        # on for as long again as it was watched.
        trending = (slope > 0 and r2 >= 0.8
                    and float(r["max_peak"]) + slope * float(r["span"] or 0) >= limit)
        if p95 < t.memory_limit_ratio * limit and not trending:
            continue
        found.append(Finding(
            namespace=r["namespace"], task=r["task"], pattern=Pattern.MEMORY_GROWTH,
            summary=(f"peak memory p95 {_mib(p95)} of a {_mib(limit)} limit "
                     f"({p95 / limit:.0%}) over {r['attempts']} attempts {window}"
                     + (f", rising {slope * 3600 / MIB:.0f} MiB/h" if trending else "")),
            evidence=list(r["evidence"]),
            figures={"attempts": r["attempts"], "limitBytes": limit,
                     "p95Bytes": int(p95), "maxBytes": int(r["max_peak"]),
                     "slopeBytesPerHour": int(slope * 3600), "r2": round(r2, 3)}))
    for r in await store.warm_memory_growth(pool, since):
        _warm_growth(found, r, window)
    return found


def _warm_growth(found: list[Finding], r: asyncpg.Record, window: str) -> None:
    """Memory growth across warm starts (warm runners recycled because their RSS grew
    from run to run), merged into the task's memory-growth finding when its attempt
    peaks show one too: one pattern per task, both kinds of evidence."""
    summary = (f"{r['runners']} warm runner(s) recycled {window}: resident memory grew "
               f"{_mib(r['max_growth'] or 0)} across warm starts (to {_mib(r['max_rss'] or 0)}, "
               f"over up to {r['max_runs_served']} runs): task code keeps memory from run "
               f"to run")
    figures = {"warmRunnersRecycled": r["runners"], "warmGrowthBytes": int(r["max_growth"] or 0),
               "warmRssBytes": int(r["max_rss"] or 0), "warmRunsServed": r["max_runs_served"]}
    for i, f in enumerate(found):
        if (f.namespace, f.task, f.pattern) == (r["namespace"], r["task"],
                                                 Pattern.MEMORY_GROWTH):
            found[i] = f.model_copy(update={
                "summary": f"{f.summary}; {summary}",
                "evidence": list(dict.fromkeys([*f.evidence, *r["evidence"]]))[:5],
                "figures": {**f.figures, **figures}})
            return
    found.append(Finding(namespace=r["namespace"], task=r["task"],
                         pattern=Pattern.MEMORY_GROWTH, summary=summary,
                         evidence=list(r["evidence"]), figures=figures))


async def sizing(engine: Engine, namespace: str | None = None,
                 task: str | None = None) -> list[Sizing]:
    """Measured peaks per task (and step) in the window, and the limit they suggest."""
    t = engine.settings.insights
    since = engine.clock.now() - timedelta(seconds=t.window_seconds)
    steps: dict[tuple[str, str], list[StepMemory]] = {}
    for r in await store.step_memory(engine.pool, since):
        steps.setdefault((r["namespace"], r["task"]), []).append(StepMemory(
            step=r["step"], attempts=r["attempts"], p99_bytes=int(r["p99"]),
            max_bytes=int(r["max_peak"])))
    out = []
    for r in await store.attempt_memory(engine.pool, since):
        if (namespace and r["namespace"] != namespace) or (task and r["task"] != task):
            continue
        p99 = float(r["p99"])
        suggested = math.ceil(p99 * (1 + t.memory_headroom) / MIB) * MIB
        out.append(Sizing(
            namespace=r["namespace"], task=r["task"], attempts=r["attempts"],
            limit_bytes=int(r["limit_bytes"]), p99_bytes=int(p99), max_bytes=int(r["max_peak"]),
            suggested_limit_bytes=suggested, steps=steps.get((r["namespace"], r["task"]), [])))
    return out


async def run_once(engine: Engine) -> tuple[list[Finding], list[tuple[str, str, str]]]:
    """One detection pass, stored; returns what holds and what stopped."""
    found = await detect(engine)
    cleared = await store.reconcile(
        engine.pool,
        [(f.namespace, f.task, str(f.pattern),
          {"summary": f.summary, "evidence": f.evidence, "figures": f.figures}) for f in found],
        keep_seconds=KEEP_CLEARED_SECONDS)
    for f in found:
        log.info("failure pattern holds", extra={"namespace": f.namespace, "task": f.task,
                                                 "pattern": str(f.pattern)})
    for namespace, task, pattern in cleared:
        log.info("failure pattern stopped", extra={"namespace": namespace, "task": task,
                                                   "pattern": pattern})
    return found, cleared


async def run(engine: Engine, stop: asyncio.Event) -> None:
    """The leader's loop: a pass at start, then every interval."""
    while not stop.is_set():
        try:
            await run_once(engine)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("failure-pattern pass failed", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), engine.settings.insights.interval_seconds)


def to_api(row: store.StoredInsight) -> TaskInsight:
    pattern = Pattern(row.pattern)
    details: dict[str, Any] = row.details if isinstance(row.details, dict) else {}
    return TaskInsight(
        namespace=row.namespace, task=row.task, pattern=pattern, reason=pattern.reason,
        summary=str(details.get("summary", "")), since=row.since,
        updated_at=row.updated_at or row.since, evidence=list(details.get("evidence", [])),
        figures=dict(details.get("figures", {})))


async def page(engine: Engine, namespace: str | None = None,
               task: str | None = None) -> InsightsPage:
    """``GET /v1/insights``: the patterns that hold and the memory sizing."""
    rows = await store.active(engine.pool, namespace, task)
    return InsightsPage(items=[to_api(r) for r in rows],
                        sizing=await sizing(engine, namespace, task))


async def active(engine: Engine, namespace: str | None = None,
                 task: str | None = None) -> list[store.StoredInsight]:
    """The patterns that hold now (of a namespace/task), as stored."""
    return await store.active(engine.pool, namespace, task)


async def cleared_tasks(engine: Engine) -> list[tuple[str, str]]:
    """(namespace, task) of the patterns that stopped within the last day."""
    return await store.cleared_tasks(engine.pool)


async def unannounced(engine: Engine) -> list[store.StoredInsight]:
    """Patterns raised or cleared that Kubernetes was not told of yet."""
    return await store.unannounced(engine.pool)


async def mark_announced(engine: Engine, row: store.StoredInsight, announced: str) -> None:
    await store.mark_announced(engine.pool, row, announced)
