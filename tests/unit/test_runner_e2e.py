"""The runner end to end against an in-memory fake coordinator.

The fake implements the runner API (``/v1/runner/*``) in memory and is served
on 127.0.0.1 by aiohttp's test server. Tests run the runner in-process
(``run_cold``) and, for exit codes and process-level behaviour, as a real
``waypost-runner`` subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from waypost.runner import api, main
from waypost.sdk.retry import Retry

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "attempt-token-1"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class FakeCoordinator:
    """The runner API in memory. Tests set the knobs and read the records."""

    entrypoint: str
    payload: Any = None
    run_id: str = "run-1"
    attempt: int = 1
    heartbeat_interval: float = 0.05
    limits: dict[str, int] = field(
        default_factory=lambda: {"checkpointBytes": 10_000, "resultBytes": 10_000, "logBatch": 50}
    )
    # Server-side limit, to simulate a coordinator stricter than it announced.
    enforce_checkpoint_bytes: int | None = None
    token: str = TOKEN
    # Endpoint name -> answer 409 from the n-th call on (1-based).
    supersede: dict[str, int] = field(default_factory=dict)
    # Endpoint name -> number of 503 answers before a normal one.
    unavailable: dict[str, int] = field(default_factory=dict)
    # Answer the n-th heartbeat (1-based) and later ones with cancelled: true.
    cancel_on_heartbeat: int | None = None
    refuse_logs: bool = False

    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    completed: list[Any] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def count(self, name: str) -> int:
        return self.calls.count(name)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/runner/attempt", self._wrap("attempt", self._attempt))
        app.router.add_post("/v1/runner/checkpoints", self._wrap("checkpoints", self._checkpoint))
        app.router.add_post("/v1/runner/heartbeat", self._wrap("heartbeat", self._heartbeat))
        app.router.add_post("/v1/runner/logs", self._wrap("logs", self._logs))
        app.router.add_post("/v1/runner/complete", self._wrap("complete", self._complete))
        app.router.add_post("/v1/runner/fail", self._wrap("fail", self._fail))
        app.router.add_post("/v1/runner/cancelled", self._wrap("cancelled", self._cancelled))
        return app

    def _wrap(self, name: str, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return _error(401, "unauthorized", "bad attempt credential")
            self.calls.append(name)
            if self.unavailable.get(name, 0) > 0:
                self.unavailable[name] -= 1
                return _error(503, "unavailable", "database is down")
            since = self.supersede.get(name)
            if since is not None and self.count(name) >= since:
                return _error(409, "attempt_superseded", "attempt is no longer current")
            body = await request.json() if request.method == "POST" else None
            if request.method == "POST" and not isinstance(body, dict):
                return _error(400, "bad_body", "expected a JSON object")
            response: web.StreamResponse = await handler(body)
            return response

        return wrapped

    async def _attempt(self, body: None) -> web.Response:
        return web.json_response(
            {
                "runId": self.run_id,
                "attempt": self.attempt,
                "task": {"namespace": "default", "name": "t", "entrypoint": self.entrypoint},
                "payload": self.payload,
                "checkpoints": list(self.checkpoints),
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "idempotencyKey": None,
                "heartbeatIntervalSeconds": self.heartbeat_interval,
                "limits": self.limits,
            }
        )

    async def _checkpoint(self, body: dict[str, Any]) -> web.Response:
        size = len(json.dumps(body["data"], separators=(",", ":")))
        if self.enforce_checkpoint_bytes is not None and size > self.enforce_checkpoint_bytes:
            return _error(413, "too_large", f"checkpoint is {size} bytes")
        self.checkpoints.append(
            {
                "key": body["key"],
                "data": body["data"],
                "attempt": self.attempt,
                "createdAt": datetime.now(UTC).isoformat(),
            }
        )
        return web.json_response({"key": body["key"]}, status=201)

    async def _heartbeat(self, body: dict[str, Any]) -> web.Response:
        cancelled = (
            self.cancel_on_heartbeat is not None
            and self.count("heartbeat") >= self.cancel_on_heartbeat
        )
        return web.json_response({"cancelled": cancelled})

    async def _logs(self, body: dict[str, Any]) -> web.Response:
        if self.refuse_logs:
            return _error(400, "bad_body", "log entries refused")
        entries = body["entries"]
        assert len(entries) <= self.limits["logBatch"]
        self.logs.extend(entries)
        return web.json_response({"accepted": len(entries)}, status=202)

    async def _complete(self, body: dict[str, Any]) -> web.Response:
        self.completed.append(body["result"])
        return web.json_response({"status": "succeeded"})

    async def _cancelled(self, body: dict[str, Any]) -> web.Response:
        self.cancellations.append(body["message"])
        return web.json_response({"status": "cancelled"})

    async def _fail(self, body: dict[str, Any]) -> web.Response:
        self.failures.append(body["error"])
        retryable = body["error"]["retryable"]
        return web.json_response({"status": "retrying" if retryable else "failed"})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(fake: FakeCoordinator) -> str:
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def task_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for task modules written by a test, importable while it runs."""
    yield tmp_path
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def write_module(directory: Path, source: str) -> str:
    """Write a task module with a unique name and return that name."""
    name = f"wp_test_tasks_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


