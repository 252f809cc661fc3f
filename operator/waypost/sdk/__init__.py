"""The waypost task SDK: declare tasks, use the run context, trigger runs.

Declaring a task (``from waypost import task, Retry`` is usually enough)::

    @task(id="process-order", retry=Retry(max_attempts=5), memory="512Mi", timeout="15m")
    async def process_order(ctx: Context, payload: dict) -> dict:
        order = await ctx.step("order-fetched", fetch_order, payload["orderId"])
        payment = await ctx.step("payment-complete", charge, order)  # skipped on retry once done
        return {"orderId": order["id"], "paymentId": payment["id"]}

What the context offers (:class:`Context` for async functions,
:class:`SyncContext` with blocking methods for sync ones, which run in a
worker thread):

- ``ctx.step(key, fn, *args)``: runs ``fn`` once per run; its JSON result is
  checkpointed under ``key`` and returned as read back from JSON, so every
  attempt sees the same value. Keys name steps: use each key for one step.
- ``ctx.checkpoint(key, data)``, ``ctx.checkpoints`` (read-only, in write
  order), ``ctx.last_checkpoint``: the explicit form, for code that manages
  its own resume point.
- ``ctx.wait_for(seconds)``, ``ctx.wait_until(when)``: durable waits; long ones
  suspend the run (its process or Pod exits) and a later attempt passes
  through them. ``ctx.create_token()`` / ``ctx.wait_for_token(token)`` wait for
  someone to complete a token (:class:`WaitTimeout` when it times out);
  ``ctx.trigger_and_wait(task, payload)`` /
  ``ctx.batch_trigger_and_wait(task, payloads)`` start child runs and wait for
  them (:class:`ChildRun`). docs/waits.md has the details.
- ``ctx.run_id``, ``ctx.attempt`` (1-based), ``ctx.payload``,
  ``ctx.idempotency_key(suffix)`` (stable across attempts),
  ``ctx.traceparent`` (W3C), ``ctx.log.info(message, **fields)``,
  ``ctx.heartbeat()`` for long stretches that block the event loop.

Failing: any exception fails the attempt and is retried according to
:class:`Retry`; :class:`AbortRun` fails the run at once. Checkpoints and
results are JSON, within the size limits the coordinator announces
(:class:`CheckpointTooLarge`, :class:`ResultTooLarge`, which are not retried).

Triggering from other code: :class:`WaypostClient`.
"""

from typing import TYPE_CHECKING, Any

from waypost.sdk.context import Checkpoint, ChildRun, Context, Limits, SyncContext, WaitToken
from waypost.sdk.decorator import (
    FAILURE_TYPES,
    Queue,
    Retry,
    Schedule,
    Task,
    TaskDefinition,
    registered_tasks,
    task,
)
from waypost.sdk.errors import (
    AbortRun,
    AttemptSuperseded,
    CheckpointTooLarge,
    ChildRunFailed,
    CoordinatorUnavailable,
    NotJSONSerializable,
    ResultTooLarge,
    RunCancelled,
    Suspended,
    WaitTimeout,
    WaypostAPIError,
    WaypostError,
)
from waypost.sdk.logger import TaskLogger
from waypost.sdk.quantity import parse_duration, parse_memory_quantity

if TYPE_CHECKING:
    from waypost.sdk.client import RunHandle, WaypostClient


def __getattr__(name: str) -> Any:
    # The client pulls in aiohttp, which task code running in a runner does
    # not need: importing it on first use keeps runner start-up fast.
    if name in ("RunHandle", "WaypostClient"):
        from waypost.sdk import client

        return getattr(client, name)
    raise AttributeError(f"module 'waypost.sdk' has no attribute {name!r}")


__all__ = [
    "FAILURE_TYPES",
    "AbortRun",
    "AttemptSuperseded",
    "Checkpoint",
    "CheckpointTooLarge",
    "ChildRun",
    "ChildRunFailed",
    "Context",
    "CoordinatorUnavailable",
    "Limits",
    "NotJSONSerializable",
    "Queue",
    "ResultTooLarge",
    "Retry",
    "RunCancelled",
    "RunHandle",
    "Schedule",
    "Suspended",
    "SyncContext",
    "Task",
    "TaskDefinition",
    "TaskLogger",
    "WaitTimeout",
    "WaitToken",
    "WaypostAPIError",
    "WaypostClient",
    "WaypostError",
    "parse_duration",
    "parse_memory_quantity",
    "registered_tasks",
    "task",
]
