"""Pure builders of the Kubernetes objects of one attempt: its Pod and its Secret.

Nothing here calls the API: the functions take an :class:`AttemptLaunch` and
:class:`PodSettings` and return manifests as dicts, pinned by golden-file tests
(CloudNativePG's ``pkg/specs`` does the same).

The attempt's credential never appears in the Pod spec (anyone who may read
Pods would see it): it goes into a per-attempt Secret, which the kubelet puts
into the runner's environment (``WAYPOST_ATTEMPT_TOKEN`` from a
``secretKeyRef``; the runner removes it from its environment before task code
runs). The Secret must exist before the Pod is created, or the kubelet keeps
the Pod waiting in ``CreateContainerConfigError``. Create the Secret (owned by
the TaskRun when there is one), then the Pod, then make the Pod the Secret's
owner (:func:`secret_owner_patch`) so both go away together.

**No volumes.** A Pod with any volume waits in the kubelet until its volumes
are mounted, and the kubelet checks that every 300 ms
(``podAttachAndMountRetryInterval``): measured on the e2e cluster, a Pod with an
emptyDir alone started about 300 ms later at the median than the same Pod
without one, whatever the volume held. So the credential comes as an
environment variable rather than a mounted Secret, and ``/tmp`` is the
container's own writable layer rather than an emptyDir (bounded by an
``ephemeral-storage`` limit, as the emptyDir's size limit did).

Runner Pods follow the ``restricted`` Pod Security profile: non-root, no
privilege escalation, every capability dropped, the RuntimeDefault seccomp
profile, and no service-account token. Their root filesystem is writable (the
profile does not ask for a read-only one; ``/tmp`` needs to be writable and a
volume for it costs the wait above); the image's files belong to root, and the
runner runs as ``RUNNER_UID``.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from waypost.engine.backend import AttemptLaunch, PrewarmTarget
from waypost.model import k8s
from waypost.model.task import DEFAULT_CANCEL_GRACE_SECONDS, TaskSpec
from waypost.sdk import protocol

CONTAINER_NAME = "runner"
RUNNER_COMMAND = ("waypost-runner",)
RUNNER_UID = 10001

CREDENTIAL_KEY = "token"
# A warm Pod's own credential (it polls for the next attempt with it), in the
# same Secret as its first attempt's.
RUNNER_CREDENTIAL_KEY = "runner-token"
TMP_DIR = "/tmp"  # in the container's writable layer
# The most the container may write (its /tmp, its logs): the kubelet evicts the Pod
# past it. Nothing is reserved for it when the Pod is scheduled (request 0).
EPHEMERAL_STORAGE_LIMIT = "1Gi"

MAX_NAME_LENGTH = 63
_MI = 1024 * 1024
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class OwnerReference:
    """The object whose deletion removes the attempt's Pod and Secret."""

    kind: str  # k8s.TASKRUN_KIND or k8s.TASK_KIND
    name: str
    uid: str
    api_version: str = k8s.API_VERSION

    def manifest(self, *, controller: bool = True) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
        }


@dataclass(frozen=True)
class PodSettings:
    """How the operator shapes runner Pods; the same for every attempt but ``owner``."""

    coordinator_url: str
    image_pull_policy: str = "IfNotPresent"
    default_image: str | None = None
    """Image for Tasks that name none: the runner image with the task code baked in."""
    owner: OwnerReference | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Variables every runner gets before the task's own (the operator's ``OTEL_*``
    tracing configuration); a task's ``env`` may override them."""


def _dns_part(text: str) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")


def pod_name(launch: AttemptLaunch) -> str:
    """``wp-<task>-<short run id>-<attempt>``: a DNS label of at most 63 characters."""
    return pod_name_for(launch.task, str(launch.run_id), launch.attempt)


def pod_name_for(task_name: str, run_id: str, attempt: int) -> str:
    """The Pod name of an attempt, from what a run record knows (status mirror)."""
    # The tail of the id: random in both UUIDv4 and UUIDv7 (whose head is a
    # timestamp, so runs created together would share it).
    suffix = f"-{uuid.UUID(run_id).hex[-8:]}-{attempt}"
    room = MAX_NAME_LENGTH - len("wp-") - len(suffix)
    task = _dns_part(task_name)[:room].strip("-") or "task"
    return f"wp-{task}{suffix}"


def label_value(text: str) -> str:
    """A valid label value for ``text``: itself when it fits, else shortened with a hash."""
    if len(text) <= MAX_NAME_LENGTH and re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]",
                                                     text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: MAX_NAME_LENGTH - 9].strip("-_.")
    return f"{head}-{digest}" if head else digest


def attempt_labels(launch: AttemptLaunch, settings: PodSettings) -> dict[str, str]:
    """Labels tying an object to its task, run and attempt."""
    return {
        k8s.LABEL_MANAGED_BY: k8s.MANAGED_BY,
        k8s.LABEL_COMPONENT: k8s.COMPONENT_RUNNER,
        k8s.LABEL_TASK: label_value(launch.task),
        k8s.LABEL_RUN_ID: str(launch.run_id),
        k8s.LABEL_ATTEMPT: str(launch.attempt),
    }


