"""The UI's bulk actions: requeue, replay or cancel every run a filter matches.

The form is counted first (a dry run of ``POST /v1/runs/bulk``'s engine function,
:func:`waypost.engine.bulk.run_batch`); only the confirmation changes anything. The
action then runs one bounded batch per request: each answer reports the progress so
far and, while a next batch remains, carries a form that posts it as soon as it is
on the page, so a long action shows its progress and never holds one request open.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from waypost.coordinator import appkeys, params
from waypost.coordinator import dashboard as ui
from waypost.engine import bulk, control
from waypost.engine.errors import InvalidValue
from waypost.model import ui as ui_query
from waypost.model.enums import FailureType, RunStatus
from waypost.model.run import BulkRequest, BulkResult

Form = MultiMapping[Any]  # a query string or a posted form
ACTIONS = {"requeue": "Requeue", "replay": "Replay", "cancel": "Cancel"}
# How many runs one request of the UI changes.
BATCH = 100
# The form's fields, as the page posts them back (and the bulk page's query takes them).
FIELDS = ("action", "task", "namespace", "since", "until", "errorType", "deadLettered",
          "spec", "fromCheckpoint")


def _form_values(data: Form) -> dict[str, Any]:
    """The filter and options of a posted form (or a query string), as the page
    shows them: single fields as text, statuses as a list."""
    values: dict[str, Any] = {k: str(data.get(k, "")).strip() for k in FIELDS}
    values["statuses"] = [str(s) for s in data.getall("status", []) if str(s)]
    return values


def _when(text: str, name: str) -> str | None:
    """A ``datetime-local`` field (no zone: UTC) as ISO 8601 with its zone."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{name}: not a date and time, got {text!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _request(values: Mapping[str, Any], *, dry_run: bool, cursor: int | None) -> BulkRequest:
    """The API's request for the form's values; a refusal names the field."""
    flt: dict[str, Any] = {
        "namespace": values["namespace"] or None, "task": values["task"] or None,
        "statuses": values["statuses"] or None,
        "since": _when(values["since"], "since"), "until": _when(values["until"], "until"),
        "errorType": values["errorType"] or None,
        "deadLettered": values["deadLettered"] in ("1", "on", "true"),
    }
    spec = values["spec"] or "current"
    try:
        return BulkRequest.model_validate({
            "action": values["action"], "filter": flt, "dryRun": dry_run,
            "batchSize": BATCH, "cursor": cursor,
            "replay": {"fromCheckpoint": values["fromCheckpoint"] or None, "spec": spec},
            "requeue": {"spec": spec},
        })
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        raise InvalidValue(f"{where}: {first['msg']}") from None


def _hidden(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The form's values as (name, value) pairs for hidden inputs."""
    pairs = [(k, str(values[k])) for k in FIELDS if values[k]]
    pairs += [("status", s) for s in values["statuses"]]
    return pairs


def _posted_values(form: ui_query.BulkForm) -> dict[str, Any]:
    """The values of a posted form (read through its model), as :func:`_form_values`
    gives them."""
    fields = form.model_dump(by_alias=True, include={
        "action", "task", "namespace", "since", "until", "error_type", "dead_lettered", "spec",
        "from_checkpoint"})
    values: dict[str, Any] = {k: str(fields.get(k) or "").strip() for k in FIELDS}
    values["statuses"] = [s for s in form.status if s]
    return values


def _count(value: str | None) -> int:
    """A count the page posts back (its model allows ASCII digits only, at most 18)."""
    return int(value or "0")


@ui.page
async def bulk_page(request: web.Request) -> web.Response:
    """The bulk-action form, filled in from the query (links from the runs list and
    the dead letters)."""
    engine = request.app[appkeys.ENGINE]
    summaries = await control.task_summaries(engine)
    values = _form_values(request.query)
    if values["action"] not in ACTIONS:
        values["action"] = "requeue"
    return ui.render(
        request, "bulk.html", values=values, actions=ACTIONS,
        tasks=sorted({s.definition.name for s in summaries}),
        namespaces=sorted({s.definition.namespace for s in summaries}),
        error_types=[t.value for t in FailureType], all_statuses=[s.value for s in RunStatus])


@ui.page
async def bulk_preview(request: web.Request) -> web.Response:
    """Count the runs the action would take (nothing changes) and offer to go on."""
    engine = request.app[appkeys.ENGINE]
    values = _posted_values(await params.read_form(request, ui_query.BulkForm))
    body = _request(values, dry_run=True, cursor=None)
    result = await bulk.run_batch(engine, body, requested_by=ui.requested_by(request))
    return ui.render(request, "bulk_result.html", values=values, hidden=_hidden(values),
                     verb=ACTIONS[body.action], preview=result, result=None,
                     totals=None, next_cursor=None)


@ui.page
async def bulk_run(request: web.Request) -> web.Response:
    """Apply the action to the next batch; report the progress so far."""
    engine = request.app[appkeys.ENGINE]
    form = await params.read_form(request, ui_query.BulkRunForm)
    values = _posted_values(form)
    cursor = int(form.cursor) if form.cursor else None
    body = _request(values, dry_run=False, cursor=cursor)
    result: BulkResult = await bulk.run_batch(engine, body,
                                              requested_by=ui.requested_by(request))
    totals = {
        "batches": _count(form.batches) + 1,
        "processed": _count(form.processed) + result.processed,
        "changed": _count(form.changed) + result.changed,
        "skipped": _count(form.skipped) + result.skipped,
    }
    return ui.render(request, "bulk_result.html", values=values, hidden=_hidden(values),
                     verb=ACTIONS[body.action], preview=None, result=result,
                     totals=totals, next_cursor=result.next_cursor)
