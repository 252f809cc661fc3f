"""Scheduled runs as TaskRun objects, as a CronJob's runs are Jobs.

The scheduler fires runs in Postgres (exactly once per tick, in one
transaction); this side gives each a TaskRun owned by its Task, labelled with
the schedule, and prunes the finished ones beyond the Task's history limits.
The TaskRun carries the run's idempotency key, so its create handler finds the
existing run instead of queueing another.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from waypost.engine import control
from waypost.engine.core import Engine
from waypost.model import k8s
from waypost.store.runs import ScheduledRun

log = logging.getLogger("waypost.controller.schedule_runs")

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def schedule_of(run: ScheduledRun) -> str:
    """The schedule's name from the run's key ``schedule:<name>:<time>``."""
    key = run.idempotency_key or ""
    parts = key.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "schedule" else "manual"


def taskrun_name(run: ScheduledRun) -> str:
    """``<task>-<schedule>-<yyyymmddhhmm>-<5 hex>``: unique, a DNS subdomain."""
    stamp = run.created_at.strftime("%Y%m%d%H%M")
    base = _NOT_DNS.sub("-", f"{run.task}-{schedule_of(run)}".lower()).strip("-")[:200]
    return f"{base}-{stamp}-{run.id.hex[-5:]}"


def taskrun_for(run: ScheduledRun, task_uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": taskrun_name(run), "namespace": run.namespace,
        "labels": {k8s.LABEL_TASK: run.task, k8s.LABEL_SCHEDULE: schedule_of(run)[:63],
                   k8s.LABEL_MANAGED_BY: k8s.MANAGED_BY},
    }
    if task_uid:
        meta["ownerReferences"] = [{"apiVersion": k8s.API_VERSION, "kind": k8s.TASK_KIND,
                                    "name": run.task, "uid": task_uid}]
    return {"apiVersion": k8s.API_VERSION, "kind": k8s.TASKRUN_KIND, "metadata": meta,
            "spec": {"taskRef": {"name": run.task}, "payload": run.payload,
                     "idempotencyKey": run.idempotency_key}}


def to_prune(items: list[dict[str, Any]], *, keep_succeeded: int, keep_failed: int) -> list[str]:
    """Names of finished scheduled TaskRuns beyond the history limits, oldest first."""
    succeeded: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    for item in items:
        conditions = (item.get("status") or {}).get("conditions") or []
        state = next((c.get("status") for c in conditions if c.get("type") == "Succeeded"), None)
        entry = (item["metadata"].get("creationTimestamp") or "", item["metadata"]["name"])
        if state == "True":
            succeeded.append(entry)
        elif state == "False":
            failed.append(entry)
    doomed: list[str] = []
    for group, keep in ((succeeded, keep_succeeded), (failed, keep_failed)):
        group.sort(reverse=True)  # newest first
        doomed += [name for _, name in group[keep:]]
    return doomed


class ScheduledTaskRuns:
    def __init__(self, engine: Engine, api_client: client.ApiClient) -> None:
        self.engine = engine
        self.api = client.CustomObjectsApi(api_client)

    async def materialize(self) -> int:
        """Make the TaskRun of every scheduled run that has none; returns how many."""
        made = 0
        for run in await control.scheduled_runs_without_taskrun(self.engine):
            uid = await self._task_uid(run.namespace, run.task)
            body = taskrun_for(run, uid)
            try:
                await asyncio.to_thread(self.api.create_namespaced_custom_object, k8s.GROUP,
                                        k8s.VERSION, run.namespace, k8s.TASKRUN_PLURAL, body)
                made += 1
            except ApiException as exc:
                if exc.status != 409:  # 409: made by a pass that died before linking
                    raise
            await control.link_taskrun(self.engine, run.id, body["metadata"]["name"])
        return made

    async def _task_uid(self, namespace: str, name: str) -> str | None:
        try:
            obj = await asyncio.to_thread(self.api.get_namespaced_custom_object, k8s.GROUP,
                                          k8s.VERSION, namespace, k8s.TASK_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        uid: str | None = obj["metadata"].get("uid")
        return uid

    async def prune(self, namespace: str, task: str, *, keep_succeeded: int,
                    keep_failed: int) -> list[str]:
        listed = await asyncio.to_thread(
            self.api.list_namespaced_custom_object, k8s.GROUP, k8s.VERSION, namespace,
            k8s.TASKRUN_PLURAL, label_selector=f"{k8s.LABEL_TASK}={task},{k8s.LABEL_SCHEDULE}")
        doomed = to_prune(listed.get("items") or [], keep_succeeded=keep_succeeded,
                          keep_failed=keep_failed)
        for name in doomed:
            try:
                await asyncio.to_thread(self.api.delete_namespaced_custom_object, k8s.GROUP,
                                        k8s.VERSION, namespace, k8s.TASKRUN_PLURAL, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return doomed
