"""The real PodApi and LeaseStore-adjacent calls, on the official Kubernetes client.

The client is synchronous; every call runs in a worker thread so the event loop
(coordinator API, dispatcher) never blocks on the API server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from waypost.backends.kubernetes import PodEventHandler
from waypost.engine.errors import BackendUnavailable
from waypost.model import k8s

log = logging.getLogger("waypost.backends.kubernetes_api")

# The watch's resourceVersion was compacted away (etcd compaction, an apiserver
# restart): the next round lists every runner Pod again, so no end is missed.
_GONE = "pod watch: resourceVersion gone (410), listing the runner Pods again"


# Answers of an API server that is away, starting or overloaded (0: no HTTP answer).
_UNAVAILABLE_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


def unavailable(exc: BaseException) -> BackendUnavailable | None:
    """The error to raise instead of ``exc`` when it means the API server did not answer
    (refused, reset, timed out, 429/5xx), so the attempt is handed back, not failed;
    None for a real answer (403, 404, 422, ...), which stays the attempt's failure."""
    if isinstance(exc, ApiException):
        if exc.status in _UNAVAILABLE_STATUSES:
            return BackendUnavailable(
                f"the Kubernetes API answered {exc.status} {exc.reason or ''}".rstrip())
        return None
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return BackendUnavailable(f"the Kubernetes API did not answer ({type(exc).__name__})")
    return None


async def _starting(fn: Callable[..., Any], *args: Any) -> Any:
    """A call an attempt's start makes, in a worker thread; an API server that did not
    answer raises BackendUnavailable."""
    try:
        return await asyncio.to_thread(fn, *args)
    except Exception as exc:
        mapped = unavailable(exc)
        if mapped is not None:
            raise mapped from exc
        raise


class KubernetesPodApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def _plain(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api_client.sanitize_for_serialization(obj)
        return data

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        await _starting(self.core.create_namespaced_secret, namespace, body)

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = await _starting(self.core.create_namespaced_pod, namespace, body)
        return self._plain(pod)

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await asyncio.to_thread(self.core.patch_namespaced_secret, name, namespace, patch)

    async def delete_pod(
        self, namespace: str, name: str, *, grace_period_seconds: int = 5
    ) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_pod, name, namespace,
                                    grace_period_seconds=grace_period_seconds)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self.core.delete_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def find_pods(self, label_selector: str) -> list[dict[str, Any]]:
        pods = await asyncio.to_thread(self.core.list_pod_for_all_namespaces,
                                       label_selector=label_selector)
        return [self._plain(p) for p in pods.items]

    async def get_taskrun_uid(self, namespace: str, name: str) -> str | None:
        try:
            obj = await _starting(self.custom.get_namespaced_custom_object, k8s.GROUP,
                                  k8s.VERSION, namespace, k8s.TASKRUN_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        uid: str | None = obj.get("metadata", {}).get("uid")
        return uid

    def watch_pods(self, label_selector: str, on_event: PodEventHandler) -> Callable[[], None]:
        stopped = threading.Event()
        current: list[watch.Watch] = []

        def loop() -> None:
            resource_version: str | None = None
            while not stopped.is_set():
                try:
                    if resource_version is None:
                        # (Re)list: every Pod is offered again, so nothing that
                        # ended while the watch was down is missed.
                        pods = self.core.list_pod_for_all_namespaces(
                            label_selector=label_selector)
                        resource_version = pods.metadata.resource_version
                        for pod in pods.items:
                            on_event("SYNC", self._plain(pod))
                    w = watch.Watch()
                    current[:] = [w]
                    for event in w.stream(self.core.list_pod_for_all_namespaces,
                                          label_selector=label_selector,
                                          resource_version=resource_version,
                                          timeout_seconds=60, allow_watch_bookmarks=True):
                        if stopped.is_set():
                            break
                        raw = event["raw_object"]
                        if event["type"] == "ERROR":
                            if raw.get("code") == 410:  # Gone: relist
                                log.info(_GONE)
                                resource_version = None
                            break
                        resource_version = raw["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            on_event(event["type"], raw)
                except ApiException as exc:
                    if exc.status == 410:
                        log.info(_GONE)
                        resource_version = None
                    else:
                        log.warning("pod watch failed: %s", exc)
                        stopped.wait(1)  # a stop ends the pause at once
                except Exception as exc:
                    log.warning("pod watch failed: %s", exc)
                    stopped.wait(1)

        thread = threading.Thread(target=loop, name="waypost-pod-watch", daemon=True)
        thread.start()

        def stop() -> None:
            stopped.set()
            for w in current:
                w.stop()

        return stop
