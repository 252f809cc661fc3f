"""The ``kubernetes`` backend: one Pod per attempt, its end read from the Pod's status.

Starting an attempt creates its credential Secret, then its Pod; making the Pod
the Secret's owner (so both go together) follows in the background, off the
attempt's start. A watch on runner Pods (labelled
``app.kubernetes.io/managed-by=waypost``) decides each attempt's end with
:func:`pod_outcome.attempt_exit_from_pod` and deletes finished Pods. Pods left
by a previous leader are picked up the same way: their reports are fenced, so
one that is no longer current changes nothing.

**Warm Pods.** A Task whose ``warmPool.enabled`` is true gets its Pod started
in warm mode (labelled with its runner id, its runner credential beside the
attempt's in the Secret): after the attempt it long-polls the coordinator and
takes the next attempt of the same task and fingerprint that the dispatcher
hands it (:mod:`waypost.engine.warm`), until its idle TTL, eviction, memory
growth or a spec change retires it; then it exits 0 and is deleted like any
finished Pod. At most ``warmPool.maxWarm`` per task and ``max_warm_pods`` in
all. The backend knows which attempt each warm Pod runs: a warm Pod that ends
mid-attempt (OOM kill, deletion, crash) fails *that* attempt, and the
attempt's timeout is enforced here per attempt (a warm Pod has no
``activeDeadlineSeconds``): past it the Pod is deleted and the attempt fails
as a timeout.

**Pre-warmed Pods.** The leader's pre-warming (:mod:`waypost.engine.prewarm`)
calls :meth:`KubernetesBackend.prewarm` to start a warm Pod with no attempt
(:func:`pod_spec.build_prewarm_pod`: same image, entrypoint, memory, env and
profile as the Task's attempt Pods, only its runner credential in its Secret).
It counts against the same caps from its creation and is idle at once; its
idle TTL retires it when nothing comes, so the pool still scales to zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from waypost.backends import pod_outcome, pod_spec
from waypost.engine import warm
from waypost.engine.backend import AttemptExit, AttemptLaunch, ExitHandler, PrewarmTarget
from waypost.engine.errors import BackendUnavailable, StoreUnavailable
from waypost.model import k8s
from waypost.model.enums import FailureType
from waypost.store import pool as store_pool

log = logging.getLogger("waypost.backends.kubernetes")

RUNNER_SELECTOR = (
    f"{k8s.LABEL_MANAGED_BY}={k8s.MANAGED_BY},"
    f"{k8s.LABEL_COMPONENT}={k8s.COMPONENT_RUNNER}"
)

PodEventHandler = Callable[[str, dict[str, Any]], None]

# Backoff of a Pod event that could not be recorded (seconds).
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
# How long past its deletion grace period a warm Pod being deleted still counts
# against the caps when its end is never seen (a watch gap that missed DELETED).
ENDING_HOLD_SECONDS = 30.0
# After the API server did not answer an attempt's start, the backend offers no free
# slot for this long, doubling while it stays away (the dispatcher claims nothing it
# could not start; the next try is the probe).
UNAVAILABLE_PAUSE_FIRST = 1.0
UNAVAILABLE_PAUSE_MAX = 8.0
# Expected while Postgres or the API server is away: logged without a traceback.
TRANSIENT_ERRORS = (*store_pool.UNAVAILABLE_ERRORS, StoreUnavailable)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    max_warm_pods: int = 50
    # The operator's OTEL_* variables: runner Pods export their spans where it does.
    otel_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _WarmPod:
    """A warm runner Pod and the attempt it runs now (None while idle)."""

    runner_id: uuid.UUID
    key: tuple[str, str]  # (namespace, pod name)
    task: tuple[str, str]  # (namespace, task)
    current: AttemptLaunch | None
    fingerprint: str = ""
    last_used: float = 0.0
    retired: bool = False
    verdict: tuple[FailureType, str] | None = None
    timer: asyncio.TimerHandle | None = None


class KubernetesBackend:
    """Runs each attempt in its own Pod."""

    name = "kubernetes"
    # Scheduling, image pull and start-up; a Pod that fails to start (ImagePullBackOff,
    # unschedulable) is judged by its own status before this runs out.
    start_timeout_seconds = 600.0
    # Attempts of one claim batch started at once (see ConcurrentStarts): each is a
    # Secret and a Pod created through the API server. The API calls run in the
    # default thread pool, which bounds them further.
    start_concurrency = 8

    def __init__(self, api: PodApi, settings: KubernetesBackendSettings) -> None:
        self.api = api
        self.settings = settings
        self._handler: ExitHandler | None = None
        # (namespace, pod) -> run (a pre-warmed Pod's runner id until it has one)
        self._live: dict[tuple[str, str], uuid.UUID] = {}
        self._reported: OrderedDict[tuple[uuid.UUID, int], None] = OrderedDict()
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stop_watch: Callable[[], None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._hub: warm.WarmHub | None = None
        self._warm: dict[uuid.UUID, _WarmPod] = {}
        self._warm_pods: dict[tuple[str, str], uuid.UUID] = {}
        # Warm Pods of a previous leader that have not ended yet (runner id -> task).
        self._foreign: dict[uuid.UUID, tuple[str, str]] = {}
        # Warm Pods whose attempt is over (deleted, cannot start) but that still run or
        # wait to start: they hold their place under the caps until the Pod is gone
        # or terminal (runner id -> task, monotonic time after which they no longer
        # count, should their deletion never be seen).
        self._ending: dict[uuid.UUID, tuple[tuple[str, str], float]] = {}
        # Pod ends that could not be recorded yet (the store away): the newest event of
        # each Pod, its next retry and the delay before it.
        self._unrecorded: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._retry_delay: dict[tuple[str, str], float] = {}
        self._retry_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._patches: set[asyncio.Task[None]] = set()
        # Starts run concurrently (start_concurrency) and beside pre-warming: the
        # warm-pool caps are decided and the new runner noted under this lock, so two
        # starts never both take the last place.
        self._admission = asyncio.Lock()
        self._unavailable_until = 0.0  # time.monotonic()
        self._unavailable_pause = 0.0

    def attach_warm(self, hub: warm.WarmHub) -> None:
        self._hub = hub
        hub.add_listener(self._on_warm_event)

    def idle_runners(self, fingerprint: str) -> list[uuid.UUID]:
        return [rid for rid, w in self._warm.items()
                if w.current is None and not w.retired and w.fingerprint == fingerprint]

    def warm_members(self) -> list[warm.PoolMember]:
        """Every warm Pod that has not ended: ours (retired ones too, until their Pod
        is gone) and a previous leader's that are still running (retired at sight)."""
        members = [warm.PoolMember(rid, w.task, w.current is None, w.last_used, w.retired)
                   for rid, w in self._warm.items()]
        members += [warm.PoolMember(rid, task, False, 0.0, True)
                    for rid, task in self._foreign.items()]
        if self._ending:
            now = asyncio.get_running_loop().time()
            for rid, (task, until) in list(self._ending.items()):
                if now > until:
                    del self._ending[rid]
                elif rid not in self._warm and rid not in self._foreign:
                    members.append(warm.PoolMember(rid, task, False, 0.0, True))
        return members

    def warm_limit(self) -> int:
        return self.settings.max_warm_pods

    async def prewarm(self, target: PrewarmTarget) -> bool:
        """Start a warm Pod for ``target``'s task before any attempt needs it.

        It is idle (assignable) at once: an attempt the dispatcher binds to it
        while it starts waits in the store for its first poll, leased as any warm
        attempt, and fails with the Pod if the Pod cannot start.
        """
        task = (target.namespace, target.task)
        async with self._admission:
            if (self._hub is None or not target.spec.warm_pool.enabled
                    or not (target.spec.image or self.settings.default_image)
                    or self.free_slots() <= 0
                    or not warm.has_room(self.warm_members(), task,
                                         target.spec.warm_pool.max_warm,
                                         self.settings.max_warm_pods)):
                return False
            runner_id, credential = await self._hub.enroll_idle(
                namespace=target.namespace, task=target.task, fingerprint=target.fingerprint,
                idle_ttl_seconds=float(target.spec.warm_pool.idle_ttl_seconds))
            pod = pod_spec.build_prewarm_pod(target, self._pod_settings(None), runner_id)
            secret = pod_spec.build_prewarm_secret(target, runner_id, credential)
            key = (target.namespace, pod["metadata"]["name"])
            self._live[key] = runner_id
            self._warm[runner_id] = _WarmPod(runner_id, key, task, None, target.fingerprint,
                                             last_used=asyncio.get_running_loop().time())
            self._warm_pods[key] = runner_id
        await self._create(target.namespace, key, secret, pod, runner_id)
        log.info("pre-warmed a pod", extra={"runner_id": str(runner_id), "pod": key[1],
                                            "task": target.task})
        return True

    def warm_pods(self) -> dict[uuid.UUID, tuple[str, str]]:
        """Runner id -> (namespace, Pod) of every warm Pod this backend keeps."""
        return {rid: w.key for rid, w in self._warm.items()}

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._handler = handler

    def free_slots(self) -> int:
        if self._unavailable_until and time.monotonic() < self._unavailable_until:
            return 0
        return self.settings.max_pods - len(self._live)

    def _api_answered(self, answered: bool) -> None:
        if answered:
            self._unavailable_until = self._unavailable_pause = 0.0
            return
        self._unavailable_pause = min(UNAVAILABLE_PAUSE_MAX,
                                      self._unavailable_pause * 2 or UNAVAILABLE_PAUSE_FIRST)
        self._unavailable_until = time.monotonic() + self._unavailable_pause

    async def open(self) -> KubernetesBackend:
        loop = asyncio.get_running_loop()

        def on_event(kind: str, pod: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self._events.put_nowait, (kind, pod))

        self._stop_watch = self.api.watch_pods(RUNNER_SELECTOR, on_event)
        self._consumer = loop.create_task(self._consume())
        return self

    async def _warm_room(self, launch: AttemptLaunch) -> bool:
        if self._hub is None or not launch.warm_pool or launch.spec is None:
            return False
        ok, evicted = await warm.admit(self._hub, self.warm_members(),
                                       (launch.namespace, launch.task),
                                       launch.spec.warm_pool.max_warm,
                                       self.settings.max_warm_pods)
        for victim in evicted:
            self._warm[victim].retired = True
        return ok

    def _pod_settings(self, owner: pod_spec.OwnerReference | None) -> pod_spec.PodSettings:
        return pod_spec.PodSettings(
            coordinator_url=self.settings.coordinator_url,
            image_pull_policy=self.settings.image_pull_policy,
            default_image=self.settings.default_image,
            owner=owner,
            extra_env=self.settings.otel_env,
        )

    async def start(self, launch: AttemptLaunch) -> None:
        try:
            await self._start(launch)
        except BackendUnavailable:
            self._api_answered(False)
            raise
        self._api_answered(True)

    async def _start(self, launch: AttemptLaunch) -> None:
        owner = None
        if launch.taskrun_name:
            uid = await self.api.get_taskrun_uid(launch.namespace, launch.taskrun_name)
            if uid:
                owner = pod_spec.OwnerReference(k8s.TASKRUN_KIND, launch.taskrun_name, uid)
        settings = self._pod_settings(owner)
        runner_id: uuid.UUID | None = None
        runner_credential: str | None = None
        async with self._admission:
            if await self._warm_room(launch):
                assert self._hub is not None and launch.spec is not None
                runner_id, runner_credential = await self._hub.enroll(
                    namespace=launch.namespace, task=launch.task,
                    fingerprint=launch.fingerprint, run_id=launch.run_id,
                    claim_token=launch.claim_token,
                    idle_ttl_seconds=float(launch.spec.warm_pool.idle_ttl_seconds))
            pod = pod_spec.build_attempt_pod(launch, settings, launch.spec,
                                             runner_id=runner_id)
            secret = pod_spec.build_attempt_secret(launch, settings, runner_credential)
            name = pod["metadata"]["name"]
            key = (pod["metadata"]["namespace"], name)
            self._live[key] = launch.run_id
            if runner_id is not None:
                self._warm[runner_id] = _WarmPod(runner_id, key,
                                                 (launch.namespace, launch.task),
                                                 launch, launch.fingerprint)
                self._warm_pods[key] = runner_id
                self._arm_timeout(self._warm[runner_id], launch)
        await self._create(launch.namespace, key, secret, pod, runner_id)

    async def _create(self, namespace: str, key: tuple[str, str], secret: dict[str, Any],
                      pod: dict[str, Any], runner_id: uuid.UUID | None) -> None:
        """Create the Secret, then the Pod; undo what was noted of it on a failure."""
        try:
            await self.api.create_secret(namespace, secret)
            created = await self.api.create_pod(namespace, pod)
        except Exception:
            self._live.pop(key, None)
            if runner_id is not None:
                self._forget_warm(runner_id)
                if self._hub is not None:
                    with contextlib.suppress(Exception):
                        await self._hub.retire([runner_id], warm.RetireReason.EXITED,
                                               busy_too=True)
            with contextlib.suppress(Exception):
                await self.api.delete_secret(namespace, secret["metadata"]["name"])
            raise
        # The Pod as the Secret's owner is for garbage collection only, not for the
        # attempt: a request the Pod's start need not wait for (nor the next launch
        # of the dispatcher's batch).
        patch = asyncio.get_running_loop().create_task(self._own_secret(
            namespace, secret["metadata"]["name"], pod_spec.secret_owner_patch(created)))
        self._patches.add(patch)
        patch.add_done_callback(self._patches.discard)

    async def _own_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            await self.api.patch_secret(namespace, name, patch)
        except Exception as exc:  # GC of the Secret is a nicety, not correctness
            log.info("could not make the pod own its secret %s/%s: %s", namespace, name,
                     _describe(exc))

    async def start_warm(self, launch: AttemptLaunch, runner_id: uuid.UUID) -> None:
        """The dispatcher bound this attempt to our idle warm Pod ``runner_id``."""
        pod = self._warm.get(runner_id)
        if pod is None or pod.retired:
            # Bound in the store to a Pod this leader does not keep (it just ended,
            # or a previous leader made it): fail it now rather than at lease expiry.
            raise RuntimeError(f"warm runner {runner_id} is not kept by this operator")
        pod.current = launch
        pod.verdict = None
        self._arm_timeout(pod, launch)

    def _arm_timeout(self, pod: _WarmPod, launch: AttemptLaunch) -> None:
        if pod.timer is not None:
            pod.timer.cancel()
        loop = asyncio.get_running_loop()
        pod.timer = loop.call_later(max(1.0, launch.timeout_seconds),
                                    lambda: loop.create_task(self._timed_out(pod, launch)))

    async def _timed_out(self, pod: _WarmPod, launch: AttemptLaunch) -> None:
        if pod.current is not launch or pod.verdict is not None:
            return
        pod.verdict = (FailureType.TIMEOUT, (
            f"the attempt ran longer than its timeout of {launch.timeout_seconds:g} s; "
            "its warm Pod was deleted"))
        with contextlib.suppress(Exception):
            await self.api.delete_pod(*pod.key)

    def _on_warm_event(self, event: warm.WarmEvent) -> None:
        pod = self._warm.get(event.runner_id)
        if pod is None:
            return
        if event.kind == "idle":
            if pod.timer is not None:
                pod.timer.cancel()
                pod.timer = None
            pod.current = None
            pod.last_used = asyncio.get_running_loop().time()
        elif event.kind == "retired":
            pod.retired = True

    def _forget_warm(self, runner_id: uuid.UUID) -> _WarmPod | None:
        pod = self._warm.pop(runner_id, None)
        if pod is not None:
            self._warm_pods.pop(pod.key, None)
            if pod.timer is not None:
                pod.timer.cancel()
        return pod

    async def _warm_pod_event(self, kind: str, pod: dict[str, Any], runner_id: uuid.UUID) -> None:
        """A warm Pod's event: it ended (or vanished) while idle or mid-attempt."""
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        # A pre-warmed Pod names no attempt: its end is read as the runner's (the
        # attempt it runs, if any, is the one this backend handed it).
        identity = (None if k8s.LABEL_RUN_ID in (meta.get("labels") or {})
                    else (runner_id, 0))
        ended = pod_outcome.attempt_exit_from_pod(pod, identity)
        if ended is None and kind != "DELETED":
            self._live.setdefault(key, identity[0] if identity is not None
                                  else pod_outcome.attempt_identity(pod)[0])
            if runner_id not in self._warm:
                # A previous leader's warm Pod: it counts against the caps until it
                # is gone. This leader never assigns it, so if it is idle it only
                # waits for its TTL; make it go now.
                labels = meta.get("labels") or {}
                self._foreign[runner_id] = (key[0], labels.get(k8s.LABEL_TASK, ""))
                if self._hub is not None and not meta.get("deletionTimestamp"):
                    with contextlib.suppress(Exception):
                        if await self._hub.retire([runner_id], warm.RetireReason.SHUTDOWN):
                            await self.api.delete_pod(*key)
            return
        self._live.pop(key, None)
        foreign_task = self._foreign.pop(runner_id, None)
        kept = self._warm.get(runner_id)
        # The attempt is over, but a Pod being deleted (or that cannot start) is still
        # there, Running or Pending, until the kubelet has stopped it: it counts
        # against the caps until it is gone, or the room would be given twice.
        phase = (pod.get("status") or {}).get("phase")
        if kind == "DELETED" or phase in ("Succeeded", "Failed"):
            self._ending.pop(runner_id, None)
        else:
            task = kept.task if kept is not None else (
                foreign_task or (key[0], (meta.get("labels") or {}).get(k8s.LABEL_TASK, "")))
            grace = meta.get("deletionGracePeriodSeconds")
            self._ending.setdefault(runner_id, (task, asyncio.get_running_loop().time()
                                                + ENDING_HOLD_SECONDS
                                                + (grace if isinstance(grace, int) else 30)))
        if kept is None or kept.current is None:
            kept = self._forget_warm(runner_id)
        # else: kept (busy, never assigned again) until its end is recorded, so that a
        # try that fails while the store is away is retried with the attempt it ran.
        if self._hub is not None:
            with contextlib.suppress(Exception):
                await self._hub.retire([runner_id], warm.RetireReason.EXITED, busy_too=True)
        current = kept.current if kept is not None else None
        if current is not None and self._handler is not None:
            if kept is not None and kept.verdict is not None:
                failure, message = kept.verdict
            elif ended is not None and ended.failure is not None:
                failure, message = ended.failure, ended.message
            elif ended is not None:
                failure, message = FailureType.EXIT, "the warm Pod exited during its attempt"
            else:
                failure, message = FailureType.LOST, "pod deleted"
            log.info("warm pod ended mid-attempt", extra={
                "run_id": str(current.run_id), "pod": key[1], "failure": str(failure)})
            await self._handler(AttemptExit(current.run_id, current.claim_token, failure,
                                            message, exit_code=ended.exit_code if ended else None))
        self._forget_warm(runner_id)
        if kind != "DELETED" and not meta.get("deletionTimestamp"):
            await self.api.delete_pod(*key)

    async def _consume(self) -> None:
        while True:
            kind, pod = await self._events.get()
            try:
                await self._on_pod(kind, pod)
            except Exception as exc:  # the store away, the API server refusing: try again
                self._retry_later(kind, pod, exc)

    def _retry_later(self, kind: str, pod: dict[str, Any], exc: Exception) -> None:
        """An event that could not be handled is handled again after a backoff, until
        it is recorded: a Pod's end is never dropped. A Pod already gone (DELETED)
        exists only in this event, so the event itself is what is kept."""
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        delay = min(max(RETRY_FIRST, self._retry_delay.get(key, 0.0) * 2), RETRY_MAX)
        self._retry_delay[key] = delay
        self._unrecorded[key] = (kind, pod)
        log.warning("could not handle the event of pod %s/%s (%s); retrying in %.1f s",
                    key[0], key[1], _describe(exc), delay,
                    exc_info=not isinstance(exc, TRANSIENT_ERRORS))
        if key not in self._retry_timers:
            self._retry_timers[key] = asyncio.get_running_loop().call_later(
                delay, self._retry_now, key)

    def _retry_now(self, key: tuple[str, str]) -> None:
        self._retry_timers.pop(key, None)
        event = self._unrecorded.pop(key, None)
        if event is not None:
            self._events.put_nowait(event)

    def _recorded(self, key: tuple[str, str]) -> None:
        self._retry_delay.pop(key, None)
        self._unrecorded.pop(key, None)
        timer = self._retry_timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        runner_label = (meta.get("labels") or {}).get(k8s.LABEL_WARM_RUNNER)
        if runner_label:
            with contextlib.suppress(ValueError):
                await self._warm_pod_event(kind, pod, uuid.UUID(runner_label))
                self._recorded(key)
                return
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
            log.info("attempt pod ended", extra={
                "run_id": str(outcome.run_id), "pod": key[1],
                "failure": str(outcome.failure) if outcome.failure else None,
                "exit_code": outcome.exit_code})
            if self._handler is not None:
                await self._handler(outcome)  # raises while the store is away: retried
            # Only a recorded end counts as reported; the same end seen again is ignored.
            self._reported[ident] = None
            while len(self._reported) > 10000:
                self._reported.popitem(last=False)
        # Finished Pods are cleaned up: once, again after a failed try (retried), and on
        # a relist if one survived.
        again = key in self._retry_delay
        if ((first or again or kind == "SYNC") and kind != "DELETED"
                and not meta.get("deletionTimestamp")):
            await self.api.delete_pod(*key)
        self._recorded(key)

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        for warm_pod in list(self._warm.values()):
            if warm_pod.current is not None and warm_pod.current.run_id == run_id:
                if warm_pod.verdict is None:
                    warm_pod.verdict = (FailureType.CANCELLED, f"stopped: {reason}")
                log.info("deleting warm pod", extra={"run_id": str(run_id),
                                                     "pod": warm_pod.key[1], "reason": reason})
                await self.api.delete_pod(*warm_pod.key,
                                          grace_period_seconds=0 if force else 5)
        # Warm Pods are labelled with their first run; the loop above found the one
        # running this run now.
        pods = await self.api.find_pods(
            f"{RUNNER_SELECTOR},{k8s.LABEL_RUN_ID}={run_id},!{k8s.LABEL_WARM_RUNNER}")
        for pod in pods:
            meta = pod["metadata"]
            log.info("deleting attempt pod", extra={"run_id": str(run_id), "pod": meta["name"],
                                                    "reason": reason})
            # force: the attempt had its grace period already; SIGKILL now.
            await self.api.delete_pod(meta["namespace"], meta["name"],
                                      grace_period_seconds=0 if force else 5)

    async def close(self) -> None:
        # Idle warm Pods go with the leader that kept them (the next leader
        # starts its own); busy ones finish their attempt as cold Pods do.
        idle = [w for w in self._warm.values() if w.current is None]
        if idle and self._hub is not None:
            with contextlib.suppress(Exception):
                await self._hub.retire([w.runner_id for w in idle], warm.RetireReason.SHUTDOWN)
            for pod in idle:
                with contextlib.suppress(Exception):
                    await self.api.delete_pod(*pod.key)
        for pod in self._warm.values():
            if pod.timer is not None:
                pod.timer.cancel()
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        if self._patches:
            await asyncio.wait(set(self._patches), timeout=5.0)
        if self._stop_watch is not None:
            self._stop_watch()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

