"""`waypost dev`: the whole of waypost on one machine, running your tasks.

Starts Postgres (embedded unless WAYPOST_DATABASE_URL is set), the engine, the
coordinator and dashboard, the scheduler and the process backend; loads the
tasks of the modules named on the command line (``myapp.tasks``,
``./tasks.py``) or in ``[tool.waypost] tasks = [...]`` of the nearest
``pyproject.toml``, and registers them with their schedules.

Tasks are discovered in a fresh interpreter, so a reload sees the code as it
is on disk (no stale module caches in this process). Attempts run in runner
subprocesses (hot workers keep one per task between runs); a reload retires
the hot workers of the reloaded tasks, so the next attempt after a save runs
the new code.
Each run's status changes and log lines are printed as they arrive: the
process backend writes each attempt's output to a file under the state
folder, which is followed here.

``--examples`` runs the bundled examples instead and checks that each ended as
expected (what ``make dev`` shows a newcomer).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from waypost.backends.process import ProcessBackend
from waypost.engine import control, scheduler
from waypost.model import from_sdk
from waypost.model.enums import RunStatus
from waypost.model.run import Run, TriggerRequest
from waypost.model.settings import Settings
from waypost.model.task import TaskDefinition
from waypost.sdk.decorator import registered_tasks
from waypost.standalone import Standalone
from waypost.store.embedded import EmbeddedPostgres

EXAMPLE_MODULES = ("examples.hello", "examples.orders", "examples.flaky")
NAMESPACE = "default"
DEFAULT_PORT = 8080


class DevUsageError(Exception):
    """What to run is not given or cannot be found (the CLI's exit code 2)."""


class DiscoveryError(Exception):
    """Importing the task modules failed; ``details`` is the traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


# --- which modules ----------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A module to import: ``module`` importable with ``root`` on ``sys.path``."""

    module: str
    root: Path


def _module_of_file(path: Path) -> Target:
    """The dotted name of a file, counting the packages (``__init__.py``) above it."""
    parts = [path.stem] if path.name != "__init__.py" else []
    folder = path.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return Target(".".join(parts), folder)


def resolve_targets(given: Sequence[str], cwd: Path) -> list[Target]:
    """Targets from ``./tasks.py``-style paths and ``myapp.tasks``-style module names."""
    found: list[Target] = []
    for item in given:
        candidate = (cwd / item).resolve()
        looks_like_path = item.endswith(".py") or os.sep in item or item.startswith(".")
        if candidate.is_file() and candidate.suffix == ".py":
            found.append(_module_of_file(candidate))
        elif candidate.is_dir() and (candidate / "__init__.py").exists():
            found.append(_module_of_file(candidate / "__init__.py"))
        elif looks_like_path:
            raise DevUsageError(f"{item}: no such Python file")
        elif all(part.isidentifier() for part in item.split(".")):
            found.append(Target(item, cwd))
        else:
            raise DevUsageError(f"{item!r} is neither a Python file nor a module name")
    return found


def pyproject_targets(cwd: Path) -> tuple[Path, list[str]] | None:
    """``[tool.waypost] tasks`` of the nearest pyproject.toml at or above ``cwd``."""
    for folder in (cwd, *cwd.parents):
        path = folder / "pyproject.toml"
        if not path.is_file():
            continue
        try:
            config = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DevUsageError(f"{path}: {exc}") from None
        tasks = config.get("tool", {}).get("waypost", {}).get("tasks")
        if tasks is None:
            return None  # the project's own pyproject says nothing: stop here
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise DevUsageError(f"{path}: [tool.waypost] tasks must be a list of module names "
                                "or paths")
        return folder, tasks
    return None


def examples_root(cwd: Path) -> Path:
    """The folder holding the bundled ``examples`` package (a source checkout)."""
    checkout = Path(__file__).resolve().parents[2]
    for folder in (cwd, checkout):
        if (folder / "examples" / "hello.py").is_file():
            return folder
    raise DevUsageError("the bundled examples ship with the source repository: run "
                        "`waypost dev --examples` in a checkout of waypost, or name your own "
                        "task modules")


_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages"}


def python_files(targets: Sequence[Target], state_dir: Path) -> dict[str, int]:
    """Every ``.py`` file under the targets' folders with its modification time,
    leaving out hidden folders (``.venv``, ``.git``), caches and the state folder."""
    state = state_dir.resolve()
    found: dict[str, int] = {}
    for root in {t.root for t in targets}:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS
                       and here / d != state]
            for name in files:
                if name.endswith(".py"):
                    with contextlib.suppress(OSError):
                        found[str(here / name)] = (here / name).stat().st_mtime_ns
    return found


