"""The Kubernetes backend's decisions, behind an in-memory PodApi. The real API
server path is proven by the e2e tests."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from waypost.backends import kubernetes, pod_spec
from waypost.backends.kubernetes import KubernetesBackend, KubernetesBackendSettings
from waypost.engine import warm
from waypost.engine.backend import AttemptExit, AttemptLaunch, PrewarmTarget
from waypost.engine.clock import FakeClock
from waypost.engine.errors import BackendUnavailable, StoreUnavailable
from waypost.model import k8s
from waypost.model.enums import FailureType
from waypost.model.task import TaskSpec


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
        parts = label_selector.split(",")
        wanted = dict(part.split("=") for part in parts if not part.startswith("!"))
        absent = [part[1:] for part in parts if part.startswith("!")]
        return [p for p in self.pods.values()
                if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
                and not any(k in p["metadata"]["labels"] for k in absent)]

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
    assert backend.free_slots() == 2
    await _drain()  # the owner patch runs beside the attempt, not before it starts
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Pod"
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


# --- warm Pods -------------------------------------------------------------

class FakeHub:
    """The WarmHub calls the backend makes, without a database."""

    def __init__(self) -> None:
        self.enrolled: list[uuid.UUID] = []
        self.enrolled_idle: list[dict[str, Any]] = []
        self.retired: list[tuple[uuid.UUID, str]] = []
        self.rates = warm.RateTracker()
        self.engine = SimpleNamespace(clock=FakeClock())
        self.listeners: list[Callable[[warm.WarmEvent], None]] = []

    def add_listener(self, listener: Callable[[warm.WarmEvent], None]) -> None:
        self.listeners.append(listener)

    async def enroll(self, **_: Any) -> tuple[uuid.UUID, str]:
        runner_id = uuid.uuid4()
        self.enrolled.append(runner_id)
        return runner_id, f"wpr.{runner_id.hex}.mac"

    async def enroll_idle(self, **kwargs: Any) -> tuple[uuid.UUID, str]:
        self.enrolled_idle.append(kwargs)
        return await self.enroll()

    async def retire(self, runner_ids: list[uuid.UUID], reason: str, *,
                     busy_too: bool = False) -> list[uuid.UUID]:
        self.retired += [(r, reason) for r in runner_ids]
        for listener in self.listeners:
            for r in runner_ids:
                listener(warm.WarmEvent(r, "retired", reason=reason))
        return list(runner_ids)

    def idle(self, runner_id: uuid.UUID) -> None:
        for listener in self.listeners:
            listener(warm.WarmEvent(runner_id, "idle"))


def _warm_launch(run: int, **overrides: Any) -> AttemptLaunch:
    spec = TaskSpec.model_validate({"entrypoint": "examples.warm:probe",
                                    "warmPool": {"maxWarm": 2}})
    values: dict[str, Any] = {"run_id": uuid.UUID(int=run), "claim_token": 100 + run,
                              "spec": spec, "fingerprint": "fp-1"}
    values.update(overrides)
    return _launch(**values)


async def _warm_backend(max_warm_pods: int = 50) -> tuple[
        KubernetesBackend, InMemoryPodApi, list[AttemptExit], FakeHub]:
    backend, api, exits = await _backend()
    backend.settings = KubernetesBackendSettings(coordinator_url="http://c:8080", max_pods=10,
                                                 max_warm_pods=max_warm_pods)
    hub = FakeHub()
    backend.attach_warm(hub)  # type: ignore[arg-type]
    return backend, api, exits, hub


async def test_warm_pod_shape_keeps_the_restricted_profile() -> None:
    backend, api, _, hub = await _warm_backend()
    await backend.start(_warm_launch(1))
    [pod] = list(api.pods.values())
    [runner_id] = hub.enrolled
    assert pod["metadata"]["labels"][k8s.LABEL_WARM_RUNNER] == str(runner_id)
    spec = pod["spec"]
    assert "activeDeadlineSeconds" not in spec  # the timeout is per attempt, not per Pod
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["WAYPOST_RUNNER_TOKEN"] == {"secretKeyRef": {
        "name": pod["metadata"]["name"], "key": pod_spec.RUNNER_CREDENTIAL_KEY}}
    assert env["WAYPOST_WARM_SCRUB_TMP"] == "1"
    assert "wpr." not in str(pod)  # the runner credential lives in the Secret
    [secret] = list(api.secrets.values())
    assert secret["stringData"][pod_spec.RUNNER_CREDENTIAL_KEY] == f"wpr.{runner_id.hex}.mac"
    # Pool off: a one-shot Pod with its deadline, no runner credential.
    off = TaskSpec.model_validate({"entrypoint": "examples.warm:probe",
                                   "warmPool": {"enabled": False}})
    await backend.start(_warm_launch(2, spec=off, warm_pool=False))
    cold = [p for p in api.pods.values() if k8s.LABEL_WARM_RUNNER not in p["metadata"]["labels"]]
    assert len(cold) == 1 and cold[0]["spec"]["activeDeadlineSeconds"] == 60
    assert len(hub.enrolled) == 1
    await backend.close()


async def test_oom_of_a_warm_pod_fails_the_attempt_it_runs_now() -> None:
    backend, api, exits, hub = await _warm_backend()
    await backend.start(_warm_launch(1))
    [runner_id] = hub.enrolled
    hub.idle(runner_id)  # its first attempt ended
    assert backend.idle_runners("fp-1") == [runner_id]
    assert backend.idle_runners("fp-other") == []
    second = _warm_launch(2)
    await backend.start_warm(second, runner_id)
    assert backend.idle_runners("fp-1") == []
    [pod] = list(api.pods.values())
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(pod, "OOMKilled", 137))
    await _drain()
    # Reported for the second run (the Pod's labels still name the first).
    assert [(e.run_id, e.claim_token, e.failure) for e in exits] == [
        (second.run_id, second.claim_token, FailureType.OOM)]
    assert (runner_id, "exited") in hub.retired
    assert backend.warm_pods() == {}
    assert pod["metadata"]["name"] in api.deleted
    await backend.close()


async def test_deleted_warm_pod_loses_its_attempt_and_idle_end_reports_nothing() -> None:
    backend, api, exits, hub = await _warm_backend()
    await backend.start(_warm_launch(1))
    await backend.start(_warm_launch(2))
    first, second = hub.enrolled
    pods = {p["metadata"]["labels"][k8s.LABEL_WARM_RUNNER]: p for p in api.pods.values()}
    assert api.emit is not None
    # The first is deleted mid-attempt: that attempt is lost.
    api.emit("DELETED", pods[str(first)])
    # The second finished its attempt, went idle, and exited 0 when retired (TTL).
    hub.idle(second)
    api.emit("MODIFIED", _terminated(pods[str(second)], "Completed", 0))
    await _drain()
    assert [(e.run_id, e.failure) for e in exits] == [(uuid.UUID(int=1), FailureType.LOST)]
    assert backend.warm_pods() == {}
    await backend.close()


async def test_stop_deletes_the_warm_pod_running_that_run() -> None:
    backend, api, _, hub = await _warm_backend()
    await backend.start(_warm_launch(1))
    [runner_id] = hub.enrolled
    hub.idle(runner_id)
    await backend.start_warm(_warm_launch(7), runner_id)
    [pod] = list(api.pods.values())
    await backend.stop(uuid.UUID(int=7), "run cancelled")
    assert api.deleted == [pod["metadata"]["name"]]
    await backend.close()


async def test_caps_per_task_and_global_count_warm_pods_until_they_are_gone() -> None:
    backend, api, _, hub = await _warm_backend(max_warm_pods=3)
    # maxWarm 2 for this task: the third concurrent attempt gets a one-shot Pod.
    for run in (1, 2, 3):
        await backend.start(_warm_launch(run))
    assert len(hub.enrolled) == 2 and len(api.pods) == 3
    for runner_id in hub.enrolled:
        hub.idle(runner_id)
    # Another task fills the global cap (3), then needs room: an idle one is evicted,
    # but its Pod runs until its runner has exited, so this attempt is one-shot.
    other = TaskSpec.model_validate({"entrypoint": "examples.warm:noop"})
    await backend.start(_warm_launch(4, task="other", spec=other, fingerprint="fp-2"))
    assert len(hub.enrolled) == 3 and hub.retired == []
    await backend.start(_warm_launch(5, task="third", spec=other, fingerprint="fp-3"))
    assert len(hub.enrolled) == 3
    assert [reason for _, reason in hub.retired] == ["evicted"]
    victim = hub.retired[0][0]
    assert victim in hub.enrolled[:2]  # an idle one, not the busy "other"
    # While the evicted Pod still runs, nothing more is evicted and no warm Pod added.
    await backend.start(_warm_launch(6, task="fourth", spec=other, fingerprint="fp-4"))
    assert len(hub.enrolled) == 3 and len(hub.retired) == 1
    assert len(backend.warm_members()) == 3
    # The evicted runner exits; its Pod ends: now there is room.
    by_runner = {p["metadata"]["labels"].get(k8s.LABEL_WARM_RUNNER): p
                 for p in api.pods.values()}
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(by_runner[str(victim)], "Completed", 0))
    await _drain()
    assert len(backend.warm_members()) == 2
    await backend.start(_warm_launch(7, task="third", spec=other, fingerprint="fp-3"))
    assert len(hub.enrolled) == 4 and len(backend.warm_members()) == 3
    await backend.close()


class SlowEnrollHub(FakeHub):
    """Enrollment is a database round trip: it yields to the loop."""

    async def enroll(self, **kwargs: Any) -> tuple[uuid.UUID, str]:
        for _ in range(3):
            await asyncio.sleep(0)
        return await super().enroll(**kwargs)


async def test_caps_hold_when_a_batch_starts_side_by_side() -> None:
    """The dispatcher starts a batch's attempts together (start_concurrency): the
    per-task and global caps are still decided one start at a time."""
    backend, api, _ = await _backend()
    backend.settings = KubernetesBackendSettings(coordinator_url="http://c:8080", max_pods=20,
                                                 max_warm_pods=3)
    hub = SlowEnrollHub()
    backend.attach_warm(hub)  # type: ignore[arg-type]
    assert backend.start_concurrency > 1
    other = TaskSpec.model_validate({"entrypoint": "examples.warm:noop"})
    await asyncio.gather(
        *(backend.start(_warm_launch(run)) for run in range(1, 6)),
        *(backend.start(_warm_launch(run, task="other", spec=other, fingerprint="fp-2"))
          for run in range(6, 10)))
    assert len(api.pods) == 9
    assert len(hub.enrolled) == 3  # the global cap
    per_task: dict[str, int] = {}
    for pod in api.pods.values():
        if k8s.LABEL_WARM_RUNNER in pod["metadata"]["labels"]:
            task = pod["metadata"]["labels"][k8s.LABEL_TASK]
            per_task[task] = per_task.get(task, 0) + 1
    assert per_task["process-order"] <= 2  # maxWarm of the task
    assert len(backend.warm_members()) == 3
    await backend.close()


async def test_a_warm_pod_being_deleted_counts_until_it_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted Pod runs on through its grace period (phase Running with a
    deletionTimestamp): its attempt is lost at once, but its place under the caps
    is given back only when the Pod is gone (the burst on the cluster saw 4 warm
    Pods with maxWarmPods=3 when it was given back at the deletion)."""
    backend, api, exits, hub = await _warm_backend(max_warm_pods=1)
    await backend.start(_warm_launch(1))
    [runner_id] = hub.enrolled
    [pod] = list(api.pods.values())
    terminating = copy.deepcopy(pod)
    terminating["metadata"].update(deletionTimestamp="2026-01-01T00:00:30Z",
                                   deletionGracePeriodSeconds=30)
    terminating["status"] = {"phase": "Running", "containerStatuses": [
        {"name": "runner", "state": {"running": {}}}]}
    assert api.emit is not None
    api.emit("MODIFIED", terminating)
    await _drain()
    assert [(e.run_id, e.failure) for e in exits] == [(uuid.UUID(int=1), FailureType.LOST)]
    assert backend.warm_pods() == {}
    assert [(m.runner_id, m.retired) for m in backend.warm_members()] == [(runner_id, True)]
    await backend.start(_warm_launch(2))
    assert len(hub.enrolled) == 1  # no room while the deleted Pod still runs
    # Its runner stopped: the Pod is terminal, then gone; the room is back.
    api.emit("MODIFIED", _terminated(terminating, "Error", 143))
    api.emit("DELETED", _terminated(terminating, "Error", 143))
    await _drain()
    assert backend.warm_members() == []
    assert len(exits) == 1  # the attempt's end was recorded once
    await backend.start(_warm_launch(3))
    assert len(hub.enrolled) == 2
    # A deletion whose end is never seen (a watch gap) stops counting after the
    # grace period and a margin.
    [second] = hub.enrolled[1:]
    [pod] = [p for p in api.pods.values()
             if p["metadata"]["labels"].get(k8s.LABEL_WARM_RUNNER) == str(second)]
    gone = copy.deepcopy(pod)
    gone["metadata"].update(deletionTimestamp="2026-01-01T00:00:30Z",
                            deletionGracePeriodSeconds=0)
    monkeypatch.setattr(kubernetes, "ENDING_HOLD_SECONDS", 0.05)
    api.emit("MODIFIED", gone)
    await _drain()
    assert len(backend.warm_members()) == 1
    await asyncio.sleep(0.1)
    assert backend.warm_members() == []
    await backend.close()


