"""Postgres → Kubernetes: TaskRun and Task status follow their runs.

A loop, not a reaction to watch events: every second it reads the TaskRun runs
that changed since the last pass (an indexed query), so a missed or frozen watch
never leaves a status behind, and a new leader starts with a full resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from waypost import aiotime
from waypost.controller import status as decide
from waypost.controller.insights import InsightMirror
from waypost.controller.schedule_runs import ScheduledTaskRuns
from waypost.engine import control, scheduler
from waypost.engine.core import Engine
from waypost.model import k8s

log = logging.getLogger("waypost.controller.mirror")

# Transactions commit out of updated_at order; re-reading a short window catches
# a run whose change committed after a later one was seen.
OVERLAP = timedelta(seconds=5)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def strip(status: dict[str, Any]) -> dict[str, Any]:
        conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                 for c in status.get("conditions") or []]
        return {**{k: v for k, v in status.items() if v is not None}, "conditions": conds}
    return strip(a) == strip(b)


class StatusMirror:
    def __init__(self, engine: Engine, api_client: client.ApiClient, *,
                 interval: float = 1.0, task_interval: float = 10.0) -> None:
        self.engine = engine
        self.api = client.CustomObjectsApi(api_client)
        self.interval = interval
        self.task_interval = task_interval
        self.watermark = datetime(1970, 1, 1, tzinfo=UTC)
        self._task_status: dict[tuple[str, str], dict[str, Any]] = {}
        self.scheduled = ScheduledTaskRuns(engine, api_client)
        self.insights = InsightMirror(engine, api_client)

    async def sync_taskruns(self) -> int:
        """Mirror every TaskRun run changed since the last pass; returns how many."""
        patched = 0
        while True:
            changed = await control.taskrun_runs_changed(self.engine, self.watermark - OVERLAP)
            fresh = [(r, cp) for r, cp in changed
                     if r.updated_at is not None and r.updated_at > self.watermark - OVERLAP]
            for run, last_checkpoint in fresh:
                if await self._mirror(run, last_checkpoint):
                    patched += 1
            newest = max((r.updated_at for r, _ in fresh if r.updated_at), default=None)
            if newest is None or newest <= self.watermark or len(changed) < 500:
                if newest is not None and newest > self.watermark:
                    self.watermark = newest
                return patched
            self.watermark = newest

    async def _mirror(self, run: Any, last_checkpoint: str | None) -> bool:
        name = run.taskrun_name
        try:
            obj = await asyncio.to_thread(self.api.get_namespaced_custom_object, k8s.GROUP,
                                          k8s.VERSION, run.namespace, k8s.TASKRUN_PLURAL,
                                          name)
        except ApiException as exc:
            if exc.status == 404:
                return False  # the TaskRun is gone; its run stays in the store
            raise
        current = obj.get("status") or {}
        if current.get("runId") not in (None, run.id):
            return False  # another run answers this TaskRun (a shared idempotency key)
        desired = decide.taskrun_status(run, last_checkpoint, current, now=self.engine.clock.now(),
                                        generation=obj["metadata"].get("generation"))
        if _same(current, desired):
            return False
        await asyncio.to_thread(self.api.patch_namespaced_custom_object_status, k8s.GROUP,
                                k8s.VERSION, run.namespace, k8s.TASKRUN_PLURAL, name,
                                {"status": desired})
        return True

    async def sync_tasks(self) -> None:
        """Queue depth, running count and schedule times into each Task's status."""
        summaries = await control.task_summaries(self.engine)
        schedules = await scheduler.list_schedules(self.engine)
        idle_warm: dict[tuple[str, str], int] = {}
        for member in await self.engine.warm.members():
            if member.state == "idle":
                idle_warm[(member.namespace, member.task)] = (
                    idle_warm.get((member.namespace, member.task), 0) + 1)
        for summary in summaries:
            d = summary.definition
            mine = [s for s in schedules if s.namespace == d.namespace and s.task == d.name]
            if d.spec.schedules:
                await self.scheduled.prune(
                    d.namespace, d.name, keep_succeeded=d.spec.successful_runs_history_limit,
                    keep_failed=d.spec.failed_runs_history_limit)
            nexts = [s.next_fire_at for s in mine if s.next_fire_at and not s.suspended]
            lasts = [s.last_fire_at for s in mine if s.last_fire_at]
            desired = decide.task_figures(
                queued=summary.queued, running=summary.running,
                next_schedule=min(nexts) if nexts else None,
                last_schedule=max(lasts) if lasts else None,
                warm_pods=idle_warm.get((d.namespace, d.name), 0),
            )
            key = (d.namespace, d.name)
            if self._task_status.get(key) == desired:
                continue
            try:
                await asyncio.to_thread(self.api.patch_namespaced_custom_object_status, k8s.GROUP,
                                        k8s.VERSION, d.namespace, k8s.TASK_PLURAL, d.name,
                                        {"status": desired})
                self._task_status[key] = desired
            except ApiException as exc:
                if exc.status != 404:
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tasks = 0.0
        while not stop.is_set():
            # Each step on its own: one failing (RBAC, the API server away) must not
            # hold the others back.
            await _attempt("scheduled TaskRuns", self.scheduled.materialize())
            await _attempt("TaskRun status", self.sync_taskruns())
            if loop.time() >= next_tasks:
                await _attempt("Task status", self.sync_tasks())
                await _attempt("Task failure patterns", self.insights.sync())
                next_tasks = loop.time() + self.task_interval
            await aiotime.sleep(self.interval, stop)


async def _attempt(what: str, step: Awaitable[object]) -> None:
    try:
        await step
    except ApiException as exc:
        log.warning("%s: the API server answered %s %s", what, exc.status, exc.reason)
    except Exception as exc:  # the store being away: the next pass tries again
        log.warning("%s: %s", what, exc)
