"""``waypost-runner``: the entrypoint of a runner Pod or process (cold mode).

Configuration comes from the environment, whose names are defined with the
runner protocol (:mod:`waypost.sdk.protocol`): the coordinator's URL
(``ENV_COORDINATOR_URL``), the attempt's credential or a file holding it
(``ENV_ATTEMPT_TOKEN``, ``ENV_ATTEMPT_TOKEN_FILE``), and extra directories to
import task modules from (``ENV_TASK_PATH``; the working directory is always
searched).
A warm runner (:mod:`waypost.runner.warm`) also has its own credential or a
file holding it (``ENV_RUNNER_TOKEN``, ``ENV_RUNNER_TOKEN_FILE``): after its
attempt it long-polls for the next one of the same task until retired. A
pre-warmed runner has its credential and the task's entrypoint
(``ENV_PREWARM_ENTRYPOINT``) but no attempt: it imports the task, then polls.

Exit codes (see :data:`EXIT_CODES`): 0 the result was reported, or the run
suspended to wait (its wait was recorded); 1 the task
failed and the failure was reported; 2 bad configuration (missing
environment, unloadable entrypoint); 3 the attempt was superseded or the run
cancelled, so nothing more was reported; 4 the outcome could not be
delivered to the coordinator; 143 stopped by SIGTERM (Pod deleted, backend
stopping the attempt) after cancelling the task and flushing its logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from waypost.runner import api, attempt, loader, logs, warm
from waypost.runner import early as early_fetch
from waypost.sdk import protocol
from waypost.sdk.errors import AttemptSuperseded, CoordinatorUnavailable, WaypostAPIError

_log = logging.getLogger("waypost.runner")

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STOPPED = 3
EXIT_UNREPORTED = 4
EXIT_TERMINATED = 128 + signal.SIGTERM

EXIT_CODES: dict[attempt.Outcome, int] = {
    attempt.Outcome.SUCCEEDED: EXIT_SUCCEEDED,
    attempt.Outcome.FAILED: EXIT_FAILED,
    attempt.Outcome.CONFIG_ERROR: EXIT_CONFIG,
    attempt.Outcome.SUPERSEDED: EXIT_STOPPED,
    attempt.Outcome.CANCELLED: EXIT_STOPPED,
    # The suspension was reported (the run waits): a clean exit.
    attempt.Outcome.SUSPENDED: EXIT_SUCCEEDED,
    attempt.Outcome.UNREPORTED: EXIT_UNREPORTED,
}


class ConfigError(Exception):
    """The runner's environment is incomplete or unreadable."""


@dataclass(frozen=True)
class RunnerConfig:
    """Process-level settings of a cold runner."""

    coordinator_url: str
    token: str
    task_path: tuple[str, ...]

    @classmethod
    def from_env(cls, env: Mapping[str, str], cwd: str) -> RunnerConfig:
        """Read the configuration; raise :class:`ConfigError` saying what is missing."""
        url = env.get(protocol.ENV_COORDINATOR_URL, "").strip()
        if not url:
            raise ConfigError(f"{protocol.ENV_COORDINATOR_URL} is not set")
        token = env.get(protocol.ENV_ATTEMPT_TOKEN, "").strip()
        token_file = env.get(protocol.ENV_ATTEMPT_TOKEN_FILE, "").strip()
        if not token and token_file:
            try:
                with open(token_file, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{protocol.ENV_ATTEMPT_TOKEN_FILE} {token_file!r} cannot be read: "
                    f"{exc.strerror}"
                ) from None
            if not token:
                raise ConfigError(f"{protocol.ENV_ATTEMPT_TOKEN_FILE} {token_file!r} is empty")
        if not token:
            raise ConfigError(
                f"neither {protocol.ENV_ATTEMPT_TOKEN} nor {protocol.ENV_ATTEMPT_TOKEN_FILE} is set"
            )
        extra = [p for p in env.get(protocol.ENV_TASK_PATH, "").split(":") if p]
        return cls(coordinator_url=url, token=token, task_path=(cwd, *extra))


async def run_cold(config: RunnerConfig, client: api.RunnerClient | None = None,
                   early: early_fetch.EarlyFetch | None = None) -> int:
    """Fetch the attempt named by the token, run it, and return the exit code."""
    loader.extend_search_path(config.task_path)
    owned = client is None
    runner_api = client or api.RunnerClient(config.coordinator_url, config.token)
    try:
        try:
            doc = await first_document(runner_api, early)
        except protocol.ProtocolError as exc:
            _log.error("bad attempt document", extra={"error": str(exc)})
            return EXIT_CONFIG
        except AttemptSuperseded:
            _log.warning("attempt superseded before it started")
            return EXIT_STOPPED
        except WaypostAPIError as exc:
            # 401/403/404 here mean a wrong token or URL: a configuration problem.
            _log.error("cannot fetch the attempt", extra={"status": exc.status, "code": exc.code})
            return EXIT_CONFIG if exc.status < 500 else EXIT_UNREPORTED
        except CoordinatorUnavailable as exc:
            _log.error("coordinator unreachable", extra={"error": str(exc)})
            return EXIT_UNREPORTED
        result = await _until_sigterm(attempt.run_attempt(doc, runner_api))
        if result is None:
            _log.warning("terminated by SIGTERM; attempt abandoned", extra={"run_id": doc.run_id})
            return EXIT_TERMINATED
        return EXIT_CODES[result.outcome]
    finally:
        if owned:
            await runner_api.close()


