"""The OpenAPI document served at /openapi.json matches the routes the app serves."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.factories import settings
from waypost.coordinator.app import ROUTES
from waypost.coordinator.openapi import SSE
from waypost.model.run import ErrorBody, Run, RunList
from waypost.model.task import TaskDefinition, TaskSpec
from waypost.standalone import Standalone
from waypost.store import tasks

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
async def stack(database_url: str, db: asyncpg.Pool) -> AsyncIterator[Standalone]:
    spec = TaskSpec.model_validate({"entrypoint": "examples.hello:hello"})
    await tasks.upsert(db, TaskDefinition(namespace="default", name="hello", spec=spec))
    app = await Standalone(settings(database_url), dispatch=False).start()
    try:
        yield app
    finally:
        await app.stop()


def served_app(stack: Standalone) -> web.Application:
    app = stack._runner.app
    assert isinstance(app, web.Application)
    return app


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method.upper(), route.resource.canonical))
    return routes


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert method in METHODS, f"{path}: {method} is not an HTTP method"
            yield method.upper(), path, op


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"unresolvable $ref {ref}"
        node = node[part]
    assert isinstance(node, dict)
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


async def fetch(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, json=body) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


def keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from keys(value)


async def test_openapi_lists_exactly_the_served_routes(stack: Standalone) -> None:
    status, doc = await fetch(f"{stack.url}/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    app = served_app(stack)
    documented = {(method, path) for method, path, _ in operations(doc)}
    served = served_routes(app)
    assert documented == served, (
        f"served but undocumented: {sorted(served - documented)}; "
        f"documented but not served: {sorted(documented - served)}")
    assert len(served) == len(app[ROUTES])


async def test_every_operation_documents_its_responses(stack: Standalone) -> None:
    _, doc = await fetch(f"{stack.url}/openapi.json")
    declared = {(r.method, r.path): r for r in served_app(stack)[ROUTES]}
    operation_ids = set()
    for method, path, op in operations(doc):
        route = declared[(method, path)]
        where = f"{method} {path}"
        assert op.get("summary"), where
        operation_ids.add(op["operationId"])
        responses = op["responses"]
        success = responses[str(route.status)]
        assert success["description"], where
        # 204 and 303 have no body (htmx follows HX-Redirect, a browser the Location).
        content = success.get("content", {})
        types = [route.content_type] if route.content_type != SSE else []
        if route.status in (204, 303):
            types = []
            assert route.status == 204 or success["headers"]["Location"]["required"], where
        assert list(content) == types + ([SSE] if route.events else []), where
        for media in content.values():
            assert "schema" in media, f"{where}: no response schema"
        if route.events:
            # Each event's data is the JSON of a documented model (OpenAPI 3.2's form).
            schema = content[SSE]["schema"]
            models = {resolve(doc, c["properties"]["data"]["contentSchema"]["$ref"])["title"]
                      for c in schema.get("oneOf", [schema])}
            assert models == {m.__name__ for m in route.events.values()}, where
        if route.response is not None:
            schema = content[route.content_type]["schema"]
            assert resolve(doc, schema["$ref"])["title"] == route.response.__name__, where
        if route.tag == "ui":
            # A page's errors are pages; without a session or token it sends the browser
            # to the login page.
            for code, answer in responses.items():
                if code == "default" or int(code) >= 400:
                    assert list(answer["content"]) == ["text/html"], (where, code)
            if route.auth.value == "user":
                assert responses["303"]["headers"]["Location"]["required"], where
                assert op["security"] == [{"apiToken": []}, {"uiSession": []}], where
        else:
            error = responses["default"]["content"]["application/json"]["schema"]
            assert resolve(doc, error["$ref"])["title"] == ErrorBody.__name__, where
        # Path parameters are declared, and only those.
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, where
        if route.body is not None:
            body = op["requestBody"]["content"]["application/json"]["schema"]
            assert resolve(doc, body["$ref"])["title"] == route.body.__name__, where
        if route.form is not None:
            # A posted form: its model's fields, never null (a form leaves a field out).
            form = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
            assert set(form["properties"]) == {
                f.alias or n for n, f in route.form.model_fields.items()}, where
            assert "null" not in json.dumps(form), where
        elif method == "POST" and route.tag == "ui":
            assert "requestBody" not in op, f"{where}: a form without a model"
        if route.auth.value != "none":
            assert op["security"], f"{where}: authenticated but no security requirement"
    assert len(operation_ids) == len(declared), "operationIds must be unique"
    # pydantic leaves a constraint it could not translate under its own name (ge, le):
    # JSON Schema ignores it, and the document would call out-of-range values valid.
    raw = [key for key in keys(doc) if key in ("ge", "le", "gt", "lt", "min_length")]
    assert not raw, raw
    for ref in set(refs(doc)):
        resolve(doc, ref)
    for scheme in ("apiToken", "attemptCredential"):
        assert doc["components"]["securitySchemes"][scheme]["scheme"] == "bearer"


async def test_a_body_is_required_exactly_when_no_body_is_refused(stack: Standalone) -> None:
    """requestBody.required says whether a request without a body is valid: reschedule
    needs one of delay and runAt (a oneOf, no required field), a trigger needs nothing."""
    _, doc = await fetch(f"{stack.url}/openapi.json")
    ops = {(method, path): op for method, path, op in operations(doc)}
    assert ops[("POST", "/v1/runs/{run_id}/reschedule")]["requestBody"]["required"] is True
    assert ops[("POST", "/v1/tasks/{namespace}/{task}/trigger")]["requestBody"][
        "required"] is False
    assert ops[("POST", "/v1/tokens/{token_id}/callback/{secret}")]["requestBody"][
        "required"] is False
    status, created = await fetch(f"{stack.url}/v1/tasks/default/hello/trigger", "POST",
                                  {"delay": 3600})
    assert status == 201, created
    status, refused = await fetch(f"{stack.url}/v1/runs/{created['id']}/reschedule", "POST")
    assert status == 400 and "delay" in refused["error"]["message"], refused
    # The trigger's rule (not both delay and runAt) is in the schema: one of them null
    # counts as absent, in the schema as in the code.
    trigger = resolve(doc, "#/components/schemas/TriggerRequest")
    assert trigger["not"]["required"] == ["delay", "runAt"]
    for body, code in (({"delay": None, "runAt": "2099-01-01T00:00:00Z"}, 201),
                       ({"delay": 5, "runAt": None}, 201),
                       ({"delay": 5, "runAt": "2099-01-01T00:00:00Z"}, 400)):
        status, _ = await fetch(f"{stack.url}/v1/tasks/default/hello/trigger", "POST", body)
        assert status == code, body


async def test_documented_schemas_match_real_answers(stack: Standalone) -> None:
    """Each documented path is really routed, and the user API answers as documented."""
    _, doc = await fetch(f"{stack.url}/openapi.json")
    for method, path, op in operations(doc):
        url = stack.url + path.format(namespace="default", task="hello", run_id=uuid.uuid4(),
                                      schedule="nightly", name="waypost.css",
                                      token_id=uuid.uuid4(), secret="not-the-secret")
        status, body = await fetch(url, method)
        # The UI's pages (tag "ui") answer errors as pages; tests/integration/test_ui.py.
        if status >= 400 and op["tags"] != ["ui"]:
            assert body is not None, f"{method} {path}: error without a JSON body"
            ErrorBody.model_validate(body)
            # Missing credentials or a missing run, never an unrouted path.
            assert body["error"]["code"] not in ("not_found", "method_not_allowed"), (
                method, path, body)

    status, created = await fetch(f"{stack.url}/v1/tasks/default/hello/trigger", "POST",
                                  {"payload": {"name": "doc"}})
    assert status == 201
    Run.model_validate(created)
    for path in (f"/v1/runs/{created['id']}", f"/v1/runs/{created['id']}/bump"):
        method = "POST" if path.endswith("bump") else "GET"
        status, body = await fetch(stack.url + path, method)
        assert status == 200
        Run.model_validate(body)
    for path in ("/v1/runs", "/v1/dead-letters"):
        status, body = await fetch(stack.url + path)
        assert status == 200
        RunList.model_validate(body)
