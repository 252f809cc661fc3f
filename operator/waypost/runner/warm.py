"""Warm mode: after its attempt the runner stays, idle, and takes the next one.

A runner started with ``WAYPOST_RUNNER_TOKEN`` (its own credential, beside the
first attempt's ``WAYPOST_ATTEMPT_TOKEN``) runs that first attempt as a cold
runner does, then long-polls ``POST /v1/runner/warm/poll``, reporting the
attempt it finished and its resident memory. An answer is one of: an
assignment (the next attempt's document and *that attempt's own* credential),
nothing yet (poll again), or retirement (idle TTL, eviction, a changed spec,
memory growth: exit 0). A 409 means its last attempt was lost (it stalled past
its lease): it exits and takes nothing more. The task's module is imported once
per process, which is what makes a warm start fast. A runner pre-warmed ahead of
demand (:func:`run_prewarmed`) imports the task first and polls without a first
attempt.

What does not carry from one run to the next (:class:`RunScope`): the
environment (restored to the runner's own, without any credential or run id),
the temporary directory (``TMPDIR`` and :mod:`tempfile` point at an empty
directory of the runner's, emptied after each run: removed and made anew when a
run left anything in it; with ``WAYPOST_WARM_SCRUB_TMP=1``, in a
Pod whose ``/tmp`` is private, whatever the run left in the original temporary
directory is removed too), the credential (each attempt has its own client),
the checkpoints, context and task logger (built per attempt from its document).

What can still carry over is the task's own module state: module-level
variables and caches of the task's modules and of the libraries it imports,
threads or background tasks it started and left running, monkeypatches,
``sys.path`` and ``sys.modules`` changes, files written outside the
temporary directory (the working directory of a local process; a Pod's
``/app`` is read-only), and the process's memory. Tasks that must not share
any of this set ``warmPool.enabled: false``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from waypost.runner import api, attempt, loader
from waypost.runner.http import StreamHTTP
from waypost.sdk import protocol, transport
from waypost.sdk.errors import AttemptSuperseded, CoordinatorUnavailable, WaypostAPIError
from waypost.sdk.retry import Retry
from waypost.sdk.transport import request_json

_log = logging.getLogger("waypost.runner")

# Variables that name one attempt or hold a credential: never visible to task code.
PRIVATE_ENV = protocol.PRIVATE_ENV_NAMES
# How long one poll is held open by the coordinator (it answers "nothing yet" then).
POLL_WAIT_SECONDS = 15.0


def rss_bytes() -> int:
    """This process's resident memory (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class RunScope:
    """Gives each run a clean environment and an empty temporary directory of its
    own, and removes what the run left there afterwards.

    The directory is kept from one run to the next while runs leave it empty (no
    directory made and removed per run, two file-system writes fewer per warm
    run); one that a run wrote to, removed or made unreadable is removed whole and
    a fresh one made for the next run."""

    def __init__(self, scrub_tmp: bool = False) -> None:
        self.base_env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        self.base_tmp = tempfile.gettempdir()
        self.scrub_tmp = scrub_tmp
        self._tmp_before: set[str] = set()
        self._dir: str | None = None
        self.reset()

    def reset(self) -> None:
        """Restore the runner's own environment (no credential, no run id).

        Only what differs is undone: clearing and refilling ``os.environ`` costs a
        ``putenv`` per variable, several times what a run of a no-op task costs."""
        env = os.environ
        for name in [name for name in env if name not in self.base_env]:
            del env[name]
        for name, value in self.base_env.items():
            if env.get(name) != value:
                env[name] = value
        tempfile.tempdir = None  # re-read TMPDIR on next use

    @contextlib.contextmanager
    def run(self) -> Any:
        # The environment is the runner's own here: the scope's creation and the
        # end of every run (cleanup) restore it.
        if self.scrub_tmp:
            self._tmp_before = set(os.listdir(self.base_tmp))
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="waypost-run-", dir=self.base_tmp)
        os.environ["TMPDIR"] = self._dir
        tempfile.tempdir = None
        try:
            yield self._dir
        finally:
            self.after_run()

    def after_run(self) -> None:
        """Remove what the run left and restore the environment; the directory stays
        for the next run only if the run left it as it found it (empty)."""
        if self._dir is not None and not _empty_dir(self._dir):
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._scrub()
        self.reset()

    def cleanup(self) -> None:
        """The runner is done: remove its directory too."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._scrub()
        self.reset()

    def _scrub(self) -> None:
        if self.scrub_tmp:
            with contextlib.suppress(OSError):
                for name in set(os.listdir(self.base_tmp)) - self._tmp_before:
                    path = os.path.join(self.base_tmp, name)
                    if path == self._dir:
                        continue
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(path)


def _empty_dir(path: str) -> bool:
    """Whether ``path`` is still the directory ``mkdtemp`` made (not a link, mode
    0700), and empty."""
    try:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o700:
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


@dataclass
class WarmConfig:
    """What warm mode adds to the cold runner's configuration."""

    runner_token: str
    scrub_tmp: bool = False


