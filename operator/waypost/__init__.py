"""waypost: durable task execution for Kubernetes.

Task authors import from here: ``from waypost import task, Retry``.

The names are loaded on first use (PEP 562): importing a submodule such as
``waypost.runner.entry`` must not import the SDK first, so that a runner can
start its attempt's fetch before it pays for those imports
(:mod:`waypost.runner.early`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waypost.sdk.decorator import Queue, Retry, Schedule, task
    from waypost.sdk.errors import AbortRun

__all__ = ["AbortRun", "Queue", "Retry", "Schedule", "task"]

_WHERE = {"Queue": "waypost.sdk.decorator", "Retry": "waypost.sdk.decorator",
          "Schedule": "waypost.sdk.decorator", "task": "waypost.sdk.decorator",
          "AbortRun": "waypost.sdk.errors"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'waypost' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