# --- loading tasks in a fresh interpreter -----------------------------------

@dataclass(frozen=True)
class Loaded:
    definitions: list[TaskDefinition]
    entrypoints: dict[str, str]
    #: The Task objects for the cluster (``from_sdk.task_manifest``), when asked for.
    manifests: list[dict[str, Any]] = field(default_factory=list)


def discover(targets: Sequence[Target], *, namespace: str = NAMESPACE,
             image: str | None = None, manifest_namespace: str | None = None,
             timeout: float = 60.0) -> Loaded:
    """Import the targets in a child interpreter and return their task definitions
    and Task objects, both from the one SDK -> Task conversion (``model.from_sdk``)."""
    request = json.dumps({"targets": [[t.module, str(t.root)] for t in targets],
                          "namespace": namespace, "image": image,
                          "manifest_namespace": manifest_namespace})
    proc = subprocess.run(
        [sys.executable, "-m", __name__, request], capture_output=True, text=True,
        timeout=timeout, check=False, cwd=os.getcwd(),
    )
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise DiscoveryError("importing the task modules failed",
                             (proc.stderr or proc.stdout)[-4000:]) from None
    if "error" in answer:
        raise DiscoveryError(answer["error"], answer.get("details", ""))
    definitions = [TaskDefinition.model_validate(d) for d in answer["tasks"]]
    return Loaded(definitions, {d.name: d.spec.entrypoint for d in definitions},
                  answer["manifests"])


def _discover_here(request: dict[str, Any]) -> dict[str, Any]:
    """The child's side of :func:`discover`."""
    for _, root in request["targets"]:
        if root not in sys.path:
            sys.path.insert(0, root)
    for module, _ in request["targets"]:
        try:
            importlib.import_module(module)
        except BaseException as exc:  # the user's code: report any failure
            return {"error": f"cannot import {module}: {type(exc).__name__}: {exc}",
                    "details": "".join(traceback.format_exception(exc))}
    found = registered_tasks()
    if not found:
        names = ", ".join(m for m, _ in request["targets"])
        return {"error": f"no @task functions in {names}"}
    image = request.get("image")
    return {
        "tasks": [from_sdk.task_definition(t.definition, namespace=request["namespace"],
                                           image=image).model_dump(mode="json", by_alias=True)
                  for t in found],
        "manifests": [from_sdk.task_manifest(t.definition, image=image,
                                             namespace=request.get("manifest_namespace"))
                      for t in found],
    }


# --- following runs and their logs ------------------------------------------

