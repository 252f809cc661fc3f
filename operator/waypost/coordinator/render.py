"""Runs as JSON answers, for any run that is stored.

A stored run can always be listed and shown. Its payload, result and checkpoint
data are user JSON that passed the input checks when they were written, but a
row written by an older version, or by hand, may hold a value that cannot be
encoded (nested deeper than the encoder goes). Such a value is shown as a
placeholder with a warning that says which one; the rest of the run, and the
other runs of a page, are shown as usual.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from waypost.model.run import Run, RunList
from waypost.store.pool import UnreadableJson

log = logging.getLogger("waypost.coordinator")

PLACEHOLDER = {"waypostPlaceholder": "this stored value cannot be shown as JSON; see warnings"}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _renderable(value: Any) -> bool:
    if isinstance(value, UnreadableJson):
        return False
    try:
        _dumps(value)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def run_body(run: Run, *, check: bool = True) -> dict[str, Any]:
    """The run as the API shows it. User JSON is copied as stored, not through
    pydantic, whose serializer stops at a depth that stored data may exceed;
    with ``check``, each value is tried first and replaced when it fails."""
    body = run.model_dump(mode="json", by_alias=True,
                          exclude={"payload", "result", "checkpoints", "warnings"})
    warnings = list(run.warnings or [])

    def user_json(value: Any, what: str) -> Any:
        if not check or _renderable(value):
            return value
        warnings.append(f"{what} cannot be shown as JSON (nested too deeply); "
                        "shown as a placeholder")
        log.warning("stored value cannot be rendered",
                    extra={"run_id": run.id, "field": what})
        return PLACEHOLDER

    body["payload"] = user_json(run.payload, "payload")
    body["result"] = user_json(run.result, "result")
    if run.checkpoints is not None:
        body["checkpoints"] = [
            {**c.model_dump(mode="json", by_alias=True, exclude={"data"}),
             "data": user_json(c.data, f"checkpoint {c.key!r}")}
            for c in run.checkpoints
        ]
    else:
        body["checkpoints"] = None
    body["warnings"] = warnings or None
    return body


def _encoded(build: Any) -> str:
    # Encode once as usual; only when that fails, value by value with placeholders.
    try:
        return _dumps(build(False))
    except (ValueError, TypeError, RecursionError):
        return _dumps(build(True))


def run_response(run: Run, status: int = 200) -> web.Response:
    text = _encoded(lambda check: run_body(run, check=check))
    return web.Response(text=text, status=status, content_type="application/json")


def run_list_response(page: RunList) -> web.Response:
    def build(check: bool) -> dict[str, Any]:
        body = page.model_dump(mode="json", by_alias=True, exclude={"runs"})
        body["runs"] = [run_body(r, check=check) for r in page.runs]
        return body
    return web.Response(text=_encoded(build), content_type="application/json")
