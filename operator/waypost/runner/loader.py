"""Resolving a task's ``module:function`` entrypoint to a callable."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from waypost.sdk.decorator import Task


class EntrypointError(Exception):
    """The entrypoint is malformed, its module fails to import, or the name is missing.

    ``details`` holds the formatted traceback of the underlying error, if any.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def extend_search_path(entries: Iterable[str]) -> None:
    """Put ``entries`` at the front of ``sys.path`` (keeping their order), once each."""
    for entry in reversed([e for e in entries if e]):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def load_entrypoint(entrypoint: str) -> Callable[..., Any]:
    """Import ``"module:qualname"`` and return the task function it names.

    A ``@task``-decorated object resolves to the function it wraps, so the
    runner can tell sync from async functions. Raises
    :class:`EntrypointError` with a message saying what was wrong.
    """
    module_name, sep, qualname = entrypoint.partition(":")
    if not sep or not module_name or not qualname:
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is not of the form 'module:function' "
            "(for example 'examples.orders:process_order')"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)),
        ) from exc
    for index, part in enumerate(qualname.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join([module_name, *qualname.split(".")[:index]])
            raise EntrypointError(
                f"entrypoint {entrypoint!r}: {where!r} has no attribute {part!r}"
            ) from None
    if isinstance(obj, Task):
        obj = obj.fn
    if not callable(obj):
        raise EntrypointError(
            f"entrypoint {entrypoint!r} names a {type(obj).__name__}, not a function"
        )
    fn: Callable[..., Any] = obj
    return fn