@dataclass
class Follower:
    """Prints each run's status changes and log lines as they arrive."""

    stack: Standalone
    log_dir: Path
    out: TextIO = field(default_factory=lambda: sys.stdout)
    statuses: bool = True

    def __post_init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}
        self._tasks: dict[str, str] = {}
        self._offsets: dict[Path, int] = {}
        self._pending: dict[Path, bytes] = {}
        self._warm_attempt: dict[Path, tuple[str, str]] = {}  # hot worker file -> (run, attempt)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for path in self.log_dir.glob("*.log"):  # earlier sessions' output is not news
            self._offsets[path] = path.stat().st_size

    def _say(self, run_id: str, text: str) -> None:
        task = self._tasks.get(run_id, "?")
        stamp = datetime.now().strftime("%H:%M:%S")
        self.out.write(f"{stamp}  {task:<16} {run_id[:8]}  {text}\n")
        self.out.flush()

    async def seed(self) -> None:
        runs, _ = await control.list_runs(self.stack.engine, limit=1000)
        for run in runs:
            self._tasks[run.id] = run.task
            self._seen[run.id] = (run.status.value, run.attempt)

    async def poll(self) -> int:
        """Show new runner output and status changes; the number of output bytes read."""
        # Log lines first: an attempt's lines were written before it reported its end.
        read = await self._follow_logs()
        runs, _ = await control.list_runs(self.stack.engine, limit=200)
        for run in reversed(runs):
            self._tasks[run.id] = run.task
            state = (run.status.value, run.attempt)
            if self._seen.get(run.id) == state:
                continue
            self._seen[run.id] = state
            if self.statuses:
                self._say(run.id, _describe(run))
        return read

    async def _task_of(self, run_id: str) -> None:
        """Learn the task of a run whose lines arrive before its first status poll."""
        if run_id in self._tasks:
            return
        with contextlib.suppress(Exception):  # not a run id: the line shows "?"
            run = await control.get(self.stack.engine, control.parse_run_id(run_id))
            self._tasks[run_id] = run.task

    async def _follow_logs(self) -> int:
        read = 0
        for path in sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                continue
            if not chunk:
                continue
            self._offsets[path] = offset + len(chunk)
            read += len(chunk)
            data = self._pending.pop(path, b"") + chunk
            *lines, rest = data.split(b"\n")
            if rest:
                self._pending[path] = rest
            warm = path.stem.startswith("warm-")
            run_id, _, attempt = path.stem.rpartition("-")
            if not warm:
                await self._task_of(run_id)
            for raw in lines:
                line = raw.decode(errors="replace")
                if warm:
                    # A hot worker's file holds many attempts, one after another: a
                    # line belongs to the attempt the runner last named.
                    named = _attempt_of(line)
                    if named is not None:
                        self._warm_attempt[path] = named
                    if path not in self._warm_attempt:
                        continue  # before its first attempt: the runner's own chatter
                    run_id, attempt = self._warm_attempt[path]
                    await self._task_of(run_id)
                text = _log_line(line)
                if text is not None:
                    self._say(run_id, f"#{attempt} | {text}")
        return read

    async def run(self, stop: asyncio.Event, interval: float = 0.3) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a dev display never ends the server
                await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def _settle(backend: ProcessBackend, follower: Follower, timeout: float = 10.0,
                  quiet: float = 2.0) -> None:
    """Wait for the runner processes to end, then print what is left of their output.

    A run is final once its runner reported the result, a moment before the process
    has written its last lines and exited: ``--once`` would end without them.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not backend.running():
            break
        await asyncio.sleep(0.1)
    # A hot worker stays alive after its attempt: its last lines reach the file
    # through the backend's output reader, a moment (on a loaded machine, seconds)
    # after the attempt's end was recorded. Poll until the output has been quiet.
    quiet_since = time.monotonic()
    while time.monotonic() < deadline + quiet:
        if await follower.poll():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            break
        await asyncio.sleep(0.1)


def _describe(run: Run) -> str:
    if run.status == RunStatus.RUNNING:
        return f"attempt {run.attempt} running"
    if run.status.is_final and run.started_at and run.finished_at:
        took = (run.finished_at - run.started_at).total_seconds()
        extra = f": {run.error.message}" if run.error and run.status != RunStatus.SUCCEEDED \
            else ""
        return f"{run.status.value} after {run.attempt} attempt(s) in {took:.1f}s{extra}"
    if run.status == RunStatus.RETRYING and run.error:
        return f"attempt {run.attempt} failed ({run.error.message}); retrying"
    return run.status.value


_LOG_KEYS = {"ts", "level", "message", "run_id", "attempt"}


def _attempt_of(raw: str) -> tuple[str, str] | None:
    """The (run id, attempt) a runner's JSON log line names, if any."""
    if not raw.startswith("{"):
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("run_id"), str) and "attempt" in doc:
        return doc["run_id"], str(doc["attempt"])
    return None


def _log_line(raw: str) -> str | None:
    """A runner output line for the terminal; ``None`` for the runner's own chatter."""
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return raw.rstrip()  # print() output and tracebacks, as they are
    if not isinstance(doc, dict) or "message" not in doc:
        return raw.rstrip()
    level = str(doc.get("level", "info"))
    if "logger" in doc:  # the runner's own log: only what went wrong
        if level not in ("warning", "error", "critical"):
            return None
        extra = doc.get("exception") or ""
        return f"{level:<7} {doc['message']}" + (f"\n{extra}" if extra else "")
    fields = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                      for k, v in doc.items() if k not in _LOG_KEYS)
    return f"{level:<7} {doc['message']}" + (f"  {fields}" if fields else "")


