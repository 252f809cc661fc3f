"""The client commands of `waypost` against a running engine: output formats, short
ids, paging, --watch, and every error path ending in one line and its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from examples import flaky, hello, ledger, orders
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.sdk.client import WaypostClient
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]
WAYPOST = [sys.executable, "-m", "waypost.cli"]


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    return {**env, "WAYPOST_URL": url, **extra}


async def _waypost(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [*WAYPOST, *args], cwd=REPO, env=_env(url, **env),
        capture_output=True, text=True, timeout=120, check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """The documented exit code, the message on stderr, and no traceback anywhere."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("waypost: ") or proc.stderr.startswith("Usage:"), proc.stderr


@pytest.fixture
async def queued(database_url: str) -> AsyncIterator[Standalone]:
    """A stack that does not dispatch: triggered runs stay queued."""
    stack = await Standalone(settings(database_url), dispatch=False).start()
    await stack.register(hello.hello)
    try:
        yield stack
    finally:
        await stack.stop()


async def test_trigger_wait_list_show_dlq_requeue(database_url: str) -> None:
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(hello.hello, flaky.always_fails)
        done = await _waypost(stack.url, "trigger", "hello", '{"name": "cli"}', "--wait")
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout and "Hello, cli" in done.stdout
        assert "Checkpoints:" in done.stdout and "greeting" in done.stdout

        listed = await _waypost(stack.url, "runs", "list", "--task", "hello")
        header = listed.stdout.splitlines()[0].split()
        assert header == ["ID", "TASK", "STATUS", "ATTEMPT", "DURATION", "AGE"]
        assert "succeeded" in listed.stdout and "1/" in listed.stdout

        failed = await _waypost(stack.url, "trigger", "always-fails", "{}", "--wait")
        assert failed.returncode == 3, failed.stderr  # the documented "run failed" code
        assert "dead_lettered" in failed.stdout
        run_id = failed.stdout.split()[2]  # "triggered run <id>"
        dlq = await _waypost(stack.url, "dlq", "list")
        assert run_id[:8] in dlq.stdout and "DEAD-FOR" in dlq.stdout
        dlq_wide = await _waypost(stack.url, "dlq", "list", "-o", "wide")
        assert run_id in dlq_wide.stdout
        requeued = await _waypost(stack.url, "dlq", "requeue", run_id[:8])  # a short id
        assert requeued.returncode == 0 and f"run {run_id} requeued" in requeued.stdout
        await wait_for_status(stack.engine, run_id, {RunStatus.DEAD_LETTERED})
        shown = await _waypost(stack.url, "runs", "show", run_id[:6])
        assert shown.returncode == 0, shown.stderr
        assert "Attempts:" in shown.stdout and "dead_lettered" in shown.stdout
        assert "Last error:" in shown.stdout and "Traceback" in shown.stdout  # the task's

        dry = await _waypost(stack.url, "bulk", "requeue", "--task", "always-fails",
                             "--dead-lettered", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would requeue 1 runs (dry run, nothing changed)" in dry.stdout
        bulk = await _waypost(stack.url, "bulk", "requeue", "--task", "always-fails",
                              "--error-type", "error", "--batch-size", "1")
        assert bulk.returncode == 0, bulk.stderr
        assert "requeue: 1/1 done, 0 skipped" in bulk.stdout
        assert "requeue: finished, 1 changed, 0 skipped" in bulk.stdout
        await wait_for_status(stack.engine, run_id, {RunStatus.DEAD_LETTERED})

        unknown = await _waypost(stack.url, "trigger", "no-such-task", "{}")
        _one_line_error(unknown, 1, "no task 'no-such-task'")
        bad_json = await _waypost(stack.url, "trigger", "hello", "{not json")
        _one_line_error(bad_json, 2, "not valid JSON")
    finally:
        await stack.stop()


@pytest.fixture
async def running(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Standalone]:
    """A stack that runs the examples in processes."""
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    stack = await Standalone(settings(database_url, missed_heartbeats=10),
                             ProcessBackend(max_parallel=2)).start()
    await stack.register(orders.process_order, hello.hello, flaky.always_fails)
    try:
        yield stack
    finally:
        await stack.stop()


async def test_trigger_wait_shows_attempts_and_checkpoints_and_logs_prints_lines(
    running: Standalone, tmp_path: Path
) -> None:
    stack = running
    done = await _waypost(stack.url, "trigger", "process-order",
                          '{"orderId": "o-5", "failPaymentOnAttempts": [1]}', "--wait")
    assert done.returncode == 0, done.stderr
    progress = done.stdout.splitlines()
    for expected in ("attempt 1 started (memory 256.0 MiB)",
                     "checkpoint order-fetched (",
                     "attempt 1 failed: error",
                     "status retrying",
                     "attempt 2 started",
                     "checkpoint payment-complete (",
                     "attempt 2 succeeded in",
                     "status succeeded"):
        assert any(expected in line for line in progress), (expected, done.stdout)
    run_id = progress[0].split()[2]

    logs = await _waypost(stack.url, "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any("#1 [order-fetched] INFO    fetching order" in line
               and '"orderId":"o-5"' in line for line in lines), logs.stdout
    assert any("#1 [payment-complete] WARNING payment declined" in line for line in lines)
    second = await _waypost(stack.url, "logs", run_id, "--attempt", "2")
    assert "#2 INFO    payment complete" in second.stdout and "#1" not in second.stdout
    followed = await _waypost(stack.url, "logs", run_id, "-f", "--level", "warning")
    assert followed.returncode == 0 and "payment declined" in followed.stdout
    assert "INFO" not in followed.stdout

    # A wait that runs out ends with a message, exit code 1 (README: exit codes) and
    # no traceback.
    slow = await _waypost(stack.url, "trigger", "hello", "{}", "--wait", "--timeout", "0.1")
    assert slow.returncode == 1, slow.stderr
    assert "did not finish within 0.1 s" in slow.stderr
    assert "Traceback" not in slow.stderr

    edited = tmp_path / "order.json"
    edited.write_text('{"id": "o-cli", "amountCents": 1, "items": []}')
    replayed = await _waypost(
        stack.url, "replay", run_id, "--from", "order-fetched", "--payload",
        '{"orderId": "o-5"}', "--set-checkpoint", f"order-fetched=@{edited}", "--wait")
    assert replayed.returncode == 0, replayed.stderr
    assert f"of {run_id} (after checkpoint order-fetched)" in replayed.stdout
    assert "attempt 1 started" in replayed.stdout and "o-cli" in replayed.stdout
    assert "checkpoint order-fetched (41 B, copied by the replay)" in replayed.stdout
    assert f"Replay of {run_id} from order-fetched (current spec)" in replayed.stdout
    shown = await _waypost(stack.url, "runs", "show", run_id)
    assert "Replays:" in shown.stdout
    bad = await _waypost(stack.url, "replay", run_id, "--from", "nope")
    assert bad.returncode == 1 and "no checkpoint 'nope'" in bad.stderr
    bad_edit = await _waypost(stack.url, "replay", run_id, "--set-checkpoint", "novalue")
    assert bad_edit.returncode != 0 and "KEY=JSON" in bad_edit.stderr

    missing = await _waypost(stack.url, "logs", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "no run" in missing.stderr
async def test_json_and_yaml_output_match_the_api(queued: Standalone) -> None:
    for i in range(3):
        await control.trigger(queued.engine, "default", "hello",
                              TriggerRequest(payload={"i": i}))
    async with WaypostClient(queued.url) as client:
        api_runs = await client.list_runs()
        api_run = await client.get_run(api_runs[0]["id"])
    listed = await _waypost(queued.url, "runs", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"runs": api_runs, "total": 3}
    shown = await _waypost(queued.url, "runs", "show", api_run["id"], "-o", "yaml")
    assert yaml.safe_load(shown.stdout) == json.loads(json.dumps(api_run))
    triggered = await _waypost(queued.url, "trigger", "hello", '{"i": 9}', "-o", "json")
    doc = json.loads(triggered.stdout)
    async with WaypostClient(queued.url) as client:
        assert await client.get_run(doc["id"]) == {**doc, "attempts": [], "checkpoints": [],
                                                   "replays": []}


async def test_short_ids_resolve_and_ambiguous_ones_are_refused(queued: Standalone) -> None:
    # 17 runs: two of them must share their first hex digit.
    await control.trigger_many(queued.engine, "default", "hello", [{}] * 17)
    async with WaypostClient(queued.url) as client:
        ids = [r["id"] for r in await client.list_runs(limit=100)]
    first = [i[0] for i in ids]
    shared = next(c for c in first if first.count(c) > 1)
    ambiguous = await _waypost(queued.url, "runs", "show", shared)
    _one_line_error(ambiguous, 2, f"'{shared}' is ambiguous")
    for candidate in (i for i in ids if i.startswith(shared)):
        assert candidate in ambiguous.stderr  # every candidate is listed

    unique = ids[0][:12]
    shown = await _waypost(queued.url, "runs", "show", unique, "-o", "json")
    assert json.loads(shown.stdout)["id"] == ids[0]
    cancelled = await _waypost(queued.url, "cancel", ids[1][:8])
    assert cancelled.returncode == 0 and f"run {ids[1]} is cancelled" in cancelled.stdout

    missing = await _waypost(queued.url, "runs", "show", "0000000000")
    if not any(i.startswith("0000000000") for i in ids):
        _one_line_error(missing, 1, "no run id starts with '0000000000'")
    not_hex = await _waypost(queued.url, "runs", "show", "xyz")
    _one_line_error(not_hex, 2, "'xyz' is not a run id")


async def test_paging_says_how_many_there_are(queued: Standalone) -> None:
    await control.trigger_many(queued.engine, "default", "hello", [{}] * 25)
    first = await _waypost(queued.url, "runs", "list")
    assert len(first.stdout.splitlines()) == 1 + 20
    assert "showing 20 of 25 runs (--limit N or --all for more)" in first.stderr
    every = await _waypost(queued.url, "runs", "list", "--all")
    assert len(every.stdout.splitlines()) == 1 + 25 and "showing" not in every.stderr
    five = await _waypost(queued.url, "runs", "list", "--limit", "5", "-o", "json")
    doc = json.loads(five.stdout)
    assert len(doc["runs"]) == 5 and doc["total"] == 25


def _ctrl_c_as_on_a_terminal() -> None:
    """In the child before exec: SIGINT as an interactive user's shell leaves it.

    These tests send SIGINT as Ctrl-C would. A non-interactive shell starts a
    background job (``make test &``) with SIGINT ignored, every child inherits
    that, and Python then installs no KeyboardInterrupt handler: the CLI would
    rightly go on running, and the test would wait for nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_watch_prints_changes_until_interrupted(queued: Standalone) -> None:
    proc = await asyncio.create_subprocess_exec(
        *WAYPOST, "runs", "list", "-w", "--interval", "0.3", "-o", "json", cwd=REPO,
        env=_env(queued.url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_as_on_a_terminal)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await asyncio.wait_for(_read_json(proc.stdout), 60)
        assert first["runs"] == []
        run, _ = await control.trigger(queued.engine, "default", "hello", TriggerRequest())
        second = await asyncio.wait_for(_read_json(proc.stdout), 60)
        assert [r["id"] for r in second["runs"]] == [run.id]
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 120)
    stderr = (await proc.stderr.read()).decode()
    assert code == 0 and "Traceback" not in stderr, stderr


async def test_tokens_list_watches_too(queued: Standalone) -> None:
    """Every list command has --watch: wait tokens appear as they are created."""
    proc = await asyncio.create_subprocess_exec(
        *WAYPOST, "tokens", "list", "-w", "--interval", "0.3", "-o", "json", cwd=REPO,
        env=_env(queued.url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_as_on_a_terminal)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await asyncio.wait_for(_read_json(proc.stdout), 60)
        assert first["tokens"] == []
        async with WaypostClient(queued.url) as client:
            token = await client.create_token(timeout="1h")
        second = await asyncio.wait_for(_read_json(proc.stdout), 60)
        assert [t["id"] for t in second["tokens"]] == [token["id"]]
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 120)
    stderr = (await proc.stderr.read()).decode()
    assert code == 0 and "Traceback" not in stderr, stderr


async def _read_json(stream: asyncio.StreamReader) -> dict[str, object]:
    text = ""
    while True:
        text += (await stream.readline()).decode()
        try:
            doc: dict[str, object] = json.loads(text)
            return doc
        except json.JSONDecodeError:
            continue


async def test_error_paths_end_in_one_line(queued: Standalone) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    unreachable = await _waypost(dead, "runs", "list")
    _one_line_error(unreachable, 1, f"cannot reach the API at {dead}")
    debug = await _waypost(dead, "--debug", "runs", "list")
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # --debug shows it

    timeout = await _waypost(queued.url, "trigger", "hello", "--wait", "--timeout", "1")
    _one_line_error(timeout, 1, "did not finish within 1 s")
    usage = await _waypost(queued.url, "runs", "list", "--no-such-flag")
    _one_line_error(usage, 2, "No such option")
    bad_output = await _waypost(queued.url, "runs", "list", "-o", "xml")
    _one_line_error(bad_output, 2, "'xml' is not one of")
    no_db = await _waypost(queued.url, "operator")
    _one_line_error(no_db, 2, "set WAYPOST_DATABASE_URL")
    api_error = await _waypost(queued.url, "--token", "x", "runs", "list", "--status", "nope")
    _one_line_error(api_error, 1, "unknown status")

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = await _waypost(queued.url, "dev", "--port", str(port))
    _one_line_error(taken, 1, f"port {port} on 127.0.0.1 is already in use")

    version = await _waypost(queued.url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("waypost ")


async def test_interrupting_a_wait_and_a_closed_pipe(queued: Standalone) -> None:
    proc = await asyncio.create_subprocess_exec(
        *WAYPOST, "trigger", "hello", "--wait", cwd=REPO, env=_env(queued.url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_as_on_a_terminal)
    assert proc.stdout is not None and proc.stderr is not None
    assert b"triggered run" in await asyncio.wait_for(proc.stdout.readline(), 60)
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 120) == 130
    stderr = (await proc.stderr.read()).decode()
    assert stderr.strip() == "waypost: interrupted", stderr

    # A document far larger than a pipe's buffer, read by something that stops early.
    run, _ = await control.trigger(queued.engine, "default", "hello",
                                   TriggerRequest(payload={"blob": "x" * 400_000}))
    piped = await asyncio.to_thread(
        subprocess.run, f"{sys.executable} -m waypost.cli runs show {run.id} -o yaml | head -c 10",
        shell=True, executable="/bin/bash", cwd=REPO, env=_env(queued.url),
        capture_output=True, text=True, timeout=60, check=False)
    assert piped.stdout == "id: " + run.id[:6]
    assert piped.stderr == ""


async def test_colours_only_on_a_terminal(queued: Standalone) -> None:
    await control.trigger(queued.engine, "default", "hello", TriggerRequest())
    piped = await _waypost(queued.url, "runs", "list")
    assert "\x1b[" not in piped.stdout and "queued" in piped.stdout

    def on_a_terminal() -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([*WAYPOST, "runs", "list"], cwd=REPO,
                                env=_env(queued.url, TERM="xterm-256color"),
                                stdout=follower, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(60)
        os.close(leader)
        return b"".join(chunks).decode()

    shown = await asyncio.to_thread(on_a_terminal)
    assert "\x1b[" in shown and "queued" in shown


async def test_logs_replay_and_bulk_speak_every_format(running: Standalone) -> None:
    stack = running
    done = await _waypost(stack.url, "trigger", "process-order",
                          '{"orderId": "o-7", "failPaymentOnAttempts": [1]}', "--wait",
                          "-o", "json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    assert "attempt 2 succeeded" in done.stderr  # progress beside the document

    async with WaypostClient(stack.url) as client:
        entries, _ = await client.logs(run_id, limit=1000)
    as_json = await _waypost(stack.url, "logs", run_id[:7], "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == entries
    as_yaml = await _waypost(stack.url, "logs", run_id[:7], "-o", "yaml")
    assert list(yaml.safe_load_all(as_yaml.stdout)) == entries
    wide = await _waypost(stack.url, "logs", run_id, "-o", "wide", "--level", "warning")
    assert f'WARNING payment declined {{"run_id":"{run_id}","attempt":1' in wide.stdout
    assert wide.stdout.split()[0].endswith("Z") and "." in wide.stdout.split()[0]  # ms
    bad_level = await _waypost(stack.url, "logs", run_id, "--level", "loud")
    _one_line_error(bad_level, 2, "'loud' is not one of")

    replayed = await _waypost(stack.url, "replay", run_id[:8], "--from", "order-fetched",
                              "-o", "yaml")
    assert replayed.returncode == 0, replayed.stderr
    replay_doc = yaml.safe_load(replayed.stdout)
    assert replay_doc["replayOf"] == run_id and replay_doc["source"] == "replay"
    waited = await _waypost(stack.url, "replay", run_id[:8], "--payload",
                            '{"orderId": "o-8", "failPaymentOnAttempts": [1, 2, 3, 4, 5]}',
                            "--wait")
    # Every attempt fails: the documented "run did not succeed" code, no traceback.
    assert waited.returncode == 3, (waited.stdout, waited.stderr)
    assert "status dead_lettered" in waited.stdout and "Traceback" not in waited.stderr
    timeout = await _waypost(stack.url, "replay", run_id, "--wait", "--timeout", "0.1")
    _one_line_error(timeout, 1, "did not finish within 0.1 s")
    ambiguous_or_missing = await _waypost(stack.url, "replay", "ffffffffff")
    _one_line_error(ambiguous_or_missing, 1, "no run id starts with 'ffffffffff'")

    failed = await _waypost(stack.url, "trigger", "always-fails", "{}", "--wait")
    assert failed.returncode == 3, failed.stderr
    dry = await _waypost(stack.url, "bulk", "requeue", "--dead-lettered", "--dry-run",
                         "-o", "json")
    assert json.loads(dry.stdout) == {"action": "requeue", "dryRun": True, "matched": 2,
                                      "changed": 0, "skipped": 0, "runIds": []}
    requeued = await _waypost(stack.url, "bulk", "requeue", "--task", "always-fails",
                              "--error-type", "error", "-o", "json")
    summary = json.loads(requeued.stdout)
    assert summary["changed"] == 1 and len(summary["runIds"]) == 1, requeued.stderr
    assert "requeue: finished, 1 changed, 0 skipped" in requeued.stderr
    bad_type = await _waypost(stack.url, "bulk", "cancel", "--error-type", "nope")
    _one_line_error(bad_type, 2, "'nope' is not one of")
    bad_time = await _waypost(stack.url, "bulk", "cancel", "--since", "yesterday")
    _one_line_error(bad_time, 1, "filter.since")


# Every command that prints, read by something that stops early: `head -1` leaves
# after the first line of a command that goes on printing; `true` reads nothing.
CLOSED_PIPES = [
    ("trigger hello --wait", "head -1"),
    ("trigger hello --wait -o yaml 2>/dev/null", "true"),  # its progress goes to stderr
    ("runs list", "true"),
    ("runs list -o wide", "true"),
    ("runs show {run}", "true"),
    ("logs {run}", "true"),
    ("logs -f {run}", "true"),
    ("logs {run} -o json", "true"),
    ("dlq list", "true"),
    ("schedules list", "true"),
    ("bulk requeue --dry-run", "true"),
    ("replay {run}", "true"),
    ("crds", "true"),
    ("manifests examples.orders", "true"),
    ("--help", "true"),
    ("runs list --help", "true"),
]


async def test_every_command_piped_into_head_ends_quietly(database_url: str) -> None:
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(hello.hello)
        run, _ = await control.trigger(stack.engine, "default", "hello", TriggerRequest())
        await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED})
        for command, reader in CLOSED_PIPES:
            line = (f"{sys.executable} -m waypost.cli {command.format(run=run.id)} | {reader}; "
                    "echo rc=${PIPESTATUS[0]} >&2")
            piped = await asyncio.to_thread(
                subprocess.run, line, shell=True, executable="/bin/bash", cwd=REPO,
                env=_env(stack.url), capture_output=True, text=True, timeout=120, check=False)
            # Nothing but the exit code on stderr: no traceback, no "Exception ignored".
            assert piped.stderr == "rc=141\n", (command, reader, piped.stderr)
    finally:
        await stack.stop()


async def test_watch_on_a_terminal_redraws_the_table(queued: Standalone) -> None:
    first, _ = await control.trigger(queued.engine, "default", "hello", TriggerRequest())
    leader, follower = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *WAYPOST, "runs", "list", "--watch", "--interval", "0.3", cwd=REPO,
        env=_env(queued.url, TERM="xterm-256color"), stdin=follower, stdout=follower,
        stderr=follower, preexec_fn=_ctrl_c_as_on_a_terminal)
    os.close(follower)
    seen = b""

    async def read_until(text: bytes) -> None:
        nonlocal seen
        loop = asyncio.get_running_loop()
        while text not in seen:
            seen += await loop.run_in_executor(None, os.read, leader, 65536)

    try:
        await asyncio.wait_for(read_until(first.id[:8].encode()), 60)
        second, _ = await control.trigger(queued.engine, "default", "hello", TriggerRequest())
        await asyncio.wait_for(read_until(second.id[:8].encode()), 60)
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 120)
        with contextlib.suppress(OSError):  # EIO once the process closed the terminal
            seen += os.read(leader, 65536)
        os.close(leader)
    shown = seen.decode(errors="replace")
    assert code == 0, shown
    # rich Live redraws in place: the cursor is hidden, moved up over the last table,
    # and the table is drawn again with both runs; colours are on.
    assert "\x1b[?25l" in shown and "\x1b[2K" in shown and "\x1b[1A" in shown, repr(shown)
    last = shown.rsplit("ID", 1)[-1]
    assert first.id[:8] in last and second.id[:8] in last
    assert "Traceback" not in shown and "\x1b[" in shown