def run_selector(run_id: str) -> str:
    """Label selector of every object of a run's attempts."""
    return f"{k8s.LABEL_MANAGED_BY}={k8s.MANAGED_BY},{k8s.LABEL_RUN_ID}={run_id}"


def memory_quantity(n_bytes: int) -> str:
    """``<n>Mi`` when the byte count is a whole number of MiB, else plain bytes."""
    if n_bytes <= 0:
        raise ValueError(f"memory must be positive, got {n_bytes} bytes")
    return f"{n_bytes // _MI}Mi" if n_bytes % _MI == 0 else str(n_bytes)


def _metadata(launch: AttemptLaunch, settings: PodSettings, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": launch.namespace,
        "labels": attempt_labels(launch, settings),
        "annotations": {
            k8s.ANNOTATION_TASK: launch.task,
            k8s.ANNOTATION_CLAIM_TOKEN: str(launch.claim_token),
            k8s.ANNOTATION_TRACE_ID: launch.trace_id,
        },
    }
    if settings.owner is not None:
        meta["ownerReferences"] = [settings.owner.manifest()]
    return meta


def secret_name(launch: AttemptLaunch, settings: PodSettings) -> str:
    return pod_name(launch)


def build_attempt_secret(launch: AttemptLaunch, settings: PodSettings,
                         runner_credential: str | None = None) -> dict[str, Any]:
    """The Secret holding the attempt's credential (and a warm Pod's own); create it
    before the Pod."""
    data = {CREDENTIAL_KEY: launch.credential}
    if runner_credential is not None:
        data[RUNNER_CREDENTIAL_KEY] = runner_credential
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(launch, settings, secret_name(launch, settings)),
        "type": "Opaque",
        "immutable": True,
        "stringData": data,
    }