# --- the command ------------------------------------------------------------

def run_dev(*, targets: Sequence[str] = (), examples: bool = False, once: bool = False,
            port: int | None = None, state_dir: Path = Path(".waypost"), reload: bool = True,
            timeout: float = 120.0) -> int:
    """Start Postgres if needed, then the stack with the tasks; returns the exit code."""
    cwd = Path.cwd()
    if examples:
        if targets:
            raise DevUsageError("give either --examples or task modules, not both")
        root = examples_root(cwd)
        chosen = [Target(m, root) for m in EXAMPLE_MODULES]
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))  # the summary reads the examples' ledger
    elif targets:
        chosen = resolve_targets(targets, cwd)
    else:
        configured = pyproject_targets(cwd)
        if configured is None:
            raise DevUsageError(
                "which tasks? name them: `waypost dev ./tasks.py` or `waypost dev myapp.tasks`, "
                "or list them in pyproject.toml under [tool.waypost] tasks = [...]; "
                "`waypost dev --examples` runs the bundled examples")
        chosen = resolve_targets(configured[1], configured[0])
    loaded_files = python_files(chosen, state_dir) if reload and not once else None
    loaded = discover(chosen)  # before Postgres starts: a typo fails fast
    state_dir.mkdir(parents=True, exist_ok=True)
    ledger_path = state_dir / "ledger.jsonl"
    os.environ["WAYPOST_EXAMPLE_LEDGER"] = str(ledger_path)
    postgres: EmbeddedPostgres | None = None
    dsn = os.environ.get("WAYPOST_DATABASE_URL")
    if not dsn:
        print(f"Starting an embedded Postgres in {state_dir / 'postgres'} …", flush=True)
        postgres = EmbeddedPostgres(state_dir / "postgres", durable=False)
        postgres.start()
        dsn = postgres.dsn
    try:
        settings = dev_settings(dsn, port)
        dev = _Dev(settings, state_dir, chosen, loaded, examples=examples, once=once,
                   reload=reload, timeout=timeout, ledger_path=ledger_path,
                   loaded_files=loaded_files)
        return asyncio.run(dev.serve())
    finally:
        if postgres is not None:
            postgres.stop()


def dev_settings(dsn: str, port: int | None) -> Settings:
    """Dev mode's settings: every WAYPOST_* variable is honoured (README, "Settings");
    dev mode only changes two defaults, so that runs end quickly. ``port``, from the
    command line, wins over WAYPOST_COORDINATOR_PORT."""
    return Settings.from_env(
        defaults={"heartbeat_interval_seconds": 5.0, "poll_interval_seconds": 1.0,
                  "coordinator_port": DEFAULT_PORT, "database_url": dsn},
        coordinator_port=port,
    )


def client_hint(url: str) -> str:
    """How to call the CLI from another terminal, as this installation spells it."""
    on_path = shutil.which("waypost")
    here = Path(sys.executable).parent  # the virtualenv's bin, not the interpreter it links to
    if on_path and Path(on_path).parent.resolve() == here.resolve():
        command = "waypost"
    elif (here / "waypost").exists():
        command = str(here / "waypost")
    else:
        command = f"{sys.executable} -m waypost.cli"
    if url.rstrip("/") != f"http://127.0.0.1:{DEFAULT_PORT}":
        command += f" --url {url}"
    return command


