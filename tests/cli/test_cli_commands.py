"""The client commands of `waypost` against a running engine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples import flaky, hello, ledger, orders
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.model.enums import RunStatus
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]


async def _waypost(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAYPOST_URL": url}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "waypost.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )


async def test_trigger_wait_list_show_dlq_requeue(database_url: str) -> None:
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(hello.hello, flaky.always_fails)
        done = await _waypost(stack.url, "trigger", "hello", '{"name": "cli"}', "--wait")
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout and "Hello, cli" in done.stdout

        listed = await _waypost(stack.url, "runs", "list", "--task", "hello")
        assert "STATUS" in listed.stdout and "succeeded" in listed.stdout

        failed = await _waypost(stack.url, "trigger", "always-fails", "{}", "--wait")
        assert failed.returncode == 1
        assert "dead_lettered" in failed.stdout
        run_id = failed.stdout.split()[2]  # "triggered run <id>"
        dlq = await _waypost(stack.url, "dlq", "list")
        assert run_id in dlq.stdout
        requeued = await _waypost(stack.url, "dlq", "requeue", run_id)
        assert requeued.returncode == 0 and "requeued" in requeued.stdout
        await wait_for_status(stack.engine, run_id, {RunStatus.DEAD_LETTERED})
        shown = await _waypost(stack.url, "runs", "show", run_id)
        assert "Attempts:" in shown.stdout and "dead_lettered" in shown.stdout

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
        assert unknown.returncode == 1 and "no task 'no-such-task'" in unknown.stderr
        bad_json = await _waypost(stack.url, "trigger", "hello", "{not json")
        assert bad_json.returncode != 0 and "not valid JSON" in bad_json.stderr
    finally:
        await stack.stop()


async def test_trigger_wait_shows_attempts_and_checkpoints_and_logs_prints_lines(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    stack = await Standalone(settings(database_url, missed_heartbeats=10),
                           ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(orders.process_order, hello.hello)
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

        # A wait that runs out ends with a message, exit code 2 and no traceback.
        slow = await _waypost(stack.url, "trigger", "hello", "{}", "--wait", "--timeout", "0")
        assert slow.returncode == 2, slow.stderr
        assert "did not finish within 0.0 s" in slow.stderr
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
    finally:
        await stack.stop()
