"""The order scenario of the README: resume after the last finished step.

``process-order`` fetches an order, charges it and decrements inventory. With
``{"failPaymentOnAttempts": [1]}`` in the payload the charge fails on the
first attempt; the retry finds the ``order-fetched`` checkpoint and does not
fetch the order again (the ledger shows one ``fetch_order`` per run).
"""

from __future__ import annotations

from typing import Any

from examples import ledger
from waypost import AbortRun, Retry, task
from waypost.sdk import Context


class PaymentDeclined(Exception):
    """The (simulated) payment provider refused the charge; worth retrying."""


async def fetch_order(ctx: Context, order_id: str) -> dict[str, Any]:
    """Load the order (simulated)."""
    ctx.log.info("fetching order", orderId=order_id)
    ledger.record(ctx.run_id, ctx.attempt, "fetch_order")
    return {"id": order_id, "amountCents": 4200, "items": [{"sku": "book-1", "quantity": 1}]}


async def charge(ctx: Context, order: dict[str, Any], fail_on: list[int]) -> dict[str, Any]:
    """Charge the order once, keyed so that a repeated call would not charge twice."""
    if ctx.attempt in fail_on:
        ctx.log.warning("payment declined", attempt=ctx.attempt)
        raise PaymentDeclined(f"payment provider unavailable on attempt {ctx.attempt}")
    key = ctx.idempotency_key("charge")
    ledger.record(ctx.run_id, ctx.attempt, "charge", idempotencyKey=key)
    return {"id": f"pay-{key[-12:]}", "amountCents": order["amountCents"]}


async def decrement_inventory(ctx: Context, order: dict[str, Any]) -> None:
    """Idempotent by design (keyed by run), so it needs no checkpoint."""
    ledger.record(ctx.run_id, ctx.attempt, "decrement_inventory")


@task(
    id="process-order",
    retry=Retry(max_attempts=5, initial_delay=0.2, factor=2.0),
    memory="256Mi",
)
async def process_order(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch, charge and fulfil an order, resuming after the last finished step."""
    if not isinstance(payload, dict) or not isinstance(payload.get("orderId"), str):
        # No retry can fix a malformed payload: fail the run at once.
        raise AbortRun("payload must be an object with a string 'orderId'")
    fail_on = [int(n) for n in payload.get("failPaymentOnAttempts", [])]
    order = await ctx.step("order-fetched", fetch_order, ctx, payload["orderId"])
    ctx.log.info("order fetched", orderId=order["id"])
    payment = await ctx.step("payment-complete", charge, ctx, order, fail_on)
    ctx.log.info("payment complete", paymentId=payment["id"])
    await decrement_inventory(ctx, order)
    return {"orderId": order["id"], "paymentId": payment["id"]}