@dataclass
class _Dev:
    settings: Settings
    state_dir: Path
    targets: list[Target]
    loaded: Loaded
    examples: bool
    once: bool
    reload: bool
    timeout: float
    ledger_path: Path
    #: The task folders' Python files (path -> mtime) when the tasks were loaded.
    loaded_files: dict[str, int] | None = None

    async def serve(self) -> int:
        roots = list(dict.fromkeys(str(t.root) for t in self.targets))
        # Hot workers: a run of a task that ran lately starts in an already warm process.
        backend = ProcessBackend(max_parallel=4, warm=True, log_dir=self.state_dir / "logs",
                                 task_path=roots)
        stack = Standalone(self.settings, backend)
        # A trigger before the tasks are stored would get 404 unknown_task.
        stack.readiness.hold("tasks", "the tasks are not registered yet")
        await stack.start()
        stop = asyncio.Event()
        follower = Follower(stack, self.state_dir / "logs", statuses=not self.examples)
        following: asyncio.Task[None] | None = None
        try:
            await follower.seed()
            await self._register(stack, self.loaded)
            stack.readiness.release("tasks")
            print(f"waypost is up: dashboard and API at {stack.url}/ "
                  f"(OpenAPI: {stack.url}/openapi.json)", flush=True)
            following = asyncio.get_running_loop().create_task(follower.run(stop))
            if self.examples:
                code = await _run_examples(stack, self.ledger_path, timeout=self.timeout)
            elif self.once:
                code = await self._fire_schedules_once(
                    stack, settle=lambda: _settle(backend, follower))
            else:
                code = 0
            if self.once:
                await _settle(backend, follower)
                return code
            example = next(iter(self.loaded.entrypoints), "TASK")
            print(f"\n{'Still serving' if self.examples else 'Serving'} at {stack.url}/ — "
                  "in another terminal: "
                  f"{client_hint(stack.url)} trigger {example} '{{}}' --wait"
                  + ("; edit your tasks and they reload" if self.reload else "")
                  + "   (Ctrl-C to stop)", flush=True)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            if self.reload:
                await self._reload_on_change(stack, stop)
            else:
                await stop.wait()
            return 0
        finally:
            stop.set()
            if following is not None:
                with contextlib.suppress(Exception):
                    await following
            await stack.stop()

    async def _register(self, stack: Standalone, loaded: Loaded) -> None:
        for definition in loaded.definitions:
            invalid = await control.register_task(stack.engine, definition)
            for bad in invalid:
                print(f"  schedule {bad.schedule!r} of {definition.name} is parked: {bad.problem}",
                      flush=True)
        names = ", ".join(f"{d.name} ({d.spec.entrypoint})" for d in loaded.definitions)
        print(f"Tasks: {names}", flush=True)

    async def _reload_on_change(self, stack: Standalone, stop: asyncio.Event) -> None:
        import watchfiles  # the dev extra

        folders = sorted({str(t.root) for t in self.targets})
        state = str(self.state_dir.resolve())
        python = watchfiles.PythonFilter(ignore_paths=[state])
        # A save between the first discovery and the watcher's start sends no event:
        # the first quiet interval (the watcher is running by then) compares the
        # files with how they were when the tasks were loaded.
        before: dict[str, int] | None = self.loaded_files
        async for changes in watchfiles.awatch(*folders, watch_filter=python, stop_event=stop,
                                               debounce=300, yield_on_timeout=True,
                                               rust_timeout=1000):
            changed = sorted({Path(p).name for _, p in changes})
            if not changes:
                if before is None:
                    continue
                now = python_files(self.targets, self.state_dir)
                changed = sorted({Path(p).name for p in set(before) | set(now)
                                  if before.get(p) != now.get(p)})
                before = None
                if not changed:
                    continue
            print(f"\nChanged: {', '.join(changed)} — reloading tasks", flush=True)
            try:
                loaded = await asyncio.to_thread(discover, self.targets)
            except DiscoveryError as exc:
                print(f"Reload failed, the previous tasks stay: {exc}\n{exc.details}",
                      flush=True)
                continue
            await self._register(stack, loaded)
            # Hot workers imported the old code; they must not take new attempts.
            for definition in loaded.definitions:
                await stack.engine.warm.code_changed(definition.namespace, definition.name)
            print("Reloaded: new attempts run the new code.", flush=True)

    async def _fire_schedules_once(self, stack: Standalone,
                                   settle: Callable[[], Awaitable[None]]) -> int:
        fired: list[tuple[str, str, uuid.UUID]] = []
        for definition in self.loaded.definitions:
            for item in definition.spec.schedules:
                run_id, _ = await scheduler.trigger_now(stack.engine, definition.namespace,
                                                        definition.name, item.name)
                fired.append((definition.name, item.name, run_id))
                print(f"  fired schedule {item.name} of {definition.name}: run {run_id}",
                      flush=True)
        if not fired:
            print("No schedules to fire: --once runs each schedule of your tasks once. "
                  "Without --once, trigger runs with `waypost trigger`.", flush=True)
            return 0
        deadline = time.monotonic() + self.timeout
        final: dict[uuid.UUID, Run] = {}
        while len(final) < len(fired) and time.monotonic() < deadline:
            for _, _, run_id in fired:
                if run_id not in final:
                    run = await control.get(stack.engine, run_id)
                    if run.status.is_final:
                        final[run_id] = run
            await asyncio.sleep(0.2)
        await settle()
        print("\nSchedule              task              run       status", flush=True)
        ok = True
        for task, name, run_id in fired:
            done = final.get(run_id)
            status = done.status.value if done else "not finished"
            ok &= done is not None and done.status == RunStatus.SUCCEEDED
            print(f"{name:<21} {task:<17} {str(run_id)[:8]}  {status}", flush=True)
        print("\nAll runs succeeded." if ok else "\nSome runs did NOT succeed.", flush=True)
        return 0 if ok else 1