async def test_a_previous_leaders_warm_pod_counts_until_it_is_gone() -> None:
    backend, api, _, hub = await _warm_backend(max_warm_pods=1)
    old_pod = {"metadata": {"name": "old-warm", "namespace": "team-a", "labels": {
        k8s.LABEL_WARM_RUNNER: str(uuid.UUID(int=99)), k8s.LABEL_TASK: "probe",
        k8s.LABEL_RUN_ID: str(uuid.UUID(int=98))}, "annotations": {
        k8s.ANNOTATION_CLAIM_TOKEN: "5"}}, "status": {"phase": "Running"}}
    assert api.emit is not None
    api.emit("SYNC", old_pod)
    await _drain()
    assert (uuid.UUID(int=99), "shutdown") in hub.retired
    assert [m.retired for m in backend.warm_members()] == [True]
    await backend.start(_warm_launch(1))
    assert hub.enrolled == []  # the cap (1) is held by the old Pod
    api.emit("DELETED", old_pod)
    await _drain()
    assert backend.warm_members() == []
    await backend.start(_warm_launch(2))
    assert len(hub.enrolled) == 1
    await backend.close()


async def test_a_warm_pod_past_the_attempt_timeout_is_deleted_as_timeout() -> None:
    backend, api, exits, _ = await _warm_backend()
    launch = _warm_launch(1, timeout_seconds=1)
    await backend.start(launch)
    [pod] = list(api.pods.values())
    await asyncio.sleep(1.3)
    assert api.deleted == [pod["metadata"]["name"]]
    assert api.emit is not None
    api.emit("DELETED", pod)
    await _drain()
    assert [(e.run_id, e.failure) for e in exits] == [(launch.run_id, FailureType.TIMEOUT)]
