"""A runner Pod's status decides its attempt's end (statuses as the kubelet writes them)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from waypost.backends import pod_outcome, pod_spec
from waypost.backends.pod_spec import PodSettings
from waypost.engine.backend import AttemptLaunch
from waypost.model.enums import FailureType

RUN_ID = uuid.UUID("0192c2f0-7c1a-7b3e-9f42-5d1e8a6c4b2f")
STARTED = "2026-11-25T03:00:00Z"


def _pod(
    phase: str,
    *,
    state: dict[str, Any] | None = None,
    reason: str | None = None,
    message: str | None = None,
    deletion: str | None = None,
    grace: int | None = None,
) -> dict[str, Any]:
    launch = AttemptLaunch(
        run_id=RUN_ID, attempt=3, claim_token=99, namespace="shop", task="hog",
        entrypoint="examples.hog:allocate", image="waypost-examples:dev",
        memory_bytes=64 * 1024 * 1024, timeout_seconds=30, credential="secret-token",
        coordinator_url="http://x", trace_id="0" * 32,
    )
    pod = pod_spec.build_attempt_pod(launch, PodSettings(coordinator_url="http://coord"))
    pod["metadata"].update({"uid": "c0ffee00-0000-0000-0000-000000000001",
                            "resourceVersion": "4242"})
    if deletion is not None:
        pod["metadata"]["deletionTimestamp"] = deletion
        pod["metadata"]["deletionGracePeriodSeconds"] = grace if grace is not None else 30
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": "10.203.0.1",
        "podIP": "10.88.0.17",
        "qosClass": "Burstable",
        "startTime": STARTED,
        "conditions": [{"type": "PodScheduled", "status": "True",
                        "lastTransitionTime": STARTED}],
    }
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [{
            "name": "runner",
            "image": "docker.io/library/waypost-examples:dev",
            "imageID": "sha256:7d1c",
            "containerID": "containerd://ab12",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "lastState": {},
            "state": state,
        }]
    pod["status"] = status
    return pod


def _terminated(code: int, reason: str, finished: str = "2026-11-25T03:00:07Z",
                message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": code, "reason": reason, "startedAt": STARTED,
                            "finishedAt": finished, "containerID": "containerd://ab12"}
    if message is not None:
        term["message"] = message
    return {"terminated": term}


def test_clean_exit_is_no_failure() -> None:
    result = pod_outcome.attempt_exit_from_pod(_pod("Succeeded", state=_terminated(0, "Completed")))
    assert result is not None
    assert (result.run_id, result.claim_token) == (RUN_ID, 99)
    assert result.failure is None
    assert result.exit_code == 0


def test_succeeded_phase_without_container_statuses() -> None:
    result = pod_outcome.attempt_exit_from_pod(_pod("Succeeded"))
    assert result is not None and result.failure is None


def test_oom_kill_names_the_limit() -> None:
    result = pod_outcome.attempt_exit_from_pod(_pod("Failed", state=_terminated(137, "OOMKilled")))
    assert result is not None
    assert result.failure is FailureType.OOM
    assert result.message == "OOMKilled: exceeded memory limit 64Mi"
    assert result.exit_code == 137


def test_oom_kill_wins_over_a_deletion_that_followed() -> None:
    pod = _pod("Failed", state=_terminated(137, "OOMKilled"), deletion="2026-11-25T03:01:00Z")
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None and result.failure is FailureType.OOM


def test_deadline_exceeded_is_a_timeout() -> None:
    pod = _pod("Failed", reason="DeadlineExceeded",
               message="Pod was active on the node longer than the specified deadline",
               state=_terminated(137, "Error"))
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.TIMEOUT
    assert "timeout of 30s" in result.message
    assert result.exit_code == 137


def test_deadline_exceeded_before_the_container_started() -> None:
    pod = _pod("Failed", reason="DeadlineExceeded", message="deadline",
               state={"waiting": {"reason": "ImagePullBackOff"}})
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None and result.failure is FailureType.TIMEOUT
    assert result.exit_code is None


def test_eviction_is_lost() -> None:
    message = ("The node was low on resource: memory. Threshold quantity: 100Mi, "
               "available: 92Mi. Container runner was using 61Mi, request is 64Mi, "
               "has larger consumption of memory.")
    pod = _pod("Failed", reason="Evicted", message=message, state=_terminated(137, "Error"))
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.LOST
    assert result.message.startswith("Evicted: The node was low on resource: memory")


def test_eviction_before_start_is_lost() -> None:
    pod = _pod("Failed", reason="Evicted", message="The node had condition: [DiskPressure].")
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None and result.failure is FailureType.LOST
    assert result.message == "Evicted: The node had condition: [DiskPressure]."


def test_non_zero_exit_carries_its_code_and_termination_message() -> None:
    pod = _pod("Failed", state=_terminated(2, "Error", message="bad runner configuration\n"))
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.EXIT
    assert result.exit_code == 2
    assert result.message == "runner exited 2: bad runner configuration"


def test_long_termination_messages_keep_their_end() -> None:
    pod = _pod("Failed", state=_terminated(1, "Error", message="x" * 5000 + "the end"))
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert len(result.message) < 2100
    assert result.message.endswith("the end")


def test_deleted_while_running_is_lost() -> None:
    running = {"running": {"startedAt": STARTED}}
    result = pod_outcome.attempt_exit_from_pod(
        _pod("Running", state=running, deletion="2026-11-25T03:00:40Z"))
    assert result is not None
    assert result.failure is FailureType.LOST
    assert result.message == "pod deleted"


def test_runner_killed_by_the_deletion_is_lost() -> None:
    # kubectl delete at 03:00:05 with 30s grace: SIGTERM, the runner exits 143.
    pod = _pod("Failed", state=_terminated(143, "Error", finished="2026-11-25T03:00:06Z"),
               deletion="2026-11-25T03:00:35Z", grace=30)
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.LOST
    assert result.message == "pod deleted (runner exited 143)"


def test_forced_deletion_is_lost() -> None:
    pod = _pod("Running", state=_terminated(137, "Error", finished="2026-11-25T03:00:06Z"),
               deletion="2026-11-25T03:00:05Z", grace=0)
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None and result.failure is FailureType.LOST


def test_cleanup_of_a_failed_pod_keeps_its_exit_reason() -> None:
    # The runner exited 1 at 03:00:07; the backend deleted the finished Pod later.
    pod = _pod("Failed", state=_terminated(1, "Error", finished="2026-11-25T03:00:07Z"),
               deletion="2026-11-25T03:01:30Z", grace=30)
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.EXIT
    assert result.exit_code == 1


def test_failed_pod_without_container_status_is_lost() -> None:
    pod = _pod("Failed", reason="NodeShutdown",
               message="Pod was terminated in response to imminent node shutdown.")
    result = pod_outcome.attempt_exit_from_pod(pod)
    assert result is not None
    assert result.failure is FailureType.LOST
    assert result.message.startswith("NodeShutdown: ")


@pytest.mark.parametrize("state", [
    None,
    {"waiting": {"reason": "ContainerCreating"}},
    {"waiting": {"reason": "ErrImagePull", "message": "failed to pull"}},
    {"waiting": {"reason": "ImagePullBackOff"}},
    {"running": {"startedAt": STARTED}},
])
def test_pending_or_running_pods_are_undecided(state: dict[str, Any] | None) -> None:
    phase = "Running" if state and "running" in state else "Pending"
    assert pod_outcome.attempt_exit_from_pod(_pod(phase, state=state)) is None


def test_unknown_phase_is_undecided() -> None:
    # The node stopped reporting; the node controller decides later (it deletes the Pod).
    assert pod_outcome.attempt_exit_from_pod(
        _pod("Unknown", state={"running": {"startedAt": STARTED}})) is None


def test_an_image_that_can_never_be_pulled_fails_the_attempt() -> None:
    state = {"waiting": {"reason": "ErrImageNeverPull",
                         "message": 'Container image "waypost-examples:dev" is not present '
                                    "with pull policy of Never"}}
    result = pod_outcome.attempt_exit_from_pod(_pod("Pending", state=state))
    assert result is not None
    assert result.failure is FailureType.EXIT
    assert result.message.startswith("pod cannot start: ErrImageNeverPull: Container image")


def test_pods_without_attempt_labels_are_refused() -> None:
    pod = _pod("Running")
    del pod["metadata"]["annotations"]["waypost.dev/claim-token"]
    with pytest.raises(ValueError, match="not a waypost attempt pod"):
        pod_outcome.attempt_exit_from_pod(pod)
