"""The runner protocol is defined once (waypost.sdk.protocol) and used by every side."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from waypost.backends import pod_spec
from waypost.coordinator import app
from waypost.engine.backend import AttemptLaunch
from waypost.sdk import protocol


def test_runner_env_wins_over_the_task_env() -> None:
    env = protocol.runner_env(
        coordinator_url="http://coordinator", run_id="r", attempt=2, task="t", trace_id="tr",
        token="secret", task_path="/app",
        base={protocol.ENV_COORDINATOR_URL: "http://evil", protocol.ENV_ATTEMPT_TOKEN_FILE: "/x",
              "MY_SETTING": "1"},
    )
    assert env == {
        protocol.ENV_COORDINATOR_URL: "http://coordinator",
        protocol.ENV_ATTEMPT_TOKEN: "secret",
        protocol.ENV_RUN_ID: "r",
        protocol.ENV_ATTEMPT: "2",
        protocol.ENV_TASK: "t",
        protocol.ENV_TRACE_ID: "tr",
        protocol.ENV_TASK_PATH: "/app",
        "MY_SETTING": "1",
    }
    with pytest.raises(ValueError, match="exactly one"):
        protocol.runner_env(coordinator_url="u", run_id="r", attempt=1, task="t", trace_id="x")


def test_the_pod_env_is_the_protocol_env() -> None:
    launch = AttemptLaunch(
        run_id=uuid.UUID(int=1), attempt=1, claim_token=7, namespace="default", task="t",
        entrypoint="m:f", image="img", memory_bytes=1 << 28, timeout_seconds=60,
        credential="secret", coordinator_url="http://c", trace_id="tr",
        env={protocol.ENV_ATTEMPT_TOKEN: "stolen"},
    )
    settings = pod_spec.PodSettings(coordinator_url="http://c")
    pod = pod_spec.build_attempt_pod(launch, settings)
    env = {e["name"]: e.get("value", e.get("valueFrom"))
           for e in pod["spec"]["containers"][0]["env"]}
    # The task's value is dropped: the runner's comes from the attempt's Secret.
    assert env[protocol.ENV_ATTEMPT_TOKEN] == {"secretKeyRef": {
        "name": pod["metadata"]["name"], "key": pod_spec.CREDENTIAL_KEY}}
    assert env[protocol.ENV_RUN_ID] == str(launch.run_id)


def test_the_coordinator_serves_the_protocol_paths_with_its_models() -> None:
    routes = {r.path: r for r in app.route_table().routes if r.path.startswith("/v1/runner/")}
    paths = {v for k, v in vars(protocol).items() if k.startswith("PATH_")}
    assert set(routes) == paths
    assert routes[protocol.PATH_ATTEMPT].response is protocol.AttemptDocument
    assert routes[protocol.PATH_HEARTBEAT].response is protocol.HeartbeatAnswer
    assert routes[protocol.PATH_LOGS].body is protocol.LogsBody
    assert routes[protocol.PATH_COMPLETE].body is protocol.CompleteBody
    assert routes[protocol.PATH_FAIL].body is protocol.FailBody
    assert routes[protocol.PATH_CANCELLED].body is protocol.CancelledBody
    assert routes[protocol.PATH_CHECKPOINTS].body is protocol.CheckpointBody


GOOD_DOC: dict[str, Any] = {
    "runId": "r", "attempt": 1,
    "task": {"namespace": "default", "name": "t", "entrypoint": "m:f"},
    "checkpoints": [{"key": "a", "data": {"x": 1}, "attempt": 1,
                     "createdAt": "2026-01-01T00:00:00+00:00"}],
    "heartbeatIntervalSeconds": 5,
    "limits": {"checkpointBytes": 10, "resultBytes": 10, "logBatch": 1},
}


@pytest.mark.parametrize(("kind", "data", "valid"), [
    (protocol.AttemptDocument, GOOD_DOC, True),
    (protocol.AttemptDocument, {**GOOD_DOC, "newField": 1}, True),
    (protocol.AttemptDocument, {**GOOD_DOC, "attempt": 0}, False),
    (protocol.AttemptDocument, {**GOOD_DOC, "attempt": "1x"}, False),
    (protocol.AttemptDocument, {**GOOD_DOC, "heartbeatIntervalSeconds": -1}, False),
    (protocol.AttemptDocument, {k: v for k, v in GOOD_DOC.items() if k != "task"}, False),
    (protocol.HeartbeatAnswer, {"cancelled": True}, True),
    (protocol.CheckpointBody, {"key": "k", "data": None}, True),
    (protocol.CheckpointBody, {"key": "", "data": 1}, False),
    (protocol.CheckpointBody, {"key": "k" * 257, "data": 1}, False),
    (protocol.CheckpointBody, {"key": "k", "data": 1, "extra": 2}, False),
    (protocol.LogsBody, {"entries": [{"ts": "2026-01-01T00:00:00Z", "message": "m"}]}, True),
    (protocol.LogsBody, {"entries": [{"ts": "2026-01-01T00:00:00Z", "message": "m",
                                      "level": "loud"}]}, False),
    (protocol.CompleteBody, {"result": None}, True),
    (protocol.CompleteBody, {}, False),
    (protocol.FailBody, {"error": {"type": "oom", "message": "m"}}, True),
    (protocol.FailBody, {"error": {"type": "boom", "message": "m"}}, False),
])
def test_the_runner_and_the_coordinator_read_messages_alike(
    kind: type[Any], data: dict[str, Any], valid: bool
) -> None:
    # The runner decodes without pydantic, the coordinator validates with it:
    # both from the same definitions, so both must agree.
    try:
        runner_side = protocol.decode(kind, data)
    except protocol.ProtocolError:
        runner_side = None
    try:
        coordinator_side = TypeAdapter(kind).validate_python(data)
    except ValidationError:
        coordinator_side = None
    assert (runner_side is not None) is valid
    assert runner_side == coordinator_side
    if valid:
        # What one side writes, the other reads back unchanged.
        assert protocol.decode(kind, protocol.encode(runner_side)) == runner_side


def test_the_log_batch_limit_has_one_source() -> None:
    """Issue 16: the protocol allowed 1000 lines per request, the server 500."""
    from waypost.model.settings import Limits

    assert Limits().log_batch == protocol.MAX_LOG_BATCH == 500
    with pytest.raises(ValidationError):
        Limits(log_batch=protocol.MAX_LOG_BATCH + 1)
    line = {"ts": "2026-01-01T00:00:00Z", "message": "m"}
    adapter = TypeAdapter(protocol.LogsBody)
    assert len(adapter.validate_python(
        {"entries": [line] * protocol.MAX_LOG_BATCH}).entries) == protocol.MAX_LOG_BATCH
    with pytest.raises(ValidationError, match="at most 500 lines"):
        adapter.validate_python({"entries": [line] * (protocol.MAX_LOG_BATCH + 1)})
