"""Failure patterns → Kubernetes: the Task's ``Degraded`` condition and Events.

The leader's detector (engine.insights) stores the patterns that hold; this pass
(on the leader, beside the status mirror) sets each Task's ``Degraded``
condition from them, True with a reason per pattern or False once none holds,
and posts an Event when a pattern is raised (Warning, reason e.g. ``RetryStorm``)
and when it clears (Normal, ``RetryStormCleared``). Which raising or clearing was
announced is stored with the pattern, so a new leader neither repeats nor misses
an Event. Nothing else happens: no remediation.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from waypost.controller import status as decide
from waypost.engine import insights
from waypost.engine.core import Engine
from waypost.model import k8s
from waypost.model.insights import Pattern

log = logging.getLogger("waypost.controller.insights")


class InsightMirror:
    def __init__(self, engine: Engine, api_client: client.ApiClient) -> None:
        self.engine = engine
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        # What this leader last wrote per Task; a Task not in it is read first.
        self._written: dict[tuple[str, str], dict[Pattern, str]] = {}
        # Whether this leader looked at the Tasks whose patterns stopped: one may have
        # stopped before this leader's first pass, its Degraded still True from the
        # previous leader (seen on the cluster after a helm upgrade).
        self._seeded = False

    async def sync(self) -> None:
        await self.sync_conditions()
        await self.announce()

    async def _get_task(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, k8s.GROUP, k8s.VERSION, namespace,
                k8s.TASK_PLURAL, name)
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def sync_conditions(self) -> None:
        holding: dict[tuple[str, str], dict[Pattern, str]] = {}
        for row in await insights.active(self.engine):
            holding.setdefault((row.namespace, row.task), {})[Pattern(row.pattern)] = str(
                (row.details or {}).get("summary", ""))
        keys = set(holding) | set(self._written)
        if not self._seeded:
            keys |= set(await insights.cleared_tasks(self.engine))
        for key in sorted(keys):
            patterns = holding.get(key, {})
            if key in self._written and self._written[key] == patterns:
                continue
            task = await self._get_task(*key)
            if task is None:
                self._written.pop(key, None)
                continue
            body, changed = decide.task_degraded(patterns, task.get("status"),
                                                 now=datetime.now(UTC))
            if changed:
                await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object_status, k8s.GROUP, k8s.VERSION,
                    key[0], k8s.TASK_PLURAL, key[1], {"status": body})
            self._written[key] = patterns
        self._seeded = True

    async def announce(self) -> None:
        for row in await insights.unannounced(self.engine):
            pattern = Pattern(row.pattern)
            raised = row.cleared_at is None
            summary = str((row.details or {}).get("summary", ""))
            task = await self._get_task(row.namespace, row.task)
            if task is not None:
                event = client.CoreV1Event(
                    metadata=client.V1ObjectMeta(generate_name=f"{row.task}."),
                    involved_object=client.V1ObjectReference(
                        api_version=f"{k8s.GROUP}/{k8s.VERSION}", kind="Task",
                        name=row.task, namespace=row.namespace,
                        uid=task["metadata"].get("uid")),
                    type="Warning" if raised else "Normal",
                    reason=pattern.reason if raised else f"{pattern.reason}Cleared",
                    message=(summary if raised else
                             f"the {pattern.value.replace('_', ' ')} pattern stopped")[:1024],
                    source=client.V1EventSource(component="waypost-operator"),
                    first_timestamp=datetime.now(UTC), last_timestamp=datetime.now(UTC),
                    count=1)
                await asyncio.to_thread(self.core.create_namespaced_event, row.namespace, event)
            await insights.mark_announced(self.engine, row, "raised" if raised else "cleared")