async def run_in_process(url: str, task_path: Path | str, *, token: str = TOKEN) -> int:
    config = main.RunnerConfig(url, token, (str(task_path),))
    # Fast retries so transient-failure tests do not sleep for seconds.
    client = api.RunnerClient(
        url, token, retry=Retry(max_attempts=4, initial_delay=0.01, jitter=0.0))
    try:
        return await main.run_cold(config, client)
    finally:
        await client.close()


# --- The order scenario: resume after the last checkpoint -------------------


async def test_order_scenario_resumes_after_the_fetched_step(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("WAYPOST_EXAMPLE_LEDGER", str(ledger_path))
    fake = FakeCoordinator(
        entrypoint="examples.orders:process_order",
        payload={"orderId": "o-42", "failPaymentOnAttempts": [1]},
        run_id="run-orders",
    )
    url = await serve(fake)

    assert await run_in_process(url, REPO_ROOT) == main.EXIT_FAILED
    assert [c["key"] for c in fake.checkpoints] == ["order-fetched"]
    [failure] = fake.failures
    assert failure["type"] == "error"
    assert failure["name"] == "PaymentDeclined"
    assert failure["retryable"] is True
    assert "payment provider unavailable on attempt 1" in failure["message"]
    assert "Traceback" in failure["traceback"] and "def charge" not in failure["traceback"]
    assert "in charge" in failure["traceback"]
    # It starts at the task's own code, not at the runner calling it.
    assert failure["traceback"].splitlines()[1].strip().startswith('File "')
    assert "runner/attempt.py" not in failure["traceback"]
    assert fake.completed == []

    fake.attempt = 2
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_SUCCEEDED
    [result] = fake.completed
    assert result["orderId"] == "o-42"
    assert result["paymentId"].startswith("pay-")

    effects = [json.loads(line) for line in ledger_path.read_text().splitlines()]
    fetches = [e for e in effects if e["effect"] == "fetch_order"]
    charges = [e for e in effects if e["effect"] == "charge"]
    assert fetches == [{"run": "run-orders", "attempt": 1, "effect": "fetch_order"}]
    assert [c["attempt"] for c in charges] == [2]
    assert [c["key"] for c in fake.checkpoints] == ["order-fetched", "payment-complete"]

    # ctx.log entries reached the coordinator before the outcome, correlated.
    messages = [(e["message"], e["fields"]["attempt"]) for e in fake.logs]
    assert ("order fetched", 1) in messages
    assert ("order fetched", 2) in messages and ("payment complete", 2) in messages
    assert all(e["fields"]["run_id"] == "run-orders" for e in fake.logs)
    assert fake.calls.index("logs") < fake.calls.index("fail")
    assert fake.calls[-1] == "complete"


async def test_order_with_a_malformed_payload_is_aborted(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.orders:process_order", payload=["not", "a", "dict"])
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "AbortRun" and failure["retryable"] is False
    assert "'orderId'" in failure["message"]


async def test_sync_task_runs_in_a_thread(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello", payload={"name": "Ada"})
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_SUCCEEDED
    assert fake.completed == [{"greeting": "Hello, Ada!", "attempt": 1}]
    assert fake.checkpoints[0]["key"] == "greeting"
    assert fake.logs[0]["message"] == "greeted"


async def test_sync_task_resumes_from_checkpoint(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        calls = []

        def task(ctx, payload):
            a = ctx.step("a", lambda: calls.append("a") or 1)
            b = ctx.step("b", lambda: calls.append("b") or 2)
            return {"a": a, "b": b, "calls": calls, "last": ctx.last_checkpoint.key}
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", attempt=2)
    fake.checkpoints.append(
        {"key": "a", "data": 10, "attempt": 1, "createdAt": "2026-01-01T00:00:00+00:00"}
    )
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_SUCCEEDED
    assert fake.completed == [{"a": 10, "b": 2, "calls": ["b"], "last": "b"}]


# --- Failures ------------------------------------------------------------------


async def test_abort_run_is_not_retryable(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        from waypost import AbortRun, task

        @task(id="refuse")
        async def refuse(ctx, payload):
            raise AbortRun("order o-1 was cancelled by the customer")
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:refuse")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "AbortRun"
    assert failure["retryable"] is False
    assert failure["message"] == "order o-1 was cancelled by the customer"


@pytest.mark.parametrize(
    ("entrypoint", "fragment"),
    [
        ("wp_no_such_module_xyz:run", "cannot import module 'wp_no_such_module_xyz'"),
        ("examples.orders:no_such_function", "has no attribute 'no_such_function'"),
        ("not-an-entrypoint", "not of the form 'module:function'"),
    ],
)
async def test_unloadable_entrypoint_is_reported(
    serve: Any, entrypoint: str, fragment: str
) -> None:
    fake = FakeCoordinator(entrypoint=entrypoint)
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_CONFIG
    [failure] = fake.failures
    assert failure["type"] == "error"
    assert failure["name"] == "EntrypointError"
    assert failure["retryable"] is False
    assert fragment in failure["message"]
    assert fake.calls == ["attempt", "fail"]


async def test_unloadable_entrypoint_is_a_config_error_even_if_unreported(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="wp_no_such_module_abc:run", unavailable={"fail": 100})
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_CONFIG
    assert fake.count("fail") == 4 and fake.failures == []


async def test_module_raising_at_import_is_reported(serve: Any, task_dir: Path) -> None:
    module = write_module(task_dir, "raise RuntimeError('missing setting DATABASE_URL')\n")
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_CONFIG
    [failure] = fake.failures
    assert "RuntimeError: missing setting DATABASE_URL" in failure["message"]
    assert "RuntimeError: missing setting DATABASE_URL" in failure["traceback"]


async def test_result_too_large_fails_without_retry(serve: Any, task_dir: Path) -> None:
    module = write_module(task_dir, "async def task(ctx, payload):\n    return 'x' * 20000\n")
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "ResultTooLarge"
    assert "20002 bytes" in failure["message"] and "10000 bytes" in failure["message"]
    assert failure["retryable"] is False
    assert fake.completed == []


async def test_result_not_json_is_reported(serve: Any, task_dir: Path) -> None:
    module = write_module(task_dir, "async def task(ctx, payload):\n    return {1, 2}\n")
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "NotJSONSerializable"
    assert "task result must be JSON-serializable" in failure["message"]


async def test_checkpoint_too_large_client_side_is_never_sent(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        "async def task(ctx, payload):\n    await ctx.checkpoint('big', 'x' * 20000)\n",
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    assert fake.count("checkpoints") == 0
    [failure] = fake.failures
    assert failure["name"] == "CheckpointTooLarge"
    assert failure["retryable"] is False


async def test_checkpoint_refused_by_the_coordinator(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir, "async def task(ctx, payload):\n    await ctx.step('s', lambda: 'x' * 500)\n"
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", enforce_checkpoint_bytes=100)
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "CheckpointTooLarge"
    assert "'s'" in failure["message"]


# --- Superseded and cancelled attempts ----------------------------------------


async def test_409_on_checkpoint_stops_without_reporting(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        after = []

        async def task(ctx, payload):
            try:
                await ctx.checkpoint("first", 1)
            except Exception:
                after.append("swallowed")  # must not happen: 409 is not an Exception
            after.append("continued")
            return "should not be reported"
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", supersede={"checkpoints": 1})
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_STOPPED
    assert fake.count("complete") == 0 and fake.count("fail") == 0
    assert fake.count("logs") == 0
    assert sys.modules[module].after == []


async def test_409_on_heartbeat_stops_a_running_task(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        import asyncio
        state = {"finished": False}

        async def task(ctx, payload):
            await asyncio.sleep(30)
            state["finished"] = True
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", supersede={"heartbeat": 2})
    url = await serve(fake)
    code = await asyncio.wait_for(run_in_process(url, task_dir), timeout=10)
    assert code == main.EXIT_STOPPED
    assert fake.count("heartbeat") == 2
    assert fake.count("complete") == 0 and fake.count("fail") == 0
    assert sys.modules[module].state == {"finished": False}


async def test_409_on_fetch(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello", supersede={"attempt": 1})
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_STOPPED
    assert fake.calls == ["attempt"]


async def test_409_on_complete_exits_3(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello", supersede={"complete": 1})
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_STOPPED
    assert fake.count("fail") == 0


async def test_cancelled_heartbeat_stops_an_async_task(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        import asyncio

        async def task(ctx, payload):
            for n in range(600):
                await ctx.checkpoint("progress", n)
                await asyncio.sleep(0.05)
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", cancel_on_heartbeat=3)
    url = await serve(fake)
    code = await asyncio.wait_for(run_in_process(url, task_dir), timeout=10)
    assert code == main.EXIT_STOPPED
    assert fake.count("complete") == 0 and fake.count("fail") == 0
    # The task stopped at its next checkpoint (RunCancelled) and the runner said so.
    assert fake.cancellations == ["the task stopped"]
    written = len(fake.checkpoints)
    await asyncio.sleep(0.2)
    assert len(fake.checkpoints) == written, "the task kept running after cancellation"


async def test_cancelled_heartbeat_stops_a_sync_task(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        """
        import time

        seen = []

        def task(ctx, payload):
            try:
                for n in range(600):
                    time.sleep(0.02)
                    ctx.heartbeat()
            except BaseException as exc:
                seen.append(type(exc).__name__)
                raise
        """,
    )
    fake = FakeCoordinator(
        entrypoint=f"{module}:task", cancel_on_heartbeat=5, heartbeat_interval=60
    )
    url = await serve(fake)
    code = await asyncio.wait_for(run_in_process(url, task_dir), timeout=10)
    assert code == main.EXIT_STOPPED
    # The runner does not wait for a sync thread; the thread's next SDK call
    # raises RunCancelled, which it sees shortly after.
    seen = sys.modules[module].seen
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    assert seen == ["RunCancelled"]
    assert fake.count("complete") == 0 and fake.count("fail") == 0
    assert fake.cancellations == ["the task stopped"]


# --- Transport ---------------------------------------------------------------


async def test_transient_5xx_is_retried(serve: Any) -> None:
    fake = FakeCoordinator(
        entrypoint="examples.hello:hello",
        unavailable={"attempt": 2, "checkpoints": 1, "complete": 3},
    )
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_SUCCEEDED
    assert fake.count("attempt") == 3
    assert fake.count("complete") == 4
    assert len(fake.completed) == 1


async def test_persistent_5xx_on_complete_is_unreported(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello", unavailable={"complete": 100})
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_UNREPORTED
    assert fake.count("complete") == 4  # the policy's attempts, then give up


async def test_bad_token_is_a_configuration_error_and_not_retried(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello")
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT, token="wrong") == main.EXIT_CONFIG
    assert fake.calls == []  # 401 answered before the handler; one request only


async def test_unreachable_coordinator(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_UNREPORTED


async def test_refused_logs_do_not_fail_the_task(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.hello:hello", refuse_logs=True)
    url = await serve(fake)
    assert await run_in_process(url, REPO_ROOT) == main.EXIT_SUCCEEDED
    assert fake.completed and fake.logs == []


async def test_log_batches_respect_the_limit(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir,
        "async def task(ctx, payload):\n"
        "    for n in range(120):\n"
        "        ctx.log.info('tick', n=n)\n",
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    fake.limits["logBatch"] = 25
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_SUCCEEDED
    assert [e["fields"]["n"] for e in fake.logs] == list(range(120))
    assert fake.count("logs") >= 5


# --- The real process ----------------------------------------------------------


async def run_subprocess(env: dict[str, str], cwd: Path = REPO_ROOT) -> tuple[int, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    full_env.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "waypost.runner.main",
        env=full_env,
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_process_exit_codes_and_token_file(serve: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    fake = FakeCoordinator(entrypoint="examples.hello:hello", payload={"name": "pod"})
    url = await serve(fake)
    code, stderr = await run_subprocess(
        {"WAYPOST_COORDINATOR_URL": url, "WAYPOST_ATTEMPT_TOKEN_FILE": str(token_file)}
    )
    assert code == 0, stderr
    assert fake.completed == [{"greeting": "Hello, pod!", "attempt": 1}]
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert any(line.get("message") == "attempt succeeded" for line in lines)
    assert TOKEN not in stderr, "the credential must never be logged"
    # The runner's own lines (they name a logger) never carry payload data.
    own = [line for line in lines if "logger" in line]
    assert own and all("pod" not in json.dumps(line) for line in own)


async def test_process_task_path_and_failure(serve: Any, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "wp_proc_tasks.py").write_text("def boom(ctx, payload):\n    1 / 0\n")
    fake = FakeCoordinator(entrypoint="wp_proc_tasks:boom")
    url = await serve(fake)
    code, stderr = await run_subprocess(
        {
            "WAYPOST_COORDINATOR_URL": url,
            "WAYPOST_ATTEMPT_TOKEN": TOKEN,
            "WAYPOST_TASK_PATH": f"/nonexistent:{tasks}",
        },
        cwd=tmp_path,
    )
    assert code == 1, stderr
    [failure] = fake.failures
    assert failure["name"] == "ZeroDivisionError"
    assert "1 / 0" in failure["traceback"]
    assert "runner/attempt.py" not in failure["traceback"]


async def test_process_superseded_sync_task_exits_3_at_once(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "wp_proc_stuck.py").write_text(
        "import time\n\ndef stuck(ctx, payload):\n    time.sleep(600)\n"
    )
    fake = FakeCoordinator(entrypoint="wp_proc_stuck:stuck", supersede={"heartbeat": 1})
    url = await serve(fake)
    code, _ = await run_subprocess(
        {"WAYPOST_COORDINATOR_URL": url, "WAYPOST_ATTEMPT_TOKEN": TOKEN}, cwd=tmp_path
    )
    assert code == 3
    assert fake.count("complete") == 0 and fake.count("fail") == 0


async def test_process_missing_configuration_exits_2(tmp_path: Path) -> None:
    code, stderr = await run_subprocess({}, cwd=tmp_path)
    assert code == 2
    assert "WAYPOST_COORDINATOR_URL is not set" in stderr


BLOCKER = """
import importlib.abc, sys

BLOCKED = ("pydantic", "asyncpg", "psutil", "croniter", "kopf", "kubernetes",
           "prometheus_client", "waypost.model", "waypost.store", "waypost.engine",
           "waypost.coordinator", "waypost.backends", "waypost.controller", "waypost.cli")

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is not installed in the runner image")
        return None

sys.meta_path.insert(0, Blocker())
from waypost.runner.main import main
main()
"""


async def test_runner_needs_only_the_sdk_and_aiohttp(serve: Any) -> None:
    fake = FakeCoordinator(entrypoint="examples.orders:process_order", payload={"orderId": "o-9"})
    url = await serve(fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.update({"WAYPOST_COORDINATOR_URL": url, "WAYPOST_ATTEMPT_TOKEN": TOKEN})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BLOCKER,
        env=env,
        cwd=str(REPO_ROOT),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert fake.completed and fake.completed[0]["orderId"] == "o-9"


async def test_sys_exit_in_an_async_task_is_reported(serve: Any, task_dir: Path) -> None:
    module = write_module(
        task_dir, "import sys\n\nasync def task(ctx, payload):\n    sys.exit(7)\n"
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task")
    url = await serve(fake)
    assert await run_in_process(url, task_dir) == main.EXIT_FAILED
    [failure] = fake.failures
    assert failure["name"] == "TaskExited"
    assert "SystemExit(7)" in failure["message"]


async def test_process_sigterm_cancels_the_task_and_flushes_logs(
    serve: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned-up"
    (tmp_path / "wp_proc_term.py").write_text(
        textwrap.dedent(
            f"""
            import asyncio

            async def task(ctx, payload):
                ctx.log.info("working")
                await ctx.checkpoint("started", True)
                try:
                    await asyncio.sleep(600)
                finally:
                    ctx.log.info("cleaning up")
                    open({str(marker)!r}, "w").close()
            """
        )
    )
    fake = FakeCoordinator(entrypoint="wp_proc_term:task", heartbeat_interval=60)
    url = await serve(fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    env.update({"WAYPOST_COORDINATOR_URL": url, "WAYPOST_ATTEMPT_TOKEN": TOKEN})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "waypost.runner.main",
        env=env,
        cwd=str(tmp_path),
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            if fake.checkpoints:
                break
            await asyncio.sleep(0.02)
        assert fake.checkpoints, "the task never started"
        process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == main.EXIT_TERMINATED == 143
    assert marker.exists(), "the task's finally block did not run"
    assert [e["message"] for e in fake.logs] == ["working", "cleaning up"]
    assert fake.count("complete") == 0 and fake.count("fail") == 0


async def test_cancelled_run_with_a_sync_task_stuck_in_a_blocking_call(
    serve: Any, task_dir: Path
) -> None:
    module = write_module(
        task_dir,
        """
        import time

        def task(ctx, payload):
            ctx.checkpoint("started", 1)
            time.sleep(3600)
        """,
    )
    fake = FakeCoordinator(entrypoint=f"{module}:task", cancel_on_heartbeat=2,
                           heartbeat_interval=0.2)
    url = await serve(fake)
    code = await asyncio.wait_for(run_in_process(url, task_dir), timeout=20)
    assert code == main.EXIT_STOPPED
    assert fake.cancellations == ["the task was interrupted; the runner exited"]