def secret_owner_patch(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch making a created Pod (with its uid) the owner of its Secret.

    It replaces the Secret's owner references: the Pod is owned by the same
    TaskRun, so the chain still leads there.
    """
    meta = pod["metadata"]
    return {"metadata": {"ownerReferences": [{
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": False,
    }]}}


def _base_env(settings: PodSettings, task_env: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {
        # Defaults a task may override: nothing writes bytecode to the
        # read-only image, and HOME is somewhere writable.
        "HOME": TMP_DIR,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    values.update(settings.extra_env)
    values.update(task_env)
    return values


# Runner variables whose values the kubelet takes from the Pod's Secret (by key).
_FROM_SECRET = {protocol.ENV_ATTEMPT_TOKEN: CREDENTIAL_KEY,
                protocol.ENV_RUNNER_TOKEN: RUNNER_CREDENTIAL_KEY}


def _env_list(values: Mapping[str, str], secret: str) -> list[dict[str, Any]]:
    """The container's ``env``: plain values, and the credentials as references to
    ``secret`` (their values in ``values`` are placeholders)."""
    return [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret,
                                                       "key": _FROM_SECRET[k]}}}
            if k in _FROM_SECRET else {"name": k, "value": values[k]}
            for k in sorted(values)]


def _env(launch: AttemptLaunch, settings: PodSettings, warm: bool,
         secret: str) -> list[dict[str, Any]]:
    values = _base_env(settings, launch.env)
    # The runner's own variables win: a task's env cannot redirect the runner or
    # its credential. A warm Pod's /tmp is its own: what a run leaves there is
    # removed after it. The credentials' values come from the Secret.
    values = protocol.runner_env(
        coordinator_url=settings.coordinator_url, run_id=str(launch.run_id),
        attempt=launch.attempt, task=launch.task, trace_id=launch.trace_id,
        token="", base=values, runner_token="" if warm else None, scrub_tmp=warm,
    )
    return _env_list(values, secret)


def _env_from(task: TaskSpec | None) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    for source in task.env_from if task is not None else []:
        item: dict[str, Any] = {}
        if source.config_map_ref is not None:
            item["configMapRef"] = {"name": source.config_map_ref.name}
        if source.secret_ref is not None:
            item["secretRef"] = {"name": source.secret_ref.name}
        if source.prefix:
            item["prefix"] = source.prefix
        sources.append(item)
    return sources


def build_attempt_pod(
    launch: AttemptLaunch, settings: PodSettings, task: TaskSpec | None = None,
    runner_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The Pod that runs one attempt with ``waypost-runner``.

    ``task`` adds what the launch does not carry (envFrom, serviceAccountName);
    the launch's memory wins over the Task's, since an OOM retry grows it.
    With ``runner_id`` the Pod is a warm one: after this attempt it takes the
    next ones of the task (its runner credential is in the same Secret), so
    the attempt's timeout is enforced by the operator per attempt rather than
    by ``activeDeadlineSeconds`` over the Pod's life.
    """
    if launch.timeout_seconds <= 0:
        raise ValueError(f"timeout must be positive, got {launch.timeout_seconds}")
    meta = _metadata(launch, settings, pod_name(launch))
    if runner_id is not None:
        meta["labels"][k8s.LABEL_WARM_RUNNER] = str(runner_id)
    env = _env(launch, settings, runner_id is not None, secret_name(launch, settings))
    return _runner_pod(
        meta, task_name=launch.task, image=launch.image or settings.default_image,
        memory_bytes=launch.memory_bytes, env=env, task=task, settings=settings,
        deadline=None if runner_id is not None else launch.timeout_seconds)


def _runner_pod(
    meta: dict[str, Any], *, task_name: str, image: str | None, memory_bytes: int,
    env: list[dict[str, Any]], task: TaskSpec | None, settings: PodSettings,
    deadline: float | None,
) -> dict[str, Any]:
    """A runner Pod: the ``restricted`` profile, no service-account token, no
    volumes (its credentials in ``env``, from its Secret); ``deadline`` (seconds)
    bounds a one-shot Pod's life, a warm one has none (its attempts' timeouts are
    the operator's)."""
    if not image:
        raise ValueError(
            f"task {task_name!r} names no image and the operator has no default runner image"
        )
    memory = memory_quantity(memory_bytes)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(RUNNER_COMMAND),
        "env": env,
    }
    env_from = _env_from(task)
    if env_from:
        container["envFrom"] = env_from
    container.update({
        # Request = limit: the scheduler places the Pod where its whole limit
        # fits, and the Pod is never the first evicted under memory pressure.
        "resources": {
            "limits": {"memory": memory, "ephemeral-storage": EPHEMERAL_STORAGE_LIMIT},
            "requests": {"memory": memory, "ephemeral-storage": "0"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "runAsNonRoot": True,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    })
    spec: dict[str, Any] = {"restartPolicy": "Never"}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(deadline))
    spec.update({
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Any deletion of the Pod (a cancel, the TaskRun's garbage collection, an
        # eviction) gives the task the Task's cancellation grace between SIGTERM
        # and SIGKILL, not the kubelet's default of 30 s: a deleted TaskRun's
        # Pod is gone within that grace even when its task blocks its loop.
        "terminationGracePeriodSeconds": (
            task.cancellation.grace_period_seconds if task is not None
            else DEFAULT_CANCEL_GRACE_SECONDS
        ),
    })
    account = task.service_account_name if task is not None else None
    if account:
        spec["serviceAccountName"] = account
    spec.update({
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    })
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
    }


# --- pre-warmed Pods ----------------------------------------------------------
#
# A pre-warmed Pod (waypost.engine.prewarm) starts before any attempt needs it: it
# names no run, only its task and runner id. It imports the task's entrypoint and
# polls for an assignment with its runner credential, which is all its Secret holds
# (each attempt it takes comes with that attempt's own credential in the answer).


def prewarm_pod_name(task_name: str, runner_id: uuid.UUID) -> str:
    """``wp-<task>-<short runner id>-w``: never an attempt's name (those end in a number)."""
    suffix = f"-{runner_id.hex[-8:]}-w"
    room = MAX_NAME_LENGTH - len("wp-") - len(suffix)
    task = _dns_part(task_name)[:room].strip("-") or "task"
    return f"wp-{task}{suffix}"


def _prewarm_metadata(target: PrewarmTarget, runner_id: uuid.UUID) -> dict[str, Any]:
    return {
        "name": prewarm_pod_name(target.task, runner_id),
        "namespace": target.namespace,
        "labels": {
            k8s.LABEL_MANAGED_BY: k8s.MANAGED_BY,
            k8s.LABEL_COMPONENT: k8s.COMPONENT_RUNNER,
            k8s.LABEL_TASK: label_value(target.task),
            k8s.LABEL_WARM_RUNNER: str(runner_id),
        },
        "annotations": {k8s.ANNOTATION_TASK: target.task},
    }


def build_prewarm_secret(target: PrewarmTarget, runner_id: uuid.UUID,
                         runner_credential: str) -> dict[str, Any]:
    """The Secret of a pre-warmed Pod: its runner credential only."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _prewarm_metadata(target, runner_id),
        "type": "Opaque",
        "immutable": True,
        "stringData": {RUNNER_CREDENTIAL_KEY: runner_credential},
    }


def build_prewarm_pod(target: PrewarmTarget, settings: PodSettings,
                      runner_id: uuid.UUID) -> dict[str, Any]:
    """A warm runner Pod started ahead of demand: the same image, entrypoint,
    memory, environment and profile as the Task's attempt Pods (so its
    fingerprint matches their first attempts'), no attempt and no deadline."""
    spec = target.spec
    values = protocol.prewarm_env(
        coordinator_url=settings.coordinator_url, task=target.task,
        entrypoint=spec.entrypoint, base=_base_env(settings, spec.env),
        runner_token="", scrub_tmp=True)  # the credential's value: from the Secret
    meta = _prewarm_metadata(target, runner_id)
    return _runner_pod(
        meta, task_name=target.task, image=spec.image or settings.default_image,
        memory_bytes=spec.memory_bytes, env=_env_list(values, meta["name"]), task=spec,
        settings=settings, deadline=None)
