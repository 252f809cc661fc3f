"""Named SQL statements, loaded from ``queries/*.sql``.

Each statement sits under a ``-- name: <name>`` line followed by comments saying
what it is for; no SQL is written anywhere else in the package.

Statements take named parameters (``:run_id``), which the loader compiles to the
positional ``$n`` that Postgres understands, numbered in order of first use; a
parameter used twice is one ``$n``. A ``::type`` cast is not a parameter, nor is
anything inside a string literal, a quoted identifier or a comment. Callers bind
values by name with :func:`bind`, which refuses a missing or an unknown name, so
a statement and its caller cannot disagree on an argument's place.

A ``-- fragment: <name>`` block holds SQL shared by several statements (the
columns of a run record); a statement includes it as ``{name}``, expanded when
the file is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_BLOCK = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# What is never a parameter or a fragment reference: string literals (with ''
# escapes), quoted identifiers, line comments and dollar-quoted bodies.
_OPAQUE = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|\$\$.*?\$\$", re.DOTALL)
# ``:name`` but not the second colon of a ``::type`` cast.
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)\b")
_FRAGMENT_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Statement:
    """A named statement compiled for asyncpg: ``text`` with ``$n`` placeholders,
    and ``params``, the parameter names in ``$n`` order."""

    name: str
    text: str
    params: tuple[str, ...]

    def args(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for ``values`` given by name."""
        missing = [p for p in self.params if p not in values]
        unknown = sorted(set(values) - set(self.params))
        if missing or unknown:
            raise TypeError(
                f"statement {self.name!r} takes {list(self.params)}; "
                f"missing {missing}, unknown {unknown}"
            )
        return tuple(values[p] for p in self.params)


def _outside_opaque(text: str, fn: Any) -> str:
    """Apply ``fn`` (a str -> str function) to the parts of ``text`` that are SQL
    code, leaving literals, quoted identifiers and comments as they are."""
    out: list[str] = []
    pos = 0
    for match in _OPAQUE.finditer(text):
        out.append(fn(text[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(fn(text[pos:]))
    return "".join(out)


def compile_named(name: str, text: str) -> Statement:
    """Compile ``:name`` parameters to ``$n``."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        param = match.group(1)
        if param not in order:
            order[param] = len(order) + 1
        return f"${order[param]}"

    def code(part: str) -> str:
        if re.search(r"(?<!\$)\$\d", part):
            raise ValueError(f"query {name!r} mixes a positional $n with named parameters")
        return _PARAM.sub(number, part)

    compiled = _outside_opaque(text, code)
    return Statement(name, compiled, tuple(order))


def parse(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split a queries file into {name: statement}, fragments expanded (the
    statements still carry their named parameters)."""
    statements: dict[str, str] = {}
    fragments: dict[str, str] = {}
    matches = list(_BLOCK.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip().rstrip(";").strip()
        kind, name = match.group(1), match.group(2)
        found = statements if kind == "name" else fragments
        if name in statements or name in fragments:
            raise ValueError(f"{source}: {kind} {name!r} is defined twice")
        if kind == "fragment":
            # A fragment's own comments stay in the file, out of the statements.
            body = "\n".join(
                line for line in body.splitlines() if not line.lstrip().startswith("--")
            )
        found[name] = body

    def expand(match: re.Match[str]) -> str:
        if match.group(1) not in fragments:
            raise ValueError(f"{source}: no fragment named {match.group(1)!r}")
        return fragments[match.group(1)]

    return {
        name: _outside_opaque(body, lambda part: _FRAGMENT_REF.sub(expand, part))
        for name, body in statements.items()
    }


@cache
def _all() -> dict[str, Statement]:
    queries: dict[str, Statement] = {}
    folder = resources.files("waypost.store") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in parse(entry.read_text(), entry.name).items():
                if name in queries:
                    raise ValueError(f"{entry.name}: query {name!r} is defined in two files")
                queries[name] = compile_named(name, body)
    return queries


def statement(name: str) -> Statement:
    """The compiled statement registered under ``name``."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no SQL statement named {name!r} in waypost/store/queries") from None


def query(name: str) -> str:
    """The text of a statement that takes no parameters."""
    found = statement(name)
    if found.params:
        raise TypeError(f"statement {name!r} takes {list(found.params)}: use bind()")
    return found.text


def bind(name: str, /, **values: Any) -> tuple[Any, ...]:
    """``(text, *args)`` for asyncpg: ``await db.fetch(*bind("get_run", run_id=x))``."""
    found = statement(name)
    return (found.text, *found.args(values))


def names() -> list[str]:
    return sorted(_all())
