"""The OpenAPI document, built from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter

from waypost.coordinator.routes import Auth, Route
from waypost.model.run import ErrorBody

_PARAM = re.compile(r"\{([a-z_]+)\}")


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(kind: type[Any]) -> TypeAdapter[Any]:
    """pydantic's validator and schema of a body or answer type (a model or a
    runner-protocol dataclass), built once per type."""
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def _schema_ref(model: type[Any], components: dict[str, Any]) -> dict[str, Any]:
    schema = adapter(model).json_schema(by_alias=True,
                                        ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation_id(route: Route) -> str:
    """The handler's name; a module's generic ``handler`` is named after its module,
    so that operationIds stay unique (metrics, dashboard)."""
    name = route.handler.__name__
    if name == "handler":
        return str(route.handler.__module__).rsplit(".", 1)[-1]
    return name


def build(routes: list[Route], version: str) -> dict[str, Any]:
    components: dict[str, Any] = {}
    error_ref = _schema_ref(ErrorBody, components)
    paths: dict[str, Any] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "tags": [route.tag],
            "responses": {
                str(route.status): {
                    "description": "OK",
                    "content": {route.content_type: {
                        "schema": _schema_ref(route.response, components)
                        if route.response else {}}},
                },
                "default": {"description": "Error",
                            "content": {"application/json": {"schema": error_ref}}},
            },
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "description": text,
             "schema": {"type": "string"}}
            for name, text in route.query.items()
        ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema_ref(route.body, components)}}}
        if route.auth is Auth.USER:
            op["security"] = [{"apiToken": []}]
        elif route.auth is Auth.ATTEMPT:
            op["security"] = [{"attemptCredential": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "waypost coordinator API", "version": version,
                 "description": "Trigger and inspect runs; the runner protocol."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer",
                             "description": "The API token (WAYPOST_API_TOKEN)."},
                "attemptCredential": {"type": "http", "scheme": "bearer",
                                      "description": "The credential of one attempt."},
            },
        },
    }
