"""The ``process`` backend: each attempt is a local ``waypost-runner`` subprocess.

For `waypost dev` and fast tests. A watchdog samples the process tree's resident
memory and kills it past the task's limit, which is recorded as an OOM failure
just as a Pod's ``OOMKilled``; the task timeout kills it as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from waypost.engine.backend import AttemptExit, AttemptLaunch, ExitHandler
from waypost.engine.output import OutputLine, OutputSink
from waypost.model.enums import FailureType
from waypost.sdk import protocol

log = logging.getLogger("waypost.backends.process")

MiB = 1024 * 1024


@dataclass
class _Worker:
    launch: AttemptLaunch
    process: asyncio.subprocess.Process
    verdict: tuple[FailureType, str] | None = None
    peak_rss: int = 0
    readers: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class ProcessBackend:
    """Runs attempts as subprocesses of this process, at most ``max_parallel`` at once."""

    max_parallel: int = 4
    task_path: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    memory_poll_seconds: float = 0.05
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "process"
    # Spawning a process and importing the task, on a busy machine.
    start_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._workers: dict[uuid.UUID, _Worker] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._handler: ExitHandler | None = None
        self._sink: OutputSink | None = None

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._handler = handler

    def capture_output(self, sink: OutputSink) -> None:
        """Send what runner processes print to ``sink`` as well (dev mode: it joins
        the run's log stream), instead of only to ``log_dir``."""
        self._sink = sink

    def free_slots(self) -> int:
        return self.max_parallel - len(self._workers)

    def running(self) -> list[uuid.UUID]:
        return list(self._workers)

    async def start(self, launch: AttemptLaunch) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(launch.env)
        paths = [*self.task_path, os.getcwd()]
        env["PYTHONPATH"] = os.pathsep.join(
            [*paths, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        env = protocol.runner_env(
            coordinator_url=launch.coordinator_url, run_id=str(launch.run_id),
            attempt=launch.attempt, task=launch.task, trace_id=launch.trace_id,
            token=launch.credential, task_path=os.pathsep.join(paths), base=env,
        )
        output: int | None = asyncio.subprocess.DEVNULL
        log_file = None
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{launch.run_id}-{launch.attempt}.log"
            # Opening a local file is quick; the child inherits the descriptor.
            log_file = open(log_path, "ab")  # noqa: SIM115, ASYNC230
            output = log_file.fileno()
        if self._sink is not None:
            output = asyncio.subprocess.PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "waypost.runner.main",
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True,  # its own process group, so we can kill the tree
                limit=OUTPUT_LINE_LIMIT,
            )
        finally:
            if log_file is not None:
                log_file.close()
        worker = _Worker(launch, process)
        if self._sink is not None:
            loop = asyncio.get_running_loop()
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
                if stream is not None:
                    worker.readers.append(loop.create_task(
                        _capture(stream, name, launch, self._sink, log_path)))
        self._workers[launch.run_id] = worker
        watcher = asyncio.get_running_loop().create_task(self._watch(worker))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: _Worker) -> None:
        launch, process = worker.launch, worker.process
        waiter = asyncio.ensure_future(process.wait())
        try:
            ps = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            ps = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + launch.timeout_seconds
        try:
            while not waiter.done():
                rss = _tree_rss(ps) if ps is not None else 0
                worker.peak_rss = max(worker.peak_rss, rss)
                if rss > launch.memory_bytes and worker.verdict is None:
                    worker.verdict = (FailureType.OOM, (
                        f"OOMKilled: memory use {rss // MiB} MiB exceeded the limit of "
                        f"{launch.memory_bytes // MiB} MiB"))
                    _kill_group(process.pid, signal.SIGKILL)
                elif loop.time() >= deadline and worker.verdict is None:
                    worker.verdict = (FailureType.TIMEOUT, (
                        f"the attempt ran longer than its timeout of "
                        f"{launch.timeout_seconds:g} s and was killed"))
                    _kill_group(process.pid, signal.SIGKILL)
                await asyncio.wait({waiter}, timeout=self.memory_poll_seconds)
            code = waiter.result()
            if worker.readers:
                # What the process printed last is stored before its end is reported.
                await asyncio.wait(worker.readers, timeout=5)
        finally:
            self._workers.pop(launch.run_id, None)
        if worker.verdict is not None:
            failure: FailureType | None = worker.verdict[0]
            message = worker.verdict[1]
        elif code == 0:
            failure, message = None, "exited 0"
        elif code < 0:
            failure = FailureType.EXIT
            message = f"the runner was killed by signal {signal.Signals(-code).name}"
        else:
            failure, message = FailureType.EXIT, f"the runner exited with code {code}"
        log.info("attempt process ended", extra={
            "run_id": str(launch.run_id), "attempt": launch.attempt, "exit_code": code,
            "peak_rss_mib": worker.peak_rss // MiB})
        if self._handler is not None:
            await self._handler(AttemptExit(launch.run_id, launch.claim_token, failure, message,
                                            exit_code=code))

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        worker = self._workers.get(run_id)
        if worker is None:
            return
        if worker.verdict is None:
            worker.verdict = (FailureType.CANCELLED, f"stopped: {reason}")
        if force:
            _kill_group(worker.process.pid, signal.SIGKILL)
            return
        _kill_group(worker.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(worker.process.wait()), 5)
        except TimeoutError:
            _kill_group(worker.process.pid, signal.SIGKILL)

    async def close(self) -> None:
        for run_id in list(self._workers):
            await self.stop(run_id, "backend shutting down")
        # Every watcher, including those whose process ended on its own just now:
        # their exit reports must finish before the engine's pool closes.
        for watcher in list(self._watchers):
            with contextlib.suppress(BaseException):
                await watcher


OUTPUT_LINE_LIMIT = 256 * 1024  # longer lines are cut into pieces of this size
OUTPUT_BATCH = 200


async def _capture(stream: asyncio.StreamReader, name: str, launch: AttemptLaunch,
                   sink: OutputSink, log_path: Path | None) -> None:
    """Read one of a runner's output streams to its end, in batches to ``sink``
    (and appended to ``log_path``, when given)."""
    pending: list[OutputLine] = []

    async def flush() -> None:
        if not pending:
            return
        batch = pending[:]
        pending.clear()
        if log_path is not None:
            with open(log_path, "a") as f:  # noqa: ASYNC230 - a local append
                f.writelines(f"{text}\n" for _, _, text in batch)
        try:
            await sink.write(launch.run_id, launch.attempt, batch)
        except Exception as exc:  # the attempt must not fail for its printing
            log.warning("could not store runner output",
                        extra={"run_id": str(launch.run_id), "error": str(exc)})

    while True:
        try:
            raw = await asyncio.wait_for(stream.readline(), 0.25)
        except TimeoutError:
            await flush()
            continue
        except ValueError:  # a line over the limit: take what is there
            raw = await stream.read(OUTPUT_LINE_LIMIT)
        if not raw:
            break
        text = raw.decode(errors="replace").rstrip("\r\n")
        if text:
            pending.append((datetime.now(UTC), name, text))
        if len(pending) >= OUTPUT_BATCH:
            await flush()
    await flush()


def _tree_rss(ps: psutil.Process) -> int:
    try:
        total: int = ps.memory_info().rss
        for child in ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    except psutil.Error:
        return 0


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
