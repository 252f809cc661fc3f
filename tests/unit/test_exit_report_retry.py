"""The end of an attempt seen during a database outage is recorded once the store is
back (the fault suite's Postgres restarts found these dropped)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import StalledBackend
from waypost.engine import attempts, dispatcher
from waypost.engine.backend import AttemptExit


async def test_exit_report_is_retried_until_the_store_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[AttemptExit] = []

    async def flaky_report(engine: Any, exit: AttemptExit) -> None:
        calls.append(exit)
        if len(calls) < 3:
            raise ConnectionRefusedError("the database is restarting")

    monkeypatch.setattr(attempts, "report_exit", flaky_report)
    monkeypatch.setattr(dispatcher.aiotime, "reconnect_delay", lambda *_a, **_k: 0.01)
    d = dispatcher.Dispatcher(object(), StalledBackend())  # type: ignore[arg-type]
    exit = AttemptExit(uuid.uuid4(), 7, None, "exited 0", 0)
    await d._on_exit(exit)
    assert calls == [exit, exit, exit]
    assert d._wake.is_set()


async def test_exit_report_gives_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(engine: Any, exit: AttemptExit) -> None:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(attempts, "report_exit", down)
    monkeypatch.setattr(dispatcher.aiotime, "reconnect_delay", lambda *_a, **_k: 0.01)
    monkeypatch.setattr(dispatcher, "EXIT_REPORT_PATIENCE_SECONDS", 0.05)
    d = dispatcher.Dispatcher(object(), StalledBackend())  # type: ignore[arg-type]
    await d._on_exit(AttemptExit(uuid.uuid4(), 7, None, "exited 0", 0))  # returns, no raise
    assert d._wake.is_set()
