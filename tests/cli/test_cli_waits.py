"""`waypost trigger --batch`, `--delay/--ttl`, `runs reschedule`, `runs children` and
`tokens ...` against a running engine (real Postgres), through the real CLI process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from examples import hello
from tests.factories import settings
from waypost.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]
WAYPOST = [sys.executable, "-m", "waypost.cli"]


async def _waypost(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPOST_")}
    return await asyncio.to_thread(
        subprocess.run, [*WAYPOST, *args], cwd=REPO, env={**env, "WAYPOST_URL": url},
        capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
async def queued(database_url: str) -> AsyncIterator[Standalone]:
    stack = await Standalone(settings(database_url), dispatch=False).start()
    await stack.register(hello.hello)
    try:
        yield stack
    finally:
        await stack.stop()


async def test_trigger_batch_from_jsonl(queued: Standalone, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    lines = [json.dumps({"payload": {"name": f"n{i}"}, "idempotencyKey": f"k{i % 4}"})
             for i in range(6)]
    items.write_text("\n".join(lines) + "\n\n")
    proc = await _waypost(queued.url, "trigger", "hello", "--batch", str(items), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["created"] == 4
    assert [r["new"] for r in answer["runs"]] == [True] * 4 + [False] * 2
    assert answer["runs"][4]["id"] == answer["runs"][0]["id"]
    proc = await _waypost(queued.url, "trigger", "hello", "--batch", str(items))
    assert proc.returncode == 0 and "triggered 0 new runs of hello (6 existing" in proc.stdout


async def test_bad_batch_names_the_line_or_item(queued: Standalone, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"payload": 1}\nnot json\n')
    proc = await _waypost(queued.url, "trigger", "hello", "--batch", str(items))
    assert proc.returncode == 2 and f"{items}:2: not JSON" in proc.stderr
    items.write_text('{"payload": 1}\n{"payload": 2, "priority": "high"}\n')
    proc = await _waypost(queued.url, "trigger", "hello", "--batch", str(items))
    assert proc.returncode == 1 and "items.1.priority" in proc.stderr, proc.stderr
    runs = await queued.engine.pool.fetchval("SELECT count(*) FROM waypost.runs")
    assert runs == 0


async def test_delay_reschedule_and_tokens(queued: Standalone) -> None:
    proc = await _waypost(queued.url, "trigger", "hello", '{"name": "x"}', "--delay", "1h",
                          "--ttl", "2h", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["status"] == "delayed" and run["waiting"]["kind"] == "delay"
    proc = await _waypost(queued.url, "runs", "show", run["id"][:8])
    assert "Waiting for:" in proc.stdout and "delay" in proc.stdout
    proc = await _waypost(queued.url, "runs", "reschedule", run["id"][:8], "--delay", "2h")
    assert proc.returncode == 0 and "is delayed: delay, until" in proc.stdout, proc.stdout
    proc = await _waypost(queued.url, "runs", "reschedule", run["id"][:8])
    assert proc.returncode == 2 and "exactly one of --delay and --run-at" in proc.stderr
    proc = await _waypost(queued.url, "trigger", "hello", "--delay", "soon")
    assert proc.returncode == 2 and "--delay" in proc.stderr, proc.stderr
    proc = await _waypost(queued.url, "trigger", "hello", "--ttl", "0")
    assert proc.returncode == 1 and "ttl" in proc.stderr, proc.stderr

    proc = await _waypost(queued.url, "tokens", "create", "--timeout", "1h", "-o", "json")
    token = json.loads(proc.stdout)
    assert token["status"] == "pending" and token["url"].endswith(token["url"].split("/")[-1])
    proc = await _waypost(queued.url, "tokens", "complete", token["id"], '{"approved": true}')
    assert proc.returncode == 0 and "completed" in proc.stdout, proc.stderr
    proc = await _waypost(queued.url, "tokens", "complete", token["id"], '{"approved": false}')
    assert proc.returncode == 1 and "409 token_already_completed" in proc.stderr
    proc = await _waypost(queued.url, "tokens", "show", token["id"], "-o", "json")
    assert json.loads(proc.stdout)["data"] == {"approved": True}
    proc = await _waypost(queued.url, "tokens", "list")
    assert token["id"] in proc.stdout and "completed" in proc.stdout
