"""Wait tokens as the API shows them, and their request bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from waypost.model.base import ApiModel
from waypost.model.inputs import MAX_KEY_LENGTH, MAX_NAME_LENGTH, ApiJson, ApiText
from waypost.model.run import PositiveSeconds

TokenStatus = Literal["pending", "completed", "timed_out"]


class Token(ApiModel):
    """A wait token: a run waits on it until someone completes it with data.

    ``url`` (only in the answer that created the token) is the webhook callback
    address: ``POST`` a JSON body there to complete the token; the address holds
    the token's own secret, so whoever has it needs no API token.
    """

    id: str
    namespace: str
    run_id: str | None = Field(None, description="The run that created it, if any.")
    idempotency_key: str | None = None
    status: TokenStatus
    data: Any = Field(None, description="What it was completed with.")
    timeout_at: datetime | None = Field(
        None, description="After this, completing it is refused (410) and its waiters "
                          "resume with a timeout.")
    created_at: datetime
    completed_at: datetime | None = None
    waiting_runs: list[str] = Field(default_factory=list,
                                    description="Runs waiting on it now.")
    url: str | None = Field(None, description="Webhook callback URL with the token's secret "
                                              "(only when created).")


class TokenList(ApiModel):
    tokens: list[Token]
    next_cursor: str | None = Field(None, description="Pass as cursor for the next page.")


class TokenCreateRequest(ApiModel):
    """Body of ``POST /v1/tokens``."""

    namespace: ApiText = Field("default", min_length=1, max_length=MAX_NAME_LENGTH)
    timeout: PositiveSeconds | None = Field(
        None, description="Seconds until it times out; never when omitted.")
    idempotency_key: ApiText | None = Field(
        None, min_length=1, max_length=MAX_KEY_LENGTH,
        description="Creating again with the same key in the namespace returns the same "
                    "token.")


class TokenCompleteRequest(ApiModel):
    """Body of ``POST /v1/tokens/{id}/complete``."""

    data: ApiJson = Field(None, description="Any JSON value; the waiting run receives it.")


class TokenQuery(ApiModel):
    """Filters and paging of the token listing (query parameters)."""

    model_config = ConfigDict(extra="ignore")

    namespace: ApiText | None = Field(None, min_length=1, max_length=MAX_NAME_LENGTH)
    run_id: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                      r"[0-9a-fA-F]{12}$",
        description="Only tokens this run created.")
    status: TokenStatus | None = None
    limit: int = Field(50, ge=1, le=1000)
    cursor: str | None = Field(
        None, pattern=r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                      r"[0-9a-f]{12}$",
        description="nextCursor of the previous page.")


class ChildrenQuery(ApiModel):
    """Paging of a run's children."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(1000, ge=1, le=1000)


__all__ = ["ChildrenQuery", "Token", "TokenCompleteRequest",
           "TokenCreateRequest", "TokenList", "TokenQuery"]