async def first_document(client: api.RunnerClient,
                         early: early_fetch.EarlyFetch | None) -> protocol.AttemptDocument:
    """The attempt document: from the request the entrypoint sent before the imports
    when it was answered with one, else fetched now (with retries and errors)."""
    if early is not None:
        body = early.answer()
        if body is not None:
            try:
                return protocol.decode(protocol.AttemptDocument, json.loads(body))
            except (ValueError, protocol.ProtocolError):
                pass  # fetched again below, where a bad document is reported
    return await client.get_attempt()


T = TypeVar("T")


async def _until_sigterm(work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work``; None when SIGTERM cancelled it.

    Without a handler SIGTERM kills the process mid-write; with one, the task
    is cancelled (its finally blocks run) and logs are flushed.
    """
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        current.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await work
    except asyncio.CancelledError:
        if not terminated:
            raise
        return None
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


async def run_warm_mode(config: RunnerConfig, warm_config: warm.WarmConfig,
                        early: early_fetch.EarlyFetch | None = None) -> int:
    """Warm mode (``WAYPOST_RUNNER_TOKEN`` set): the first attempt, then the next ones
    the coordinator assigns, until retired (exit 0). SIGTERM stops it as in cold mode."""
    ended = await _until_sigterm(warm.run_warm(
        config.coordinator_url, config.token, config.task_path, warm_config,
        first=lambda client: first_document(client, early)))
    if ended is None:
        _log.warning("terminated by SIGTERM; warm runner stopped")
        return EXIT_TERMINATED
    return EXIT_CODES[ended]


def _runner_token(env: Mapping[str, str]) -> str:
    """A warm runner's own credential, or "" (a cold runner)."""
    token = env.get(protocol.ENV_RUNNER_TOKEN, "").strip()
    token_file = env.get(protocol.ENV_RUNNER_TOKEN_FILE, "").strip()
    if not token and token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            # Without it the runner can still run its attempt, cold.
            _log.error("WAYPOST_RUNNER_TOKEN_FILE cannot be read; running cold",
                       extra={"error": exc.strerror})
    return token


async def run_prewarmed_mode(url: str, entrypoint: str, task_path: tuple[str, ...],
                             warm_config: warm.WarmConfig) -> int:
    """A pre-warmed runner: import the task, then serve assignments until retired."""
    ended = await _until_sigterm(warm.run_prewarmed(url, entrypoint, task_path, warm_config))
    if ended is None:
        _log.warning("terminated by SIGTERM; warm runner stopped")
        return EXIT_TERMINATED
    return EXIT_CODES[ended]


def main(argv: Sequence[str] | None = None, *,
         early: early_fetch.EarlyFetch | None = None) -> None:
    """Run the attempt (and, warm, the next ones) and exit with its code.

    ``early`` is the attempt's request the ``waypost-runner`` entrypoint
    (:mod:`waypost.runner.entry`) sent before importing this module."""
    del argv  # configuration comes from the environment only
    logs.configure()
    runner_token = _runner_token(os.environ)
    attempt_token = os.environ.get(protocol.ENV_ATTEMPT_TOKEN)
    # Read once; task code, and whatever it starts, never sees the credentials in
    # the environment (a Pod gets them there from its Secret).
    for name in (protocol.ENV_ATTEMPT_TOKEN, protocol.ENV_RUNNER_TOKEN):
        os.environ.pop(name, None)
    scrub_tmp = os.environ.get(protocol.ENV_WARM_SCRUB_TMP, "") == "1"
    prewarm_entrypoint = os.environ.get(protocol.ENV_PREWARM_ENTRYPOINT, "").strip()
    if prewarm_entrypoint:
        url = os.environ.get(protocol.ENV_COORDINATOR_URL, "").strip()
        if not url or not runner_token:
            _log.error("bad runner configuration", extra={
                "error": f"a pre-warmed runner needs {protocol.ENV_COORDINATOR_URL} and its "
                f"runner credential ({protocol.ENV_RUNNER_TOKEN} or "
                f"{protocol.ENV_RUNNER_TOKEN_FILE})"})
            sys.exit(EXIT_CONFIG)
        extra = [p for p in os.environ.get(protocol.ENV_TASK_PATH, "").split(":") if p]
        code = asyncio.run(run_prewarmed_mode(
            url, prewarm_entrypoint, (os.getcwd(), *extra),
            warm.WarmConfig(runner_token=runner_token, scrub_tmp=scrub_tmp)))
        sys.exit(code)
    env = dict(os.environ)
    if attempt_token is not None:
        env[protocol.ENV_ATTEMPT_TOKEN] = attempt_token
    try:
        config = RunnerConfig.from_env(env, os.getcwd())
    except ConfigError as exc:
        _log.error("bad runner configuration", extra={"error": str(exc)})
        sys.exit(EXIT_CONFIG)
    if runner_token:
        code = asyncio.run(run_warm_mode(config, warm.WarmConfig(
            runner_token=runner_token, scrub_tmp=scrub_tmp), early))
    else:
        code = asyncio.run(run_cold(config, early=early))
    if code in (EXIT_STOPPED, EXIT_TERMINATED):
        # A superseded sync task may still be running in its thread, and
        # interpreter shutdown would wait for executor threads the task
        # started; the coordinator has already moved on, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
