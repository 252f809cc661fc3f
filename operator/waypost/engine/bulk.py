"""Bulk actions: requeue, cancel or replay every run a filter matches, in bounded
batches.

One call handles one batch (``batchSize`` runs, newest first) and returns a keyset
cursor for the next; a caller loops until the cursor is null and reports progress
between calls. Each run is changed by the same engine operation a single-run call
uses (its own transaction), so a run that stopped qualifying meanwhile is skipped,
not broken. Repeating an action is harmless: requeued and cancelled runs no longer
match, and a bulk replay names each replay with an idempotency key derived from the
action and the original run, and never takes its own replays as originals.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from waypost.engine import control, replay
from waypost.engine.core import Engine
from waypost.engine.errors import InvalidState, InvalidValue, RunNotFound
from waypost.model.enums import ACTIVE_STATUSES, RunStatus
from waypost.model.run import BulkRequest, BulkResult, ReplayRequest
from waypost.store import runs

ELIGIBLE: dict[str, frozenset[RunStatus]] = {
    "requeue": frozenset({RunStatus.DEAD_LETTERED, RunStatus.FAILED}),
    "cancel": ACTIVE_STATUSES,
    "replay": frozenset(s for s in RunStatus if s.is_final),
}


def replay_key_prefix(request: BulkRequest) -> str:
    """The idempotency-key prefix of the replays one bulk replay makes: the same
    filter and options give the same prefix, whatever the batch."""
    what = json.dumps(
        {"filter": request.filter.model_dump(mode="json", by_alias=True),
         "replay": request.replay.model_dump(mode="json", by_alias=True)},
        sort_keys=True)
    return f"bulk-replay:{hashlib.sha256(what.encode()).hexdigest()[:16]}:"


def selection(request: BulkRequest) -> runs.BulkSelection:
    flt = request.filter
    statuses = set(ELIGIBLE[request.action])
    if flt.statuses is not None:
        statuses &= set(flt.statuses)
    if flt.dead_lettered:
        statuses &= {RunStatus.DEAD_LETTERED}
    return runs.BulkSelection(
        statuses=sorted(statuses), namespace=flt.namespace, task=flt.task, since=flt.since,
        until=flt.until, error_type=str(flt.error_type) if flt.error_type else None,
        exclude_key_prefix=replay_key_prefix(request) if request.action == "replay" else None,
    )


async def run_batch(engine: Engine, request: BulkRequest, *, requested_by: str) -> BulkResult:
    """Apply the action to the next batch of matching runs (or, dry, count them)."""
    sel = selection(request)
    if not sel.statuses:
        return BulkResult(action=request.action, dry_run=request.dry_run, matched=0,
                          processed=0, changed=0, skipped=0)
    matched = await runs.bulk_count(engine.pool, sel)
    if request.dry_run:
        return BulkResult(action=request.action, dry_run=True, matched=matched, processed=0,
                          changed=0, skipped=0)
    batch = await runs.bulk_candidates(engine.pool, sel, before_seq=request.cursor,
                                       limit=request.batch_size)
    changed: list[str] = []
    skipped = 0
    for run_id, _seq in batch:
        done = await _apply(engine, request, run_id, requested_by)
        if done is None:
            skipped += 1
        else:
            changed.append(done)
    return BulkResult(
        action=request.action, dry_run=False, matched=matched, processed=len(batch),
        changed=len(changed), skipped=skipped, run_ids=changed,
        next_cursor=batch[-1][1] if len(batch) == request.batch_size else None,
    )


async def _apply(engine: Engine, request: BulkRequest, run_id: uuid.UUID,
                 requested_by: str) -> str | None:
    """The run changed (the new run, for a replay), or None when it was skipped."""
    try:
        if request.action == "requeue":
            return (await control.requeue(engine, run_id, request.requeue.spec)).id
        if request.action == "cancel":
            return (await control.cancel(engine, run_id, reason="cancelled by a bulk action")).id
        made, created = await replay.replay(
            engine, run_id,
            ReplayRequest(from_checkpoint=request.replay.from_checkpoint,
                          spec=request.replay.spec,
                          idempotency_key=f"{replay_key_prefix(request)}{run_id}"),
            requested_by=f"{requested_by} (bulk replay)")
        return made.id if created else None
    except (InvalidState, RunNotFound, InvalidValue):
        # It changed since it was selected (or, for a replay, lacks the checkpoint).
        return None