def _target(task: str = "probe", **spec: Any) -> PrewarmTarget:
    values: dict[str, Any] = {"entrypoint": "examples.warm:probe", "image": "waypost-runner:1",
                              "warmPool": {"maxWarm": 2, "idleTTLSeconds": 7}}
    values.update(spec)
    return PrewarmTarget(namespace="team-a", task=task, spec=TaskSpec.model_validate(values),
                         fingerprint=f"fp-{task}", coordinator_url="http://c:8080")


async def test_a_prewarmed_pod_is_idle_at_once_and_its_end_fails_the_attempt_it_took() -> None:
    backend, api, exits, hub = await _warm_backend()
    assert await backend.prewarm(_target())
    [runner_id] = hub.enrolled
    assert hub.enrolled_idle == [{"namespace": "team-a", "task": "probe",
                                  "fingerprint": "fp-probe", "idle_ttl_seconds": 7.0}]
    [pod] = list(api.pods.values())
    labels = pod["metadata"]["labels"]
    assert labels[k8s.LABEL_WARM_RUNNER] == str(runner_id) and k8s.LABEL_RUN_ID not in labels
    [secret] = list(api.secrets.values())
    assert secret["stringData"] == {pod_spec.RUNNER_CREDENTIAL_KEY: f"wpr.{runner_id.hex}.mac"}
    await _drain()
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    # Idle (assignable) while it still starts; it counts against the caps and Pod slots.
    assert backend.idle_runners("fp-probe") == [runner_id]
    assert [(m.task, m.idle) for m in backend.warm_members()] == [(("team-a", "probe"), True)]
    assert backend.free_slots() == 9
    # Its watch events (it names no attempt) are read as the runner's: running is nothing.
    assert api.emit is not None
    api.emit("MODIFIED", {**pod, "status": {"phase": "Running"}})
    await _drain()
    assert exits == [] and backend.idle_runners("fp-probe") == [runner_id]
    # The dispatcher hands it an attempt; an OOM kill fails that attempt.
    launch = _warm_launch(3, task="probe", fingerprint="fp-probe")
    await backend.start_warm(launch, runner_id)
    api.emit("MODIFIED", _terminated(pod, "OOMKilled", 137))
    await _drain()
    assert [(e.run_id, e.claim_token, e.failure) for e in exits] == [
        (launch.run_id, launch.claim_token, FailureType.OOM)]
    assert backend.warm_members() == [] and backend.free_slots() == 10
    assert pod["metadata"]["name"] in api.deleted
    await backend.close()


