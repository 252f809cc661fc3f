"""The store's query loader: named parameters compiled to $n, fragments expanded."""

from __future__ import annotations

import re

import pytest

from waypost.store import sql


def test_named_parameters_become_numbered_in_order_of_first_use() -> None:
    s = sql.compile_named("q", "SELECT :b, :a::int, :b FROM t WHERE x = :a")
    assert s.text == "SELECT $1, $2::int, $1 FROM t WHERE x = $2"
    assert s.params == ("b", "a")
    assert s.args({"a": 1, "b": 2}) == (2, 1)


def test_casts_literals_identifiers_and_comments_are_left_alone() -> None:
    text = (
        "SELECT :x::jsonb, now()::date, ':not_a_param', 'it''s :still_not',\n"
        "       \"col:umn\", '{}'::text[] -- :comment_word\n"
        "FROM t WHERE y = :y"
    )
    s = sql.compile_named("q", text)
    assert s.params == ("x", "y")
    assert s.text == (
        "SELECT $1::jsonb, now()::date, ':not_a_param', 'it''s :still_not',\n"
        "       \"col:umn\", '{}'::text[] -- :comment_word\n"
        "FROM t WHERE y = $2"
    )


def test_positional_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="mixes a positional"):
        sql.compile_named("q", "SELECT :a, $2")


def test_bind_refuses_missing_and_unknown_names() -> None:
    s = sql.compile_named("q", "SELECT :a, :b")
    with pytest.raises(TypeError, match=r"missing \['b'\], unknown \['c'\]"):
        s.args({"a": 1, "c": 3})


def test_fragments_are_expanded_without_their_comments() -> None:
    parsed = sql.parse(
        "-- fragment: cols\n-- why these columns\nr.a, r.b\n\n"
        "-- name: one\n-- purpose\nSELECT {cols} FROM t r WHERE r.id = :id;\n"
    )
    assert parsed == {"one": "-- purpose\nSELECT r.a, r.b FROM t r WHERE r.id = :id"}
    with pytest.raises(ValueError, match="no fragment named 'nope'"):
        sql.parse("-- name: one\nSELECT {nope}")
    with pytest.raises(ValueError, match="defined twice"):
        sql.parse("-- name: one\nSELECT 1;\n-- fragment: one\nx")


def test_every_shipped_statement_is_named_and_fully_compiled() -> None:
    for name in sql.names():
        s = sql.statement(name)
        code = re.sub(r"'(?:[^']|'')*'|--[^\n]*", "", s.text)
        assert not re.search(r"(?<![:\w]):[a-z_]", code), (name, s.text)
        assert "{" not in code.replace("'{}'", ""), (name, "unexpanded fragment")
        used = sorted({int(n) for n in re.findall(r"\$(\d+)", code)})
        assert used == list(range(1, len(s.params) + 1)), (name, used, s.params)


def test_query_refuses_a_statement_with_parameters() -> None:
    assert sql.query("status_counts").startswith("SELECT")
    with pytest.raises(TypeError, match="use bind"):
        sql.query("get_run")
