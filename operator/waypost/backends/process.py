"""The ``process`` backend: attempts run in local ``waypost-runner`` subprocesses.

For `waypost dev` and fast tests. A watchdog samples the process tree's resident
memory and kills it past the attempt's limit, which is recorded as an OOM failure
just as a Pod's ``OOMKilled``; the attempt's timeout kills it as a timeout.

**Hot workers.** A Task whose ``warmPool.enabled`` is true (the default) gets
its subprocess started in warm mode: after the attempt it stays alive, idle,
and takes the next attempt of the same task and spec fingerprint (the
dispatcher's warm hand-off, :mod:`waypost.engine.warm`) until its idle TTL runs
out. At most ``warmPool.maxWarm`` warm processes per task and ``warm_max_total``
in all exist; beyond that an attempt gets a one-shot process, after making
room by evicting idle ones of other tasks (least recently used, boosted by
each task's recent run rate) when the global cap is what is full. The memory
watchdog and the timeout apply to each attempt a warm process runs, as to a
one-shot one; a warm process killed mid-attempt fails that attempt (OOM,
timeout, exit) and is not reused. ``warmPool.enabled: false`` keeps one
process per attempt.
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

from waypost.engine import warm as warm_runners
from waypost.engine.backend import AttemptExit, AttemptLaunch, ExitHandler, PrewarmTarget
from waypost.engine.output import OutputLine, OutputSink
from waypost.model.enums import FailureType
from waypost.sdk import protocol

log = logging.getLogger("waypost.backends.process")

MiB = 1024 * 1024


@dataclass
class _Worker:
    """One runner subprocess: one-shot, or warm (``runner_id`` set)."""

    process: asyncio.subprocess.Process
    launch: AttemptLaunch | None  # the attempt it runs now; None while a warm one idles
    runner_id: uuid.UUID | None = None
    task: tuple[str, str] = ("", "")
    fingerprint: str = ""
    verdict: tuple[FailureType, str] | None = None
    handed_over: bool = False
    peak_rss: int = 0
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    attempt_started: float = 0.0
    # The attempt it ran last (a warm runner's lines printed after its end go there).
    last_launch: AttemptLaunch | None = None
    last_used: float = 0.0
    retired: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ProcessBackend:
    """Runs attempts as subprocesses of this process, at most ``max_parallel`` at once."""

    max_parallel: int = 4
    task_path: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    memory_poll_seconds: float = 0.05
    extra_env: dict[str, str] = field(default_factory=dict)
    # Hot workers (``waypost dev`` turns them on); off, every task gets one
    # process per attempt whatever its warmPool says.
    warm: bool = False
    # Warm processes in all (idle or busy), across tasks.
    warm_max_total: int = 8
    name: str = "process"
    # Spawning a process and importing the task, on a busy machine.
    start_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        self._busy: dict[uuid.UUID, _Worker] = {}  # run id -> worker running it
        self._warm: dict[uuid.UUID, _Worker] = {}  # runner id -> warm worker
        self._watchers: set[asyncio.Task[None]] = set()
        self._handler: ExitHandler | None = None
        self._sink: OutputSink | None = None
        self._hub: warm_runners.WarmHub | None = None
        # Deciding the warm-pool caps and noting the new process are one step: a
        # start and pre-warming, each awaiting its registration and its spawn, both
        # found the last place free and the pool went past its cap.
        self._admission = asyncio.Lock()

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._handler = handler

    def capture_output(self, sink: OutputSink) -> None:
        """Send what runner processes print to ``sink`` as well (dev mode: it joins
        the run's log stream), instead of only to ``log_dir``."""
        self._sink = sink

    def attach_warm(self, hub: warm_runners.WarmHub) -> None:
        self._hub = hub
        hub.add_listener(self._on_warm_event)

    def free_slots(self) -> int:
        return self.max_parallel - len(self._busy)

    def running(self) -> list[uuid.UUID]:
        return list(self._busy)

    def idle_runners(self, fingerprint: str) -> list[uuid.UUID]:
        return [rid for rid, w in self._warm.items()
                if w.launch is None and not w.retired and w.fingerprint == fingerprint]

    def warm_members(self) -> list[warm_runners.PoolMember]:
        """Every live warm process, retired ones too until they have exited."""
        return [warm_runners.PoolMember(rid, w.task, w.launch is None, w.last_used, w.retired)
                for rid, w in self._warm.items()]

    def warm_workers(self) -> dict[uuid.UUID, int]:
        """Runner id -> pid of every live warm process (idle or busy)."""
        return {rid: w.process.pid for rid, w in self._warm.items()}

    # -- starting --

    def _paths(self, env: dict[str, str]) -> list[str]:
        """Where task modules are found; also put on ``env``'s PYTHONPATH."""
        paths = [*self.task_path, os.getcwd()]
        env["PYTHONPATH"] = os.pathsep.join(
            [*paths, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        return paths

    def _env(self, launch: AttemptLaunch, runner_token: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(launch.env)
        paths = self._paths(env)
        # The runner's own variables (and a warm runner's credential) always win;
        # none is inherited from the engine's environment.
        return protocol.runner_env(
            coordinator_url=launch.coordinator_url, run_id=str(launch.run_id),
            attempt=launch.attempt, task=launch.task, trace_id=launch.trace_id,
            token=launch.credential, task_path=os.pathsep.join(paths), base=env,
            runner_token=runner_token,
        )

    async def _warm_room(self, launch: AttemptLaunch) -> bool:
        """Whether this attempt's process may be warm (see :func:`warm_runners.admit`)."""
        if not (self.warm and launch.warm_pool and self._hub is not None
                and launch.spec is not None):
            return False
        ok, evicted = await warm_runners.admit(
            self._hub, self.warm_members(), (launch.namespace, launch.task),
            launch.spec.warm_pool.max_warm, self.warm_max_total)
        for victim in evicted:
            self._warm[victim].retired = True
        return ok

    async def start(self, launch: AttemptLaunch) -> None:
        runner_id: uuid.UUID | None = None
        credential: str | None = None
        async with self._admission:
            if await self._warm_room(launch):
                assert self._hub is not None and launch.spec is not None
                runner_id, credential = await self._hub.enroll(
                    namespace=launch.namespace, task=launch.task,
                    fingerprint=launch.fingerprint, run_id=launch.run_id,
                    claim_token=launch.claim_token,
                    idle_ttl_seconds=float(launch.spec.warm_pool.idle_ttl_seconds),
                )
            name = f"warm-{runner_id}" if runner_id else f"{launch.run_id}-{launch.attempt}"
            worker = await self._spawn(self._env(launch, credential), name, runner_id,
                                       (launch.namespace, launch.task), launch.fingerprint,
                                       launch)
        self._busy[launch.run_id] = worker

    async def prewarm(self, target: PrewarmTarget) -> bool:
        """Start a warm process for ``target``'s task before any attempt needs it."""
        key = (target.namespace, target.task)
        async with self._admission:
            return await self._prewarm(target, key)

    async def _prewarm(self, target: PrewarmTarget, key: tuple[str, str]) -> bool:
        if not (self.warm and self._hub is not None and target.spec.warm_pool.enabled
                and warm_runners.has_room(self.warm_members(), key,
                                          target.spec.warm_pool.max_warm,
                                          self.warm_max_total)):
            return False
        runner_id, credential = await self._hub.enroll_idle(
            namespace=target.namespace, task=target.task, fingerprint=target.fingerprint,
            idle_ttl_seconds=float(target.spec.warm_pool.idle_ttl_seconds))
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(target.spec.env)
        paths = self._paths(env)
        env = protocol.prewarm_env(
            coordinator_url=target.coordinator_url, task=target.task,
            entrypoint=target.spec.entrypoint, task_path=os.pathsep.join(paths), base=env,
            runner_token=credential)
        worker = await self._spawn(env, f"warm-{runner_id}", runner_id, key,
                                   target.fingerprint, None)
        worker.last_used = asyncio.get_running_loop().time()
        log.info("pre-warmed a process", extra={"runner_id": str(runner_id),
                                                "task": target.task})
        return True

    def warm_limit(self) -> int:
        return self.warm_max_total if self.warm else 0

    async def _spawn(self, env: dict[str, str], name: str, runner_id: uuid.UUID | None,
                     task: tuple[str, str], fingerprint: str,
                     launch: AttemptLaunch | None) -> _Worker:
        """Start a runner process and its watcher (and output readers)."""
        output: int | None = asyncio.subprocess.DEVNULL
        log_file = None
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            # Opening a local file is quick; the child inherits the descriptor.
            log_file = open(log_path, "ab")  # noqa: SIM115, ASYNC230
            output = log_file.fileno()
        if self._sink is not None:
            output = asyncio.subprocess.PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "waypost.runner.entry",
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True,  # its own process group, so we can kill the tree
                limit=OUTPUT_LINE_LIMIT,
            )
        except BaseException:
            if runner_id is not None and self._hub is not None:
                with contextlib.suppress(Exception):
                    await self._hub.retire([runner_id], warm_runners.RetireReason.EXITED,
                                           busy_too=True)
            raise
        finally:
            if log_file is not None:
                log_file.close()
        loop = asyncio.get_running_loop()
        worker = _Worker(process, launch, runner_id, task, fingerprint,
                         attempt_started=loop.time(), last_launch=launch)
        if self._sink is not None:
            for stream_name, stream in (("stdout", process.stdout), ("stderr", process.stderr)):
                if stream is not None:
                    worker.readers.append(loop.create_task(
                        _capture(stream, stream_name, worker, self._sink, log_path)))
        if runner_id is not None:
            self._warm[runner_id] = worker
        watcher = loop.create_task(self._watch(worker))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return worker

    async def start_warm(self, launch: AttemptLaunch, runner_id: uuid.UUID) -> None:
        """The dispatcher handed this attempt to our idle warm process ``runner_id``."""
        worker = self._warm.get(runner_id)
        if worker is None or worker.retired:
            # Bound in the store to a runner this backend no longer has (it just
            # exited): the attempt fails as lost and its retry goes elsewhere.
            raise RuntimeError(f"warm runner {runner_id} is gone")
        worker.launch = worker.last_launch = launch
        worker.verdict = None
        worker.attempt_started = asyncio.get_running_loop().time()
        self._busy[launch.run_id] = worker
        worker.wake.set()

    def _on_warm_event(self, event: warm_runners.WarmEvent) -> None:
        worker = self._warm.get(event.runner_id)
        if worker is None:
            return
        if event.kind == "idle" and worker.launch is not None:
            # Its attempt ended (reported to the coordinator): the slot is free,
            # and the watchdog no longer holds it to that attempt's limits.
            self._busy.pop(worker.launch.run_id, None)
            worker.launch = None
            worker.last_used = asyncio.get_running_loop().time()
        elif event.kind == "retired":
            worker.retired = True

    # -- watching --

    async def _watch(self, worker: _Worker) -> None:
        process = worker.process
        waiter = asyncio.ensure_future(process.wait())
        try:
            tree = _TreeRss(psutil.Process(process.pid))
        except psutil.NoSuchProcess:
            tree = _TreeRss(None)
        loop = asyncio.get_running_loop()
        try:
            while not waiter.done():
                launch = worker.launch
                if launch is not None and worker.verdict is None:
                    rss = tree.sample(loop.time())
                    worker.peak_rss = max(worker.peak_rss, rss)
                    if rss > launch.memory_bytes:
                        worker.verdict = (FailureType.OOM, (
                            f"OOMKilled: memory use {rss // MiB} MiB exceeded the limit of "
                            f"{launch.memory_bytes // MiB} MiB"))
                        _kill_group(process.pid, signal.SIGKILL)
                    elif loop.time() >= worker.attempt_started + launch.timeout_seconds:
                        worker.verdict = (FailureType.TIMEOUT, (
                            f"the attempt ran longer than its timeout of "
                            f"{launch.timeout_seconds:g} s and was killed"))
                        _kill_group(process.pid, signal.SIGKILL)
                    await asyncio.wait({waiter}, timeout=self.memory_poll_seconds)
                else:
                    # Idle (or already condemned): nothing to measure until an
                    # assignment arrives or the process ends.
                    worker.wake.clear()
                    waker = asyncio.ensure_future(worker.wake.wait())
                    await asyncio.wait({waiter, waker}, return_when=asyncio.FIRST_COMPLETED)
                    waker.cancel()
            code = waiter.result()
            if worker.readers:
                # What the process printed last is stored before its end is reported.
                await asyncio.wait(worker.readers, timeout=5)
        finally:
            launch = worker.launch
            if launch is not None:
                self._busy.pop(launch.run_id, None)
            if worker.runner_id is not None:
                self._warm.pop(worker.runner_id, None)
        if worker.runner_id is not None and self._hub is not None:
            # Its registration goes with it, whatever it was doing.
            with contextlib.suppress(Exception):
                await self._hub.retire([worker.runner_id], warm_runners.RetireReason.EXITED,
                                       busy_too=True)
        if launch is None:
            log.info("warm process ended", extra={
                "runner_id": str(worker.runner_id), "exit_code": code})
            return
        if worker.verdict is not None:
            failure: FailureType | None = worker.verdict[0]
            message = worker.verdict[1]
        elif code == 0 and worker.runner_id is None:
            failure, message = None, "exited 0"
        elif code == 0:
            failure, message = None, "the warm runner exited 0 during its attempt"
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
                                            exit_code=code, handed_over=worker.handed_over))

    async def stop(self, run_id: uuid.UUID, reason: str, *, force: bool = False) -> None:
        worker = self._busy.get(run_id)
        if worker is None:
            return
        if worker.verdict is None:
            worker.verdict = (FailureType.CANCELLED, f"stopped: {reason}")
        if force:
            _kill_group(worker.process.pid, signal.SIGKILL)
            return
        await self._terminate(worker)

    async def _terminate(self, worker: _Worker) -> None:
        _kill_group(worker.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(worker.process.wait()), 5)
        except TimeoutError:
            _kill_group(worker.process.pid, signal.SIGKILL)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the attempts in flight to end on their own
        (the engine claims nothing more by then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A one-shot worker leaves _busy when its process has ended (its watcher ends
        # after the exit was reported); a warm one when its attempt ended (it idles on).
        while self._busy and self._watchers and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._watchers), timeout=min(left, 0.1),
                               return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        """Stop what still runs and hand its runs over: each is requeued at once and
        resumes from its last checkpoint, without spending an attempt (the engine's
        shutdown is not the task's failure)."""
        for run_id in list(self._busy):
            worker = self._busy.get(run_id)
            if worker is not None and worker.verdict is None:
                worker.handed_over = True
                worker.verdict = (FailureType.LOST, (
                    "the engine shut down before the attempt finished; the run resumes "
                    "from its last checkpoint"))
            await self.stop(run_id, "backend shutting down")
        idle = [w for w in self._warm.values() if w.launch is None]
        if idle and self._hub is not None:
            with contextlib.suppress(Exception):
                await self._hub.retire([w.runner_id for w in idle if w.runner_id],
                                       warm_runners.RetireReason.SHUTDOWN)
        for worker in idle:
            await self._terminate(worker)
        # Every watcher, including those whose process ended on its own just now:
        # their exit reports must finish before the engine's pool closes.
        for watcher in list(self._watchers):
            with contextlib.suppress(BaseException):
                await watcher


OUTPUT_LINE_LIMIT = 256 * 1024  # longer lines are cut into pieces of this size
OUTPUT_BATCH = 200


async def _capture(stream: asyncio.StreamReader, name: str, worker: _Worker,
                   sink: OutputSink, log_path: Path | None) -> None:
    """Read one of a runner's output streams to its end, in batches to ``sink``
    (and appended to ``log_path``, when given). Each line belongs to the attempt
    the runner ran when it was read: for a warm runner, the one it runs now or,
    while idle, the one it ran last (its closing lines come after it ended)."""
    pending: list[tuple[AttemptLaunch | None, OutputLine]] = []

    async def flush() -> None:
        if not pending:
            return
        batch = pending[:]
        pending.clear()
        if log_path is not None:
            with open(log_path, "a") as f:  # noqa: ASYNC230 - a local append
                f.writelines(f"{text}\n" for _, (_, _, text) in batch)
        by_attempt: dict[tuple[uuid.UUID, int], list[OutputLine]] = {}
        for launch, line in batch:
            if launch is not None:
                by_attempt.setdefault((launch.run_id, launch.attempt), []).append(line)
        if not by_attempt:
            return
        try:
            await sink.write([(run_id, attempt, lines)
                              for (run_id, attempt), lines in by_attempt.items()])
        except Exception as exc:  # the attempt must not fail for its printing
            log.warning("could not store runner output",
                        extra={"run_ids": [str(r) for r, _ in by_attempt], "error": str(exc)})

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
            pending.append((worker.launch or worker.last_launch,
                            (datetime.now(UTC), name, text)))
        if len(pending) >= OUTPUT_BATCH:
            await flush()
    await flush()


# How often the watchdog looks for new child processes of a runner. Listing
# them scans every process on the machine (/proc); sampling the memory of the
# ones already known is one small read each. Scanning at every 50 ms sample
# cost more CPU than the runs themselves once several runners were busy.
CHILDREN_REFRESH_SECONDS = 1.0


class _TreeRss:
    """Resident memory of a runner and its descendants, sampled cheaply."""

    def __init__(self, ps: psutil.Process | None) -> None:
        self.ps = ps
        self.children: list[psutil.Process] = []
        self.refreshed = float("-inf")

    def sample(self, now: float) -> int:
        if self.ps is None:
            return 0
        try:
            if now - self.refreshed >= CHILDREN_REFRESH_SECONDS:
                self.children = _descendants(self.ps)
                self.refreshed = now
            total: int = self.ps.memory_info().rss
        except psutil.Error:
            return 0
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    """The process's descendants, from Linux's per-thread ``children`` lists.

    ``psutil.Process.children`` reads the parent of every process on the machine
    (all of /proc): on a shared machine with hundreds of processes that took
    over 100 ms per call and, in the event loop, held up every other request.
    Reading the tree downwards from the runner costs a few small reads.
    """
    found: list[psutil.Process] = []
    pending = [root.pid]
    seen = {root.pid}
    while pending:
        pid = pending.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                    kids = [int(k) for k in handle.read().split()]
            except FileNotFoundError:
                if pid == root.pid and tid == str(pid):
                    # A kernel without CONFIG_PROC_CHILDREN: the slow way.
                    return root.children(recursive=True)
                continue
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid not in seen:
                    seen.add(kid)
                    pending.append(kid)
                    with contextlib.suppress(psutil.Error):
                        found.append(psutil.Process(kid))
    return found


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