async def test_an_idle_prewarmed_pod_retired_by_its_ttl_ends_quietly() -> None:
    backend, api, exits, hub = await _warm_backend()
    assert await backend.prewarm(_target())
    [runner_id] = hub.enrolled
    [pod] = list(api.pods.values())
    await hub.retire([runner_id], "idle_ttl")
    assert backend.idle_runners("fp-probe") == []
    # Retired but not gone: it still counts until its runner has exited.
    assert [m.retired for m in backend.warm_members()] == [True]
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(pod, "Completed", 0))
    await _drain()
    assert exits == [] and backend.warm_members() == []
    await backend.close()


async def test_prewarming_stays_within_the_caps_and_needs_a_pool_and_an_image() -> None:
    backend, api, _, hub = await _warm_backend(max_warm_pods=3)
    # maxWarm 2 per task.
    assert await backend.prewarm(_target())
    assert await backend.prewarm(_target())
    assert not await backend.prewarm(_target())
    # The global cap (3), and never by evicting.
    assert await backend.prewarm(_target("other"))
    assert not await backend.prewarm(_target("third"))
    assert len(api.pods) == 3 and hub.retired == []
    backend2, api2, _, hub2 = await _warm_backend()
    assert not await backend2.prewarm(_target(warmPool={"enabled": False}))
    assert not await backend2.prewarm(_target(image=None))  # no image, no default
    assert api2.pods == {} and hub2.enrolled == []
    await backend.close()
    await backend2.close()


