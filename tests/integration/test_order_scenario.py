"""The README's order scenario against a real Postgres and real runner processes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from examples import hello, ledger, orders
from tests.factories import settings, wait_for_status
from waypost.backends.process import ProcessBackend
from waypost.engine import control
from waypost.model.enums import RunStatus
from waypost.model.run import TriggerRequest
from waypost.standalone import Standalone


async def test_payment_failure_resumes_after_order_fetched(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(ledger.LEDGER_ENV, str(ledger_path))
    stack = await Standalone(settings(database_url), ProcessBackend(max_parallel=2)).start()
    try:
        await stack.register(orders.process_order, hello.hello)
        run, created = await control.trigger(
            stack.engine, "default", "process-order",
            TriggerRequest(payload={"orderId": "o-1", "failPaymentOnAttempts": [1]}),
        )
        assert created
        done = await wait_for_status(stack.engine, run.id, {RunStatus.SUCCEEDED}, timeout=60)
    finally:
        await stack.stop()

    assert done.attempt == 2
    assert done.result["orderId"] == "o-1"
    assert done.attempts is not None
    assert [a.status for a in done.attempts] == ["failed", "succeeded"]
    assert done.attempts[0].error is not None
    assert "PaymentDeclined" in (done.attempts[0].error.name or "")
    effects = Counter(e["effect"] for e in ledger.read(str(ledger_path)) if e["run"] == run.id)
    # The fetch ran once, on attempt 1; the retry resumed after its checkpoint.
    assert effects["fetch_order"] == 1
    assert effects["charge"] == 1
    assert effects["decrement_inventory"] == 1
    assert done.checkpoints is not None
    assert [c.key for c in done.checkpoints] == ["order-fetched", "payment-complete"]
    assert [c.attempt for c in done.checkpoints] == [1, 2]
