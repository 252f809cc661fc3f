"""Query parameters of the UI's pages, validated and documented like the API's.

The pages' forms send every field, empty when nothing is chosen ("All"), so an
empty value means "not given"; anything else is checked as the API checks it
(no NUL, no lone surrogate, numbers within what Postgres stores), and a bad
value is a 400 page that names the parameter, never a failure in the database.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from waypost.model.base import ApiModel
from waypost.model.enums import RunStatus
from waypost.model.inputs import MAX_INTEGER, MAX_KEY_LENGTH, MAX_NAME_LENGTH, ApiText
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
