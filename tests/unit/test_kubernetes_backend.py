"""The Kubernetes backend's decisions, behind an in-memory PodApi. The real API
server path is proven by the e2e tests."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

from waypost.backends import pod_spec
from waypost.backends.kubernetes import KubernetesBackend, KubernetesBackendSettings
from waypost.engine.backend import AttemptExit, AttemptLaunch
from waypost.model.enums import FailureType


class InMemoryPodApi:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.emit: Callable[[str, dict[str, Any]], None] | None = None
        self.taskruns: dict[tuple[str, str], str] = {}

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self.secrets[(namespace, body["metadata"]["name"])] = body

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(body)
        pod["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()))
        self.pods[(namespace, pod["metadata"]["name"])] = pod
        return pod

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.secrets[(namespace, name)]["metadata"].update(patch["metadata"])

    async def delete_pod(
        self, namespace: str, name: str, *, grace_period_seconds: int = 5
    ) -> None:
        self.deleted.append(name)
        self.pods.pop((namespace, name), None)

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)

    async def find_pods(self, label_selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=") for part in label_selector.split(","))
        return [p for p in self.pods.values()
                if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]

    async def get_taskrun_uid(self, namespace: str, name: str) -> str | None:
        return self.taskruns.get((namespace, name))

    def watch_pods(self, label_selector: str,
                   on_event: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        self.emit = on_event
        return lambda: None


def _launch(**overrides: Any) -> AttemptLaunch:
    values: dict[str, Any] = {
        "run_id": uuid.UUID("00000000-0000-4000-8000-0000000000ab"), "attempt": 1,
        "claim_token": 42, "namespace": "team-a", "task": "process-order",
        "entrypoint": "examples.orders:process_order", "image": "waypost-runner:0.1.0",
        "memory_bytes": 64 * 1024 * 1024, "timeout_seconds": 60,
        "credential": "wpa.secret-credential", "coordinator_url": "http://coordinator:8080",
        "trace_id": "0" * 32,
    }
    values.update(overrides)
    return AttemptLaunch(**values)


def _terminated(pod: dict[str, Any], reason: str, code: int) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": "Failed" if code else "Succeeded", "containerStatuses": [{
        "name": "runner", "state": {"terminated": {"exitCode": code, "reason": reason}}}]}
    return pod


async def _backend() -> tuple[KubernetesBackend, InMemoryPodApi, list[AttemptExit]]:
    api = InMemoryPodApi()
    exits: list[AttemptExit] = []

    async def on_exit(exit: AttemptExit) -> None:
        exits.append(exit)

    backend = KubernetesBackend(api, KubernetesBackendSettings(coordinator_url="http://c:8080",
                                                               max_pods=3))
    backend.set_exit_handler(on_exit)
    await backend.open()
    return backend, api, exits


async def _drain() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_start_creates_secret_then_pod_owned_by_the_taskrun() -> None:
    backend, api, _ = await _backend()
    api.taskruns[("team-a", "order-1")] = "uid-of-taskrun"
    await backend.start(_launch(taskrun_name="order-1"))
    [(ns, name)] = list(api.pods)
    pod = api.pods[(ns, name)]
    assert ns == "team-a"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-of-taskrun"
    assert "wpa.secret-credential" not in str(pod)  # the credential lives in the Secret
    secret = api.secrets[("team-a", pod_spec.secret_name(_launch(), pod_spec.PodSettings(
        coordinator_url="http://c:8080")))]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    assert backend.free_slots() == 2
    await backend.close()


async def test_oom_killed_pod_is_reported_once_and_cleaned_up() -> None:
    backend, api, exits = await _backend()
    await backend.start(_launch())
    [pod] = list(api.pods.values())
    assert api.emit is not None
    oom = _terminated(pod, "OOMKilled", 137)
    api.emit("MODIFIED", oom)
    api.emit("MODIFIED", oom)  # the same end seen twice is reported once
    await _drain()
    assert [(e.failure, e.exit_code) for e in exits] == [(FailureType.OOM, 137)]
    assert "64Mi" in exits[0].message
    assert api.deleted == [pod["metadata"]["name"]]
    assert backend.free_slots() == 3
    await backend.close()


async def test_pod_deleted_while_running_is_a_lost_attempt() -> None:
    backend, api, exits = await _backend()
    await backend.start(_launch())
    [pod] = list(api.pods.values())
    running = copy.deepcopy(pod)
    running["status"] = {"phase": "Running", "containerStatuses": [
        {"name": "runner", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    assert api.emit is not None
    api.emit("MODIFIED", running)
    await _drain()
    assert exits == []
    api.emit("DELETED", running)
    await _drain()
    assert [e.failure for e in exits] == [FailureType.LOST]
    await backend.close()


async def test_clean_exit_reports_no_failure_and_stop_deletes_the_runs_pods() -> None:
    backend, api, _exits = await _backend()
    await backend.start(_launch())
    await backend.stop(_launch().run_id, "cancelled")
    assert len(api.deleted) == 1 and api.pods == {}
    backend2, api2, exits2 = await _backend()
    await backend2.start(_launch())
    [pod] = list(api2.pods.values())
    assert api2.emit is not None
    api2.emit("MODIFIED", _terminated(pod, "Completed", 0))
    await _drain()
    assert [(e.failure, e.exit_code) for e in exits2] == [(None, 0)]
    await backend.close()
    await backend2.close()