class FlakyStore:
    """An exit handler whose store is away for the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.recorded: list[AttemptExit] = []

    async def __call__(self, exit: AttemptExit) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreUnavailable("the database is unavailable")
        self.recorded.append(exit)


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_pod_end_seen_while_the_store_is_away_is_retried_until_recorded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16: Pod-ended events that arrived during a database outage were dropped
    ("could not handle a pod event") and the attempt was declared lost ~57 s later."""
    monkeypatch.setattr(kubernetes, "RETRY_FIRST", 0.02)
    backend, api, _ = await _backend()
    store = FlakyStore(failures=3)
    backend.set_exit_handler(store)
    await backend.start(_launch())
    [pod] = list(api.pods.values())
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(pod, "Completed", 0))
    await _until(lambda: bool(store.recorded))
    assert store.calls == 4
    assert [(e.failure, e.exit_code) for e in store.recorded] == [(None, 0)]
    assert api.deleted == [pod["metadata"]["name"]]  # cleaned up once it was recorded
    api.emit("MODIFIED", _terminated(pod, "Completed", 0))  # seen again: nothing new
    await _drain()
    assert store.calls == 4
    warnings = [r for r in caplog.records if r.name == "waypost.backends.kubernetes"
                and r.levelname == "WARNING"]
    assert len(warnings) == 3
    assert all("StoreUnavailable: the database is unavailable" in r.getMessage()
               and not r.exc_info for r in warnings)
    await backend.close()