# --- the bundled examples ---------------------------------------------------

@dataclass(frozen=True)
class Example:
    title: str
    task: str
    payload: Any
    expect: RunStatus
    expect_attempts: int


EXAMPLES = (
    Example("a plain success", "hello", {"name": "waypost"}, RunStatus.SUCCEEDED, 1),
    Example("a retry that resumes after its checkpoint", "process-order",
            {"orderId": "ord-1001", "failPaymentOnAttempts": [1]}, RunStatus.SUCCEEDED, 2),
    Example("retries exhausted: dead-lettered", "always-fails", {"reason": "demo"},
            RunStatus.DEAD_LETTERED, 3),
)


def _fetch_count(ledger_path: Path, run_id: str) -> int:
    from examples import ledger  # imported from the repository, like the tasks

    return Counter(e["effect"] for e in ledger.read(str(ledger_path))
                   if e["run"] == run_id)["fetch_order"]


async def _run_examples(stack: Standalone, ledger_path: Path, *, timeout: float) -> int:
    triggered: list[tuple[Example, Run]] = []
    for example in EXAMPLES:
        run, _ = await control.trigger(stack.engine, NAMESPACE, example.task,
                                       TriggerRequest(payload=example.payload), source="dev")
        triggered.append((example, run))
        print(f"  triggered {example.task:<14} run {run.id}  ({example.title})")
    final: dict[str, Run] = {}
    seen: dict[str, tuple[str, int]] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while len(final) < len(triggered) and asyncio.get_running_loop().time() < deadline:
        for example, run in triggered:
            if run.id in final:
                continue
            current = await control.get(stack.engine, control.parse_run_id(run.id))
            state = (current.status.value, current.attempt)
            if seen.get(run.id) != state:
                seen[run.id] = state
                print(f"  {example.task:<14} attempt {current.attempt}: {current.status.value}",
                      flush=True)
            if current.status.is_final:
                final[run.id] = current
        await asyncio.sleep(0.2)
    return 0 if _print_summary(triggered, final, ledger_path) else 1


def _print_summary(triggered: list[tuple[Example, Run]], final: dict[str, Run],
                   ledger_path: Path) -> bool:
    print("\nExample                                      task            expected       "
          "got            attempts")
    all_ok = True
    for example, run in triggered:
        done = final.get(run.id)
        got = done.status.value if done else "not finished"
        attempts = done.attempt if done else 0
        ok = done is not None and done.status == example.expect and (
            attempts == example.expect_attempts)
        note = ""
        if ok and example.task == "process-order":
            fetches = _fetch_count(ledger_path, run.id)
            ok = fetches == 1
            note = f"  (order fetched {fetches}x: resumed after checkpoint 'order-fetched')"
        if done is not None and done.status == RunStatus.DEAD_LETTERED and done.error:
            note = f"  (last error: {done.error.message})"
        all_ok &= ok
        mark = "ok " if ok else "BAD"
        print(f"{mark} {example.title:<40} {example.task:<15} {example.expect.value:<14} "
              f"{got:<14} {attempts}{note}")
    print("\nAll examples ended as expected." if all_ok else "\nSome examples did NOT end as "
          "expected.")
    return all_ok


if __name__ == "__main__":  # the child of discover()
    print(json.dumps(_discover_here(json.loads(sys.argv[1]))))
