"""Runner pieces without a coordinator: configuration, loading, the attempt document."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from waypost.runner import attempt, loader, main
from waypost.sdk import protocol
from waypost.sdk.context import Checkpoint, Limits

GOOD_DOC: dict[str, Any] = {
    "runId": "run-1",
    "attempt": 2,
    "task": {"namespace": "default", "name": "process-order", "entrypoint": "m:f"},
    "payload": {"orderId": "o-1"},
    "checkpoints": [
        {"key": "order-fetched", "data": {"id": "o-1"}, "attempt": 1,
         "createdAt": "2026-01-01T00:00:00+00:00"}
    ],
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "idempotencyKey": None,
    "heartbeatIntervalSeconds": 30,
    "limits": {"checkpointBytes": 1000, "resultBytes": 2000, "logBatch": 100},
}


def test_attempt_document_parses() -> None:
    doc = protocol.decode(protocol.AttemptDocument, GOOD_DOC)
    assert doc.run_id == "run-1"
    assert doc.attempt == 2
    assert doc.task.entrypoint == "m:f"
    assert doc.task.name == "process-order"
    assert attempt.context_checkpoints(doc) == (Checkpoint("order-fetched", {"id": "o-1"}),)
    assert doc.heartbeat_interval_seconds == 30.0
    assert doc.limits == Limits(checkpoint_bytes=1000, result_bytes=2000, log_batch=100)


def test_attempt_document_ignores_fields_a_newer_coordinator_adds() -> None:
    doc = protocol.decode(protocol.AttemptDocument, {**GOOD_DOC, "somethingNew": 1})
    assert doc.run_id == "run-1"


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("runId"), "runId"),
        (lambda d: d.update(attempt="two"), "attempt"),
        (lambda d: d.update(attempt=0), "attempt"),
        (lambda d: d["task"].pop("entrypoint"), "task.entrypoint"),
        (lambda d: d["limits"].update(resultBytes=0), "limits.resultBytes"),
        (lambda d: d.update(checkpoints=[{"data": 1}]), "checkpoints[0].key"),
        (lambda d: d.update(heartbeatIntervalSeconds=0), "heartbeatIntervalSeconds"),
        (lambda d: d.update(idempotencyKey=5), "idempotencyKey"),
    ],
)
def test_attempt_document_rejects(mutate: Any, fragment: str) -> None:
    doc = copy.deepcopy(GOOD_DOC)
    mutate(doc)
    with pytest.raises(protocol.ProtocolError) as error:
        protocol.decode(protocol.AttemptDocument, doc)
    assert fragment in str(error.value)


def test_config_from_env(tmp_path: Path) -> None:
    config = main.RunnerConfig.from_env(
        {
            "WAYPOST_COORDINATOR_URL": "http://coord:8080",
            "WAYPOST_ATTEMPT_TOKEN": "tok",
            "WAYPOST_TASK_PATH": "/a::/b",
        },
        cwd="/work",
    )
    assert config == main.RunnerConfig("http://coord:8080", "tok", ("/work", "/a", "/b"))

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = main.RunnerConfig.from_env(
        {"WAYPOST_COORDINATOR_URL": "http://c", "WAYPOST_ATTEMPT_TOKEN_FILE": str(token_file)},
        cwd="/w",
    )
    assert config.token == "from-file"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "WAYPOST_COORDINATOR_URL is not set"),
        ({"WAYPOST_COORDINATOR_URL": "http://c"}, "neither WAYPOST_ATTEMPT_TOKEN"),
        (
            {"WAYPOST_COORDINATOR_URL": "http://c", "WAYPOST_ATTEMPT_TOKEN_FILE": "/nonexistent/t"},
            "cannot be read",
        ),
    ],
)
def test_config_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(main.ConfigError, match=fragment):
        main.RunnerConfig.from_env(env, cwd="/")


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(main.ConfigError, match="is empty"):
        main.RunnerConfig.from_env(
            {"WAYPOST_COORDINATOR_URL": "http://c", "WAYPOST_ATTEMPT_TOKEN_FILE": str(empty)},
            cwd="/",
        )


def test_loader_unwraps_decorated_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wp_loader_mod.py").write_text(
        "from waypost import task\n"
        "class Holder:\n"
        "    @staticmethod\n"
        "    def nested(ctx, payload):\n"
        "        return 'nested'\n"
        "@task(id='wp-loader-decorated')\n"
        "async def decorated(ctx, payload):\n"
        "    return 'decorated'\n"
        "NOT_CALLABLE = 3\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    loader.extend_search_path([str(tmp_path)])
    fn = loader.load_entrypoint("wp_loader_mod:decorated")
    assert fn.__name__ == "decorated" and not hasattr(fn, "definition")
    assert loader.load_entrypoint("wp_loader_mod:Holder.nested")(None, None) == "nested"
    with pytest.raises(loader.EntrypointError, match="names a int, not a function"):
        loader.load_entrypoint("wp_loader_mod:NOT_CALLABLE")
    with pytest.raises(loader.EntrypointError, match=r"'wp_loader_mod\.Holder' has no attribute"):
        loader.load_entrypoint("wp_loader_mod:Holder.missing")


def test_extend_search_path_is_ordered_and_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", ["/base"])
    loader.extend_search_path(["/a", "", "/b"])
    loader.extend_search_path(["/a"])
    assert sys.path == ["/a", "/b", "/base"]


def test_error_report_truncates_and_classifies() -> None:
    from waypost.sdk.errors import AbortRun, ResultTooLarge

    try:
        raise ValueError("x" * 20_000)
    except ValueError as exc:
        report = attempt.error_report(exc)
    assert report.type == "error" and report.name == "ValueError"
    assert report.retryable is True
    assert len(report.message) < 9_000 and report.message.endswith("(truncated)")
    assert report.traceback is not None and "Traceback" in report.traceback
    assert attempt.error_report(AbortRun("no")).retryable is False
    assert attempt.error_report(ResultTooLarge(10, 5)).retryable is False


def test_exit_codes_cover_every_outcome() -> None:
    assert set(main.EXIT_CODES) == set(attempt.Outcome)
    assert main.EXIT_CODES[attempt.Outcome.SUCCEEDED] == 0
    assert main.EXIT_CODES[attempt.Outcome.FAILED] == 1
    assert main.EXIT_CODES[attempt.Outcome.CONFIG_ERROR] == 2
    assert main.EXIT_CODES[attempt.Outcome.SUPERSEDED] == 3
    assert main.EXIT_CODES[attempt.Outcome.CANCELLED] == 3
