"""Common configuration for every waypost API model.

Fields are snake_case in Python and camelCase on the wire (CRDs, HTTP API),
like the Kubernetes API conventions ask.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every wire model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
