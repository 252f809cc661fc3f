"""How a runner Pod's status decides its attempt's end.

:func:`attempt_exit_from_pod` is pure: it reads a Pod as the API returns it (a
dict from a watch event or a GET) and says whether the attempt's worker is
gone and why. ``None`` means the Pod is still pending or running.

A clean exit is not a success by itself: the engine also checks that the
runner reported a result before its Pod went away.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from waypost.backends import pod_spec
from waypost.engine.backend import AttemptExit
from waypost.model import k8s
from waypost.model.enums import FailureType

# Waiting reasons after which the container can never start; the attempt would
# otherwise sit until its deadline. (ErrImagePull and ImagePullBackOff may pass.)
PERMANENT_WAITING_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_MAX_MESSAGE = 2048


def attempt_identity(pod: Mapping[str, Any]) -> tuple[uuid.UUID, int]:
    """The run id and claim token a runner Pod was made for."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    name = meta.get("name", "?")
    try:
        run_id = uuid.UUID(labels[k8s.LABEL_RUN_ID])
        token = int(annotations[k8s.ANNOTATION_CLAIM_TOKEN])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"pod {name} is not a waypost attempt pod: {exc}") from None
    return run_id, token


def _runner_status(status: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = status.get("containerStatuses") or []
    for item in statuses:
        if item.get("name") == pod_spec.CONTAINER_NAME:
            return item  # type: ignore[no-any-return]
    return statuses[0] if statuses else {}


def _memory_limit(pod: Mapping[str, Any]) -> str | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == pod_spec.CONTAINER_NAME:
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            return str(limit) if limit is not None else None
    return None


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_MESSAGE else "…" + text[-_MAX_MESSAGE:]


def attempt_exit_from_pod(pod: Mapping[str, Any], identity: tuple[uuid.UUID, int] | None = None
                          ) -> AttemptExit | None:
    """The attempt's end as the Pod shows it, or None while it may still run.

    ``identity`` (run id, claim token) is for a Pod that names no attempt itself
    (a pre-warmed one); otherwise it is read from the Pod's labels.
    """
    run_id, token = identity if identity is not None else attempt_identity(pod)
    status: Mapping[str, Any] = pod.get("status") or {}
    meta: Mapping[str, Any] = pod.get("metadata") or {}
    phase = status.get("phase")
    pod_reason = status.get("reason") or ""
    pod_message = status.get("message") or ""
    deleting = meta.get("deletionTimestamp") is not None
    state: Mapping[str, Any] = _runner_status(status).get("state") or {}
    terminated: Mapping[str, Any] | None = state.get("terminated")
    waiting: Mapping[str, Any] | None = state.get("waiting")

    def exit_(failure: FailureType | None, message: str, code: int | None = None) -> AttemptExit:
        return AttemptExit(run_id=run_id, claim_token=token, failure=failure,
                           message=_short(message), exit_code=code)

    if terminated is not None:
        code = terminated.get("exitCode")
        reason = terminated.get("reason") or ""
        detail = terminated.get("message") or ""
        if reason == "OOMKilled":
            limit = _memory_limit(pod)
            where = f" {limit}" if limit else ""
            return exit_(FailureType.OOM, f"OOMKilled: exceeded memory limit{where}", code)
        if code == 0:
            return exit_(None, "runner exited 0", 0)
        if pod_reason == "DeadlineExceeded":
            return exit_(FailureType.TIMEOUT, _deadline_message(pod, pod_message), code)
        if pod_reason == "Evicted":
            return exit_(FailureType.LOST, f"Evicted: {pod_message}".rstrip(": "), code)
        if deleting and _deleted_before_exit(meta, terminated):
            return exit_(FailureType.LOST, f"pod deleted (runner exited {code})", code)
        text = f"runner exited {code}" + (f" ({reason})" if reason and reason != "Error" else "")
        if detail:
            text += f": {detail}"
        return exit_(FailureType.EXIT, text, code)

    if phase == "Succeeded":
        # No container status left (the Pod was read late): the phase says exit 0.
        return exit_(None, "pod succeeded", 0)
    if phase == "Failed":
        if pod_reason == "DeadlineExceeded":
            return exit_(FailureType.TIMEOUT, _deadline_message(pod, pod_message))
        label = pod_reason or "pod failed"
        return exit_(FailureType.LOST, f"{label}: {pod_message}" if pod_message else label)
    if deleting:
        return exit_(FailureType.LOST, "pod deleted")
    if waiting is not None and waiting.get("reason") in PERMANENT_WAITING_REASONS:
        text = f"pod cannot start: {waiting['reason']}"
        if waiting.get("message"):
            text += f": {waiting['message']}"
        return exit_(FailureType.EXIT, text)
    return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _deleted_before_exit(meta: Mapping[str, Any], terminated: Mapping[str, Any]) -> bool:
    """Whether the deletion came first (and so killed the runner).

    ``deletionTimestamp`` is the request time plus the grace period; a runner
    that had already exited on its own when its finished Pod was cleaned up
    keeps its own exit reason.
    """
    deleted_at = _time(meta.get("deletionTimestamp"))
    finished_at = _time(terminated.get("finishedAt"))
    if deleted_at is None or finished_at is None:
        return True
    requested = deleted_at - timedelta(seconds=int(meta.get("deletionGracePeriodSeconds") or 0))
    return requested <= finished_at


def _deadline_message(pod: Mapping[str, Any], pod_message: str) -> str:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    text = "DeadlineExceeded: the attempt ran past its timeout"
    if deadline is not None:
        text += f" of {deadline}s"
    return text if not pod_message else f"{text} ({pod_message})"