class DeferredClient(api.RunnerClient):
    """An attempt's client whose success report waits for the runner's next poll.

    ``complete`` keeps the result and answers at once; the poll that follows
    carries it (``WarmFinished.succeeded``) with this attempt's credential, so a
    warm run costs one request fewer. Everything else goes out as it happens.
    """

    def __init__(self, base_url: str, credential: str, **kwargs: Any) -> None:
        super().__init__(base_url, credential, **kwargs)
        self.credential = credential
        # (result, usage) once the task succeeded
        self.result: tuple[Any, protocol.Usage | None] | None = None

    async def complete(self, result: Any, usage: protocol.Usage | None = None) -> str | None:
        self.result = (result, usage)
        return "succeeded"


class WarmRunner:
    """The poll-run loop of one warm runner process."""

    def __init__(self, coordinator_url: str, config: WarmConfig, http: StreamHTTP,
                 retry: Retry | None = None) -> None:
        self.url = coordinator_url.rstrip("/")
        self.config = config
        self.http = http
        self.retry = retry if retry is not None else transport.PATIENT
        self.scope = RunScope(scrub_tmp=config.scrub_tmp)
        # The attempt it ran last, until a poll has reported it (runId, attempt),
        # and its success when the poll is to complete it (credential, (result, usage)).
        self.finished: tuple[str, int] | None = None
        self.completion: tuple[str, tuple[Any, protocol.Usage | None]] | None = None
        self.runs = 0

    def client(self, credential: str) -> api.RunnerClient:
        return api.RunnerClient(self.url, credential, retry=self.retry, http=self.http)

    def deferred_client(self, credential: str) -> DeferredClient:
        return DeferredClient(self.url, credential, retry=self.retry, http=self.http)

    async def poll(self) -> protocol.WarmPollAnswer:
        finished = None
        if self.finished is not None:
            if self.completion is not None:
                credential, (result, usage) = self.completion
                finished = protocol.WarmFinished(
                    run_id=self.finished[0], attempt=self.finished[1], succeeded=True,
                    result=result, credential=credential, usage=usage)
            else:
                finished = protocol.WarmFinished(run_id=self.finished[0],
                                                 attempt=self.finished[1])
        body = protocol.WarmPollBody(finished=finished, rss_bytes=rss_bytes(),
                                     wait_seconds=POLL_WAIT_SECONDS)

        async def send(method: str, url: str, headers: Any, data: bytes | None
                       ) -> tuple[int, str]:
            return await self.http.send(method, url, headers, data,
                                        timeout=POLL_WAIT_SECONDS + 10.0)

        _, raw = await request_json(
            send, "POST", f"{self.url}{protocol.PATH_WARM_POLL}",
            headers={"Authorization": f"Bearer {self.config.runner_token}"},
            json_body=protocol.encode(body), retry=self.retry,
        )
        answer = protocol.decode(protocol.WarmPollAnswer, raw)
        self.finished = None  # reported
        self.completion = None
        return answer

    async def run_doc(self, doc: protocol.AttemptDocument,
                      client: api.RunnerClient) -> attempt.AttemptResult:
        """Run one attempt in a clean scope."""
        rss_before = rss_bytes()
        with self.scope.run():
            result = await attempt.run_attempt(doc, client)
        self.finished = (doc.run_id, doc.attempt)
        if isinstance(client, DeferredClient) and client.result is not None:
            self.completion = (client.credential, client.result)
        self.runs += 1
        # Debug only: the next poll reports the memory, and each line at info is
        # captured as the run's output (a store write per run on the warm path).
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("warm run finished", extra={
                "run_id": doc.run_id, "outcome": str(result.outcome), "runs": self.runs,
                "rss_before_mib": rss_before // 2**20, "rss_after_mib": rss_bytes() // 2**20})
        return result

    async def serve(self) -> attempt.Outcome:
        """Poll and run until retired (SUCCEEDED: exit 0), or until an outcome that
        ends the loop early (anything but a success or a reported failure)."""
        while True:
            try:
                answer = await self.poll()
            except AttemptSuperseded:
                _log.warning("warm runner's attempt was lost; taking nothing more")
                return attempt.Outcome.SUPERSEDED
            except (WaypostAPIError, CoordinatorUnavailable, protocol.ProtocolError) as exc:
                _log.error("warm poll failed; exiting", extra={"error": str(exc)})
                return attempt.Outcome.UNREPORTED
            if answer.retire:
                _log.info("warm runner retired", extra={"reason": answer.retire,
                                                        "runs": self.runs})
                return attempt.Outcome.SUCCEEDED
            if answer.assignment is None:
                continue
            assigned = answer.assignment
            result = await self.run_doc(assigned.attempt,
                                        self.deferred_client(assigned.credential))
            # A suspended run (it waits) released this runner as a finished one does.
            if result.outcome not in (attempt.Outcome.SUCCEEDED, attempt.Outcome.FAILED,
                                      attempt.Outcome.SUSPENDED):
                # Superseded, cancelled or unreported: its task may still be
                # running in a thread, or the coordinator is unreachable.
                return result.outcome


FirstDocument = Callable[[api.RunnerClient], Awaitable[protocol.AttemptDocument]]


async def first_attempt(runner: WarmRunner, client: api.RunnerClient,
                        first: FirstDocument | None = None) -> attempt.AttemptResult:
    """The attempt the runner was started for, fetched with its cold credential
    (``first`` may have its document already: waypost.runner.early)."""
    doc = await (first(client) if first is not None else client.get_attempt())
    return await runner.run_doc(doc, client)


async def run_warm(coordinator_url: str, token: str, task_path: tuple[str, ...],
                   config: WarmConfig, first: FirstDocument | None = None) -> attempt.Outcome:
    """Run the first attempt, then serve assignments until retired.

    Returns SUCCEEDED when retired after its runs, otherwise the outcome that
    made it stop (the caller turns it into the exit code).
    """
    loader.extend_search_path(task_path)
    http = StreamHTTP(coordinator_url, api.DEFAULT_REQUEST_TIMEOUT)
    runner = WarmRunner(coordinator_url, config, http)
    try:
        try:
            result = await first_attempt(runner, runner.deferred_client(token), first)
        except AttemptSuperseded:
            return attempt.Outcome.SUPERSEDED
        except (WaypostAPIError, CoordinatorUnavailable) as exc:
            _log.error("cannot fetch the first attempt", extra={"error": str(exc)})
            return attempt.Outcome.UNREPORTED
        except protocol.ProtocolError as exc:
            _log.error("bad attempt document", extra={"error": str(exc)})
            return attempt.Outcome.CONFIG_ERROR
        if result.outcome not in (attempt.Outcome.SUCCEEDED, attempt.Outcome.FAILED):
            return result.outcome
        return await runner.serve()
    finally:
        runner.scope.cleanup()
        http.close()


async def run_prewarmed(coordinator_url: str, entrypoint: str, task_path: tuple[str, ...],
                        config: WarmConfig) -> attempt.Outcome:
    """A runner started ahead of demand: import the task's module, then serve
    assignments until retired (SUCCEEDED), as after a first attempt.

    An entrypoint that does not import is CONFIG_ERROR: the runner exits before it
    polls, so it never takes an attempt it could not run.
    """
    loader.extend_search_path(task_path)
    try:
        loader.load_entrypoint(entrypoint)
    except loader.EntrypointError as exc:
        _log.error("cannot load entrypoint", extra={"error": str(exc)})
        return attempt.Outcome.CONFIG_ERROR
    http = StreamHTTP(coordinator_url, api.DEFAULT_REQUEST_TIMEOUT)
    runner = WarmRunner(coordinator_url, config, http)
    try:
        return await runner.serve()
    finally:
        runner.scope.cleanup()
        http.close()
