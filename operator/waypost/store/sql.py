"""Named SQL statements, loaded from ``queries/*.sql``.

Each statement sits under a ``-- name: <name>`` line followed by comments saying
what it is for; no SQL is written anywhere else in the package.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split a queries file into {name: statement}."""
    found: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip().rstrip(";").strip()
        name = match.group(1)
        if name in found:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        found[name] = body
    return found


@cache
def _all() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("waypost.store") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in parse(entry.read_text(), entry.name).items():
                if name in queries:
                    raise ValueError(f"{entry.name}: query {name!r} is defined in two files")
                queries[name] = body
    return queries


def query(name: str) -> str:
    """The statement registered under ``name``."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no SQL statement named {name!r} in waypost/store/queries") from None


def names() -> list[str]:
    return sorted(_all())
