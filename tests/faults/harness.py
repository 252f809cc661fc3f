"""The fault suite's parts: an engine in its own process, a load, a TCP proxy that
cuts connections, and the invariant check every scenario ends with.

The invariants (issue 16, section 6):

1. every run is terminal exactly once, or still active;
2. no completion was accepted from a stale attempt: a succeeded run has exactly one
   succeeded attempt, its last, and its result was written by it;
3. step side effects (the ledger) never exceed attempts, and a step whose checkpoint
   an attempt stored is never run again by a later attempt;
4. nothing is stuck past its lease;
5. no runner process outlives the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from examples import ledger
from waypost.store import embedded

REPO = Path(__file__).resolve().parents[2]
TASKS_FILE = Path(__file__).with_name("fault_tasks.py")
TASK = "fault-steps"
TERMINAL = {"succeeded", "failed", "dead_lettered", "cancelled", "expired"}
ACTIVE = {"queued", "running", "retrying", "delayed", "waiting"}


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float,
                     what: str, every: float = 0.2) -> float:
    """Poll ``predicate`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic() - start


@dataclass
class DevEngine:
    """`waypost dev` with the fault task, in its own process (so it can be killed),
    against a database given by DSN. Its coordinator port stays the same across
    restarts, as a restarted Deployment's Service does."""

    dsn: str
    state_dir: Path
    port: int = field(default_factory=embedded.free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.jsonl"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        env = dict(os.environ)
        env.update({
            "WAYPOST_DATABASE_URL": self.dsn,
            "WAYPOST_HEARTBEAT_INTERVAL": "0.5",
            "WAYPOST_MISSED_HEARTBEATS": "4",
            "WAYPOST_START_TIMEOUT": "20",
            "WAYPOST_POLL_INTERVAL": "0.2",
            "PYTHONPATH": str(REPO),
        })
        env.update(self.env)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.state_dir / "engine.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "waypost.cli", "dev", str(TASKS_FILE), "--no-reload",
                 "--port", str(self.port), "--state-dir", str(self.state_dir)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        finally:
            out.close()
        self.starts += 1

    async def ready(self, timeout: float = 60) -> float:
        """Wait until /readyz answers 200 (tasks registered); seconds it took."""
        async def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the engine exited with {self.process.returncode}; "
                                     f"see {self.state_dir / 'engine.log'}")
            try:
                async with aiohttp.ClientSession() as http, http.get(
                        f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    return resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False
        return await wait_until(up, timeout, "the engine to be ready")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s: the end of a scenario."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


async def trigger(http: aiohttp.ClientSession, url: str, payload: dict[str, Any],
                  key: str, *, deadline: float = 60) -> str:
    """Trigger one run, retrying through outages with the same idempotency key (so a
    retried trigger never makes a second run); returns the run id."""
    body = {"payload": payload, "idempotencyKey": key}
    end = time.monotonic() + deadline
    while True:
        try:
            async with http.post(f"{url}/v1/tasks/default/{TASK}/trigger", json=body,
                                 timeout=aiohttp.ClientTimeout(total=10)) as resp:
                doc = await resp.json(content_type=None)
                if resp.status in (200, 201):
                    return str(doc["id"])
                assert resp.status >= 500, (resp.status, doc)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
            pass
        assert time.monotonic() < end, f"could not trigger {key} within {deadline} s"
        await asyncio.sleep(0.2)


@dataclass
class Load:
    """A steady load: ``rate`` triggers a second until stopped; remembers every run id."""

    url: str
    rate: float = 2.0
    payload: dict[str, Any] = field(default_factory=lambda: {"steps": 3, "pause": 0.2})
    run_ids: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            pending: set[asyncio.Task[str]] = set()
            n = 0
            while not stop.is_set():
                key = f"{self.prefix}-{n}"
                n += 1
                t = asyncio.get_running_loop().create_task(
                    trigger(http, self.url, self.payload, key, deadline=120))
                t.add_done_callback(lambda d: self.run_ids.append(d.result())
                                    if not d.cancelled() and d.exception() is None else None)
                pending.add(t)
                t.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1 / self.rate)
            # Triggers in flight finish (they retry through an outage).
            if pending:
                await asyncio.gather(*pending)


async def all_settled(dsn: str, run_ids: list[str]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        active = await conn.fetchval(
            "SELECT count(*) FROM waypost.runs WHERE id = ANY($1::uuid[]) "
            "AND status <> ALL($2::text[])", run_ids, list(TERMINAL))
        return int(active) == 0
    finally:
        await conn.close()


def runner_processes(coordinator_url: str) -> list[psutil.Process]:
    """Runner processes of this scenario, found by their coordinator URL (whoever is
    their parent now: a killed engine's runners are reparented)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "waypost.runner.entry" not in cmd and "waypost.runner.main" not in cmd:
                continue
            if proc.environ().get("WAYPOST_COORDINATOR_URL") == coordinator_url:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@dataclass
class Report:
    """What a scenario measured, printed for docs/reliability.md."""

    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)

    def show(self) -> None:
        line = json.dumps({"scenario": self.scenario, **self.figures}, default=str)
        print(f"\nFAULT-REPORT {line}", flush=True)
        out = os.environ.get("WAYPOST_FAULT_REPORT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(line + "\n")


async def no_runner_left(coordinator_url: str, timeout: float = 90) -> None:
    """Invariant 5, once the engine has stopped: no runner process of the scenario is
    alive, whoever started it (a killed engine's runners are reparented). Hot workers
    idle in the engine that runs them; a stopped engine ends its own, and those of a
    killed engine must end on their own (their idle TTL is 60 s)."""
    async def none_left() -> bool:
        return not runner_processes(coordinator_url)
    await wait_until(none_left, timeout, "runner processes to end")


async def check_invariants(dsn: str, run_ids: list[str], ledger_path: Path, *,
                           lease_slack_seconds: float = 5.0,
                           require_terminal: bool = True) -> dict[str, Any]:
    """Assert invariants 1-4 over ``run_ids``; return figures for the report."""
    assert run_ids, "the scenario triggered no runs"
    assert len(set(run_ids)) == len(run_ids), "a trigger made two runs"
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, status, attempt, result FROM waypost.runs WHERE id = ANY($1::uuid[])",
            run_ids)
        assert len(rows) == len(run_ids), "a triggered run is missing from the store"
        runs = {str(r["id"]): r for r in rows}
        attempts = defaultdict(list)
        for a in await conn.fetch(
                "SELECT run_id, attempt, claim_token, status, error FROM waypost.attempts "
                "WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, attempt", run_ids):
            attempts[str(a["run_id"])].append(a)
        terminal_events = Counter({str(r["run_id"]): r["n"] for r in await conn.fetch(
            "SELECT run_id, count(*) AS n FROM waypost.run_events WHERE kind = 'status' "
            "AND data->>'status' = ANY($2::text[]) AND run_id = ANY($1::uuid[]) "
            "GROUP BY run_id", run_ids, list(TERMINAL))})
        checkpoints = {(str(c["run_id"]), c["key"]): c["attempt"] for c in await conn.fetch(
            "SELECT run_id, key, attempt FROM waypost.checkpoints "
            "WHERE run_id = ANY($1::uuid[])", run_ids)}
        stuck = await conn.fetch(
            "SELECT run_id, lease_expires_at FROM waypost.run_queue WHERE state = 'running' "
            "AND run_id = ANY($1::uuid[]) AND lease_expires_at < now() - make_interval("
            "secs => $2)", run_ids, lease_slack_seconds)
    finally:
        await conn.close()

    # 1. Terminal exactly once, or still active.
    statuses = Counter(r["status"] for r in runs.values())
    for rid, r in runs.items():
        if r["status"] in TERMINAL:
            assert terminal_events[rid] == 1, (rid, r["status"], terminal_events[rid])
        else:
            assert r["status"] in ACTIVE, (rid, r["status"])
            assert terminal_events[rid] == 0, (rid, "active yet recorded terminal")
            assert not require_terminal, f"run {rid} is still {r['status']}"
    # 2. No completion from a stale attempt.
    for rid, r in runs.items():
        tried = attempts[rid]
        assert [a["attempt"] for a in tried] == list(range(1, len(tried) + 1)), (rid, tried)
        won = [a for a in tried if a["status"] == "succeeded"]
        assert len(won) <= 1, (rid, "two attempts succeeded")
        if r["status"] == "succeeded":
            assert won and won[0]["attempt"] == r["attempt"] == len(tried), (rid, tried)
            assert r["result"] is not None
        else:
            assert not won, (rid, r["status"], "an attempt succeeded")
    # 3. Side effects: at most one per attempt and step; a checkpointed step is not redone.
    effects = Counter()
    for entry in ledger.read(str(ledger_path)):
        rid = entry["run"]
        if rid not in runs:
            continue
        effects[(rid, entry["effect"])] += 1
        assert 1 <= entry["attempt"] <= max(len(attempts[rid]), 1), entry
        done_at = checkpoints.get((rid, entry["effect"]))
        assert done_at is None or entry["attempt"] <= done_at, (
            entry, f"step redone after attempt {done_at} checkpointed it")
    for (rid, step), n in effects.items():
        assert n <= len(attempts[rid]), (rid, step, n, len(attempts[rid]))
    for rid, r in runs.items():
        if r["status"] == "succeeded":
            # The fault task returns how many steps it ran.
            for i in range(json.loads(r["result"])["steps"]):
                assert effects[(rid, f"s{i}")] >= 1, (rid, f"s{i} never ran")
    # 4. Nothing stuck past its lease.
    assert not stuck, f"attempts past their lease: {stuck}"
    # 5. (No runner process left behind: no_runner_left, once the engine has stopped.)

    total_attempts = sum(len(a) for a in attempts.values())
    redone = sum(1 for (_rid, _s), n in effects.items() if n > 1)
    return {
        "runs": len(runs),
        "statuses": dict(statuses),
        "attempts": total_attempts,
        "extra_attempts": total_attempts - len(runs),
        "lost_attempts": sum(1 for a in attempts.values() for x in a
                             if x["status"] == "failed"),
        "steps_redone": redone,
    }


def jitter(low: float, high: float, rng: random.Random) -> float:
    return low + (high - low) * rng.random()



@dataclass
class PgProxy:
    """A TCP proxy between the engine and Postgres that cuts connections at the point a
    transaction commits: after a simple Query or an extended-protocol Sync (where the
    server commits an implicit transaction, and where an explicit COMMIT is sent).

    ``mode`` decides per statement: ``"after"`` forwards it and then cuts the client off
    before the answer arrives (the commit happened; the engine cannot know), ``"before"``
    cuts without forwarding (the server rolls back), None passes it through.
    """

    upstream_port: int
    decide: Callable[[], str | None] = lambda: None
    port: int = field(default_factory=embedded.free_port)
    cuts: Counter[str] = field(default_factory=Counter)

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._conns: set[asyncio.Task[None]] = set()
        return self

    async def close(self) -> None:
        self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            self._conns.discard(task)
            return
        back = asyncio.get_running_loop().create_task(self._pump(server_r, client_w))
        try:
            await self._forward(client_r, server_w, client_w)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            back.cancel()
            client_w.close()
            # Give the server a moment to run what it was sent before it sees EOF.
            await asyncio.sleep(0.3)
            server_w.close()
            self._conns.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _forward(self, client: asyncio.StreamReader, server: asyncio.StreamWriter,
                       client_w: asyncio.StreamWriter) -> None:
        # Start-up messages carry no type byte: SSLRequest, then StartupMessage.
        while True:
            head = await client.readexactly(4)
            length = int.from_bytes(head, "big")
            body = await client.readexactly(length - 4)
            server.write(head + body)
            await server.drain()
            code = int.from_bytes(body[:4], "big")
            if code == 196608:  # protocol 3.0: the StartupMessage; typed messages follow
                break
            if code == 80877102:  # CancelRequest: nothing follows
                return
        while True:
            kind = await client.readexactly(1)
            head = await client.readexactly(4)
            body = await client.readexactly(int.from_bytes(head, "big") - 4)
            message = kind + head + body
            if kind in (b"Q", b"S"):
                mode = self.decide()
                if mode == "before":
                    self.cuts["before"] += 1
                    return
                server.write(message)
                await server.drain()
                if mode == "after":
                    self.cuts["after"] += 1
                    return
                continue
            if kind == b"X":  # Terminate
                server.write(message)
                await server.drain()
                return
            server.write(message)
            await server.drain()
