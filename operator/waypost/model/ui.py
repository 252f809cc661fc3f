"""Query parameters of the UI's pages, validated and documented like the API's.

The pages' forms send every field, empty when nothing is chosen ("All"), so an
empty value means "not given"; anything else is checked as the API checks it
(no NUL, no lone surrogate, numbers within what Postgres stores), and a bad
value is a 400 page that names the parameter, never a failure in the database.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from waypost.model.base import ApiModel
from waypost.model.enums import FailureType, RunStatus
from waypost.model.inputs import (
    JSON_VALUE_MARKER,
    MAX_INTEGER,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    ApiText,
)
from waypost.model.run import EVENT_CURSOR_PATTERN, MAX_ATTEMPT
from waypost.sdk.protocol import LOG_LEVELS

Blank = Literal[""]
Name = Annotated[ApiText, Field(max_length=MAX_NAME_LENGTH)]
Seq = Annotated[int, Field(ge=0, le=MAX_INTEGER)]
AttemptNumber = Annotated[int, Field(ge=1, le=MAX_ATTEMPT)]
EventCursor = Annotated[str, Field(pattern=EVENT_CURSOR_PATTERN)]
# One of the values, or empty (the form's "All"): a pattern, so that the parameter's
# schema stands alone in the OpenAPI document.
Status = Annotated[str, Field(pattern="^(" + "|".join(s.value for s in RunStatus) + ")?$")]
Level = Annotated[str, Field(pattern="^(" + "|".join(LOG_LEVELS) + ")?$")]
ErrorType = Annotated[str, Field(pattern="^(" + "|".join(t.value for t in FailureType) + ")?$")]


def given(value: object) -> object:
    """``value``, or None when the form left it empty."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


class PageQuery(ApiModel):
    """Query parameters of a page (unknown ones are ignored, as browsers add some)."""

    model_config = ConfigDict(extra="ignore")


class RunsPageQuery(PageQuery):
    task: Name | None = Field(None, description="Only this task.")
    namespace: Name | None = Field(None, description="Only this namespace.")
    status: Status | None = Field(None, description="Only this status.")
    window: Literal["15m", "1h", "24h", "7d", ""] | None = Field(
        None, description="Created within 15m, 1h, 24h or 7d.")
    q: Annotated[ApiText, Field(max_length=256)] | None = Field(
        None, description="A prefix of the run id or idempotency key.")
    cursor: Seq | None = Field(None, description="The next page's cursor.")


class RunPageQuery(PageQuery):
    attempt: AttemptNumber | Blank | None = Field(None, description="Log lines of this attempt.")
    level: Level | None = Field(None, description="Log lines of this level and above.")


class LogLinesQuery(PageQuery):
    attempt: AttemptNumber | Blank | None = Field(None, description="Only this attempt.")
    level: Level | None = Field(None, description="This level and above.")
    after: EventCursor | Blank | None = Field(
        None, description="Lines after this cursor, and a follower for the next ones.")
    before: EventCursor | Blank | None = Field(
        None, description="The newest lines before this cursor.")


class CheckpointQuery(PageQuery):
    key: Annotated[ApiText, Field(max_length=MAX_KEY_LENGTH)] = Field(
        "", description="The checkpoint's key.")


class ReplayFormQuery(PageQuery):
    from_: Annotated[ApiText, Field(max_length=MAX_KEY_LENGTH)] | None = Field(
        None, alias="from", description="The checkpoint to resume after (empty: the start).")
    payload: ApiText | None = Field(None, description="The payload text typed so far.")


class DeadLettersQuery(PageQuery):
    task: Name | None = Field(None, description="Only this task.")
    namespace: Name | None = Field(None, description="Only this namespace.")
    cursor: Seq | Blank | None = Field(None, description="The next page's cursor.")


# --- posted forms -----------------------------------------------------------
# The UI's buttons post HTML forms (application/x-www-form-urlencoded): every value is
# text, a repeated field is a list, and a field left empty is sent empty.

# The JSON a text area holds, documented as JSON text (a fuzzer sends JSON); what it
# holds passes the API's input boundary when the form is read (depth, numbers, NUL).
# Empty is no value. Its size is bounded by the request body's limit (413).
JsonText = Annotated[ApiText, Field(
    json_schema_extra={"contentMediaType": "application/json",
                       "contentSchema": {JSON_VALUE_MARKER: True}})]
Spec = Literal["current", "original", ""]
Digits = Annotated[str, Field(pattern="^[0-9]{0,18}$")]
# A ``datetime-local`` input: a date and a time without a zone (taken as UTC); the
# pattern admits only days that every year has, so what it admits parses.
_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
LocalTime = Annotated[str, Field(
    pattern=f"^(?:[0-9]{{4}}-{_DAY}T(?:[01][0-9]|2[0-3]):[0-5][0-9]"
            "(?::[0-5][0-9](?:\\.[0-9]{1,6})?)?)?$")]
Key = Annotated[ApiText, Field(max_length=MAX_KEY_LENGTH)]


class FormBody(PageQuery):
    """A posted form's fields (unknown ones are ignored: a form may carry more)."""


class LoginForm(FormBody):
    token: Annotated[ApiText, Field(min_length=1, max_length=4096)] = Field(
        description="The API token.")
    next: Annotated[ApiText, Field(max_length=2048)] | None = Field(
        None, description="The path on this site to go to after the login.")


class ReplayForm(FormBody):
    from_: Key | None = Field(
        None, alias="from", description="The checkpoint to resume after (empty: the start).")
    payload: JsonText | None = Field(
        None, description="The replay's payload as JSON text (absent or empty: null).")
    checkpoint: JsonText | None = Field(
        None, description="That checkpoint's data as JSON text, as edited (absent or "
        "empty: as it is).")
    spec: Spec = Field("current", description="The Task's current spec or the original.")


class RequeueForm(FormBody):
    spec: Spec = Field("current", description="The Task's current spec or the original.")


class DeadLettersRequeueForm(FormBody):
    run: list[uuid.UUID] = Field(min_length=1, max_length=200,
                                 description="The runs to requeue (repeated).")
    spec: Spec = Field("current", description="The Task's current spec or the original.")


class BulkForm(FormBody):
    action: Literal["requeue", "replay", "cancel"] = Field(description="What to do.")
    task: Name | Blank | None = Field(None, description="Only this task.")
    namespace: Name | Blank | None = Field(None, description="Only this namespace.")
    status: list[Status] = Field(default_factory=list, max_length=len(RunStatus) * 4,
                                 description="Only these statuses (repeated).")
    since: LocalTime | None = Field(None, description="Created at or after (UTC).")
    until: LocalTime | None = Field(None, description="Created before (UTC).")
    error_type: ErrorType | None = Field(
        None, alias="errorType", description="Only runs whose last error is of this type.")
    dead_lettered: Literal["", "1", "on", "true"] | None = Field(
        None, alias="deadLettered", description="1: only dead-lettered runs.")
    spec: Spec = Field("current", description="current or original (requeue, replay).")
    from_checkpoint: Key | None = Field(
        None, alias="fromCheckpoint", description="Replays resume after this checkpoint.")


class BulkRunForm(BulkForm):
    cursor: Digits | None = Field(None, description="Where the next batch starts.")
    batches: Digits | None = Field(None, description="Batches done so far.")
    processed: Digits | None = Field(None, description="Runs looked at so far.")
    changed: Digits | None = Field(None, description="Runs changed so far.")
    skipped: Digits | None = Field(None, description="Runs skipped so far.")
