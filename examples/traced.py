"""Tracing (docs/tracing.md): an order whose first step calls a service over HTTP
with ``ctx.traceparent``, so the service's spans join the run's trace under that
step, and whose payment fails on the first attempt, so the second attempt resumes
and skips ``order-fetched``. Used by the tracing tests (integration and e2e)."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from waypost import Retry, task
from waypost.sdk import Context


def _call(url: str, traceparent: str) -> int:
    request = urllib.request.Request(url, headers={"traceparent": traceparent})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(resp.status)


@task(id="traced-order", retry=Retry(max_attempts=3, initial_delay=0.1), memory="256Mi")
async def traced_order(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch the order from ``payload["url"]`` (an outgoing call that carries the
    step's trace context), then pay; payment fails on attempt 1."""

    async def fetch() -> dict[str, Any]:
        status = await asyncio.to_thread(_call, payload["url"], ctx.traceparent)
        return {"id": payload["orderId"], "status": status}

    order = await ctx.step("order-fetched", fetch)

    async def pay() -> dict[str, Any]:
        if ctx.attempt == 1:
            raise RuntimeError("payment declined on attempt 1")
        return {"paid": order["id"]}

    payment = await ctx.step("payment-complete", pay)
    await ctx.checkpoint("receipt", {"order": order["id"]})
    return {"order": order, "payment": payment}