async def test_a_pod_deleted_while_the_store_is_away_is_still_a_lost_attempt(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pod is gone: only the kept event can tell its end."""
    monkeypatch.setattr(kubernetes, "RETRY_FIRST", 0.02)
    backend, api, _ = await _backend()
    store = FlakyStore(failures=2)
    backend.set_exit_handler(store)
    await backend.start(_launch())
    [pod] = list(api.pods.values())
    api.pods.clear()
    assert api.emit is not None
    api.emit("DELETED", pod)
    await _until(lambda: bool(store.recorded))
    assert [e.failure for e in store.recorded] == [FailureType.LOST]
    assert api.deleted == []
    await backend.close()


async def test_a_warm_pods_end_seen_while_the_store_is_away_is_retried(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes, "RETRY_FIRST", 0.02)
    backend, api, _, hub = await _warm_backend()
    store = FlakyStore(failures=2)
    backend.set_exit_handler(store)
    await backend.start(_warm_launch(1))
    assert len(hub.enrolled) == 1
    [pod] = list(api.pods.values())
    assert api.emit is not None
    api.emit("MODIFIED", _terminated(pod, "OOMKilled", 137))
    await _until(lambda: bool(store.recorded))
    assert [(e.run_id, e.failure) for e in store.recorded] == [
        (uuid.UUID(int=1), FailureType.OOM)]
    assert backend.warm_pods() == {} and backend.idle_runners("fp-1") == []
    assert pod["metadata"]["name"] in api.deleted
    await backend.close()


async def test_an_api_server_that_does_not_answer_a_start_closes_the_slots_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start raises BackendUnavailable (the dispatcher hands the run back); no slot
    is offered for a pause that doubles while the API stays away and ends with the
    next start that goes through."""
    now = [1000.0]
    monkeypatch.setattr(kubernetes.time, "monotonic", lambda: now[0])
    backend, api, _ = await _backend()
    create_pod = api.create_pod

    async def away(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendUnavailable("the Kubernetes API did not answer (MaxRetryError)")

    api.create_pod = away  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailable):
        await backend.start(_launch())
    assert not api.pods and not api.secrets  # its Secret is undone too
    assert backend.free_slots() == 0
    now[0] += kubernetes.UNAVAILABLE_PAUSE_FIRST + 0.01
    assert backend.free_slots() == 3
    with pytest.raises(BackendUnavailable):
        await backend.start(_launch())
    now[0] += kubernetes.UNAVAILABLE_PAUSE_FIRST + 0.01
    assert backend.free_slots() == 0  # the second pause is twice as long
    now[0] += kubernetes.UNAVAILABLE_PAUSE_FIRST
    assert backend.free_slots() == 3
    api.create_pod = create_pod  # type: ignore[method-assign]
    await backend.start(_launch())
    assert backend.free_slots() == 2
    with pytest.raises(BackendUnavailable):  # after an answer, the pause starts over
        api.create_pod = away  # type: ignore[method-assign]
        await backend.start(_launch(run_id=uuid.uuid4()))
    now[0] += kubernetes.UNAVAILABLE_PAUSE_FIRST + 0.01
    assert backend.free_slots() == 2
    await backend.close()


async def test_a_start_refused_by_the_api_server_is_no_outage() -> None:
    """A real answer (422: an invalid Pod) is the attempt's failure, not an outage: the
    slots stay open."""
    backend, api, _ = await _backend()

    async def invalid(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("422 Unprocessable Entity")

    api.create_pod = invalid  # type: ignore[method-assign]
    with pytest.raises(ValueError):
        await backend.start(_launch())
    assert backend.free_slots() == 3
    await backend.close()
