"""The ``kubernetes`` backend: one Pod per attempt, its end read from the Pod's status.

Starting an attempt creates its credential Secret, then its Pod, then makes the
Pod the Secret's owner so both go together. A watch on runner Pods (labelled
``app.kubernetes.io/managed-by=waypost``) decides each attempt's end with
:func:`pod_outcome.attempt_exit_from_pod` and deletes finished Pods. Pods left
by a previous leader are picked up the same way: their reports are fenced, so
one that is no longer current changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from waypost.backends import pod_outcome, pod_spec
from waypost.engine.backend import AttemptExit, AttemptLaunch, ExitHandler
from waypost.model import k8s
from waypost.model.enums import FailureType

log = logging.getLogger("waypost.backends.kubernetes")

RUNNER_SELECTOR = (
    f"{k8s.LABEL_MANAGED_BY}={k8s.MANAGED_BY},"
    f"{k8s.LABEL_COMPONENT}={k8s.COMPONENT_RUNNER}"
)

PodEventHandler = Callable[[str, dict[str, Any]], None]


class PodApi(Protocol):
    """The few Kubernetes calls the backend makes."""

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None: ...

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...

    async def delete_pod(
        self, namespace: str, name: str, *, grace_period_seconds: int = 5
    ) -> None:
        """Delete; a Pod that is already gone is not an error."""
        ...

    async def delete_secret(self, namespace: str, name: str) -> None: ...

    async def find_pods(self, label_selector: str) -> list[dict[str, Any]]: ...

    async def get_taskrun_uid(self, namespace: str, name: str) -> str | None: ...

    def watch_pods(self, label_selector: str, on_event: PodEventHandler) -> Callable[[], None]:
        """Stream events of matching Pods (``SYNC`` for each on (re)list) to
        ``on_event`` from a background thread; returns a function that stops it."""
        ...


@dataclass(frozen=True)
class KubernetesBackendSettings:
    coordinator_url: str
    default_image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    max_pods: int = 200


class KubernetesBackend:
    """Runs each attempt in its own Pod."""

    name = "kubernetes"
    # Scheduling, image pull and start-up; a Pod that fails to start (ImagePullBackOff,
    # unschedulable) is judged by its own status before this runs out.
    start_timeout_seconds = 600.0

    def __init__(self, api: PodApi, settings: KubernetesBackendSettings) -> None:
        self.api = api
        self.settings = settings
        self._handler: ExitHandler | None = None
        self._live: dict[tuple[str, str], uuid.UUID] = {}  # (namespace, pod) -> run
        self._reported: OrderedDict[tuple[uuid.UUID, int], None] = OrderedDict()
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stop_watch: Callable[[], None] | None = None
        self._consumer: asyncio.Task[None] | None = None

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._handler = handler

    def free_slots(self) -> int:
        return self.settings.max_pods - len(self._live)

    async def open(self) -> KubernetesBackend:
        loop = asyncio.get_running_loop()

        def on_event(kind: str, pod: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self._events.put_nowait, (kind, pod))

        self._stop_watch = self.api.watch_pods(RUNNER_SELECTOR, on_event)
        self._consumer = loop.create_task(self._consume())
        return self

    async def start(self, launch: AttemptLaunch) -> None:
        owner = None
        if launch.taskrun_name:
            uid = await self.api.get_taskrun_uid(launch.namespace, launch.taskrun_name)
            if uid:
                owner = pod_spec.OwnerReference(k8s.TASKRUN_KIND, launch.taskrun_name, uid)
        settings = pod_spec.PodSettings(
            coordinator_url=self.settings.coordinator_url,
            image_pull_policy=self.settings.image_pull_policy,
            default_image=self.settings.default_image,
            owner=owner,
        )
        pod = pod_spec.build_attempt_pod(launch, settings, launch.spec)
        secret = pod_spec.build_attempt_secret(launch, settings)
        name = pod["metadata"]["name"]
        self._live[(launch.namespace, name)] = launch.run_id
        try:
            await self.api.create_secret(launch.namespace, secret)
            created = await self.api.create_pod(launch.namespace, pod)
        except Exception:
            self._live.pop((launch.namespace, name), None)
            with contextlib.suppress(Exception):
                await self.api.delete_secret(launch.namespace, secret["metadata"]["name"])
            raise
        with contextlib.suppress(Exception):  # GC of the Secret is a nicety, not correctness
            await self.api.patch_secret(launch.namespace, secret["metadata"]["name"],
                                        pod_spec.secret_owner_patch(created))

    async def _consume(self) -> None:
        while True:
            kind, pod = await self._events.get()
            try:
                await self._on_pod(kind, pod)
            except Exception:
                log.exception("could not handle a pod event")

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        try:
            outcome = pod_outcome.attempt_exit_from_pod(pod)
        except (KeyError, ValueError):
            return  # not one of ours after all (labels without annotations)
        if kind == "DELETED" and outcome is None:
            run_id, token = pod_outcome.attempt_identity(pod)
            outcome = AttemptExit(run_id, token, FailureType.LOST, "pod deleted")
        if outcome is None:
            self._live.setdefault(key, pod_outcome.attempt_identity(pod)[0])
            return
        self._live.pop(key, None)
        ident = (outcome.run_id, outcome.claim_token)
        first = ident not in self._reported
        if first:
            self._reported[ident] = None
            while len(self._reported) > 10000:
                self._reported.popitem(last=False)
            log.info("attempt pod ended", extra={
                "run_id": str(outcome.run_id), "pod": key[1],
                "failure": str(outcome.failure) if outcome.failure else None,
                "exit_code": outcome.exit_code})
            if self._handler is not None:
                await self._handler(outcome)
        # Finished Pods are cleaned up: once, and again on a relist if one survived.
        if (first or kind == "SYNC") and kind != "DELETED" and not meta.get("deletionTimestamp"):
            await self.api.delete_pod(*key)

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        pods = await self.api.find_pods(f"{RUNNER_SELECTOR},{k8s.LABEL_RUN_ID}={run_id}")
        for pod in pods:
            meta = pod["metadata"]
            log.info("deleting attempt pod", extra={"run_id": str(run_id), "pod": meta["name"],
                                                    "reason": reason})
            # force: the attempt had its grace period already; SIGKILL now.
            await self.api.delete_pod(meta["namespace"], meta["name"],
                                      grace_period_seconds=0 if force else 5)

    async def close(self) -> None:
        if self._stop_watch is not None:
            self._stop_watch()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

