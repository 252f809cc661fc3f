"""The OpenAPI document, built from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, RootModel, TypeAdapter, ValidationError

from waypost.coordinator import auth
from waypost.coordinator.routes import Auth, Route
from waypost.model import inputs
from waypost.model.run import ErrorBody

_PARAM = re.compile(r"\{([a-z_]+)\}")


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(kind: type[Any]) -> TypeAdapter[Any]:
    """pydantic's validator and schema of a body or answer type (a model or a
    runner-protocol dataclass), built once per type."""
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def _json_values(node: Any) -> Any:
    """The schema with every marked JSON value replaced by a reference to JsonValue."""
    if isinstance(node, dict):
        if node.get(inputs.JSON_VALUE_MARKER):
            rest = {k: v for k, v in node.items() if k != inputs.JSON_VALUE_MARKER}
            return {"allOf": [{"$ref": inputs.JSON_VALUE_REF}], **rest}
        return {k: _json_values(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_values(v) for v in node]
    return node


def _schema_ref(model: type[Any], components: dict[str, Any]) -> dict[str, Any]:
    schema = _json_values(adapter(model).json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"))
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


_ERRORS = {
    400: "Invalid input; the message names the field",
    401: "Missing or invalid credentials",
    404: "No such run, task or schedule",
    405: "Method not allowed; the Allow header lists the allowed ones",
    409: "The run's state or the idempotency key does not allow this",
    413: "A body or a value over its documented limit",
    414: "The URL is over 8 KiB",
    415: "A Content-Encoding, or a Content-Type the operation does not take",
    422: "A form field's JSON text is not JSON, or not JSON the API takes",
    431: "A request header is over 8 KiB",
    500: "An unexpected failure; its error id is in the server's log",
    503: "The database is unavailable (or, for /readyz, the process is not ready)",
}
_NAME = {"type": "string", "minLength": 1, "maxLength": inputs.MAX_NAME_LENGTH,
         "pattern": inputs.NO_NUL_PATTERN}
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {"run_id": {"type": "string", "format": "uuid"},
                                             "token_id": {"type": "string", "format": "uuid"}}
_STATELESS = {"/healthz", "/openapi.json"}


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema from its model field: never null (absent instead)."""
    prop = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
    choices = [c for c in prop.pop("anyOf", []) if c.get("type") != "null"]
    if len(choices) == 1:
        prop.update(choices[0])
    elif choices:
        prop["anyOf"] = choices
    return prop


def _form_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A posted form's schema: an object of text fields, each never null (a form leaves
    a field out instead), repeated fields as arrays."""
    schema = _json_values(model.model_json_schema(by_alias=True))
    out: dict[str, Any] = {"type": "object", "properties": {
        name: _query_schema(prop) for name, prop in schema["properties"].items()}}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def _error_statuses(route: Route, has_params: bool) -> list[int]:
    codes = [405, 414, 431, 500]
    if has_params or route.body is not None or route.query is not None or route.form:
        codes.append(400)
    if route.auth is not Auth.NONE:
        codes.append(401)
    if _PARAM.search(route.path):
        codes.append(404)
    if route.method == "POST":
        codes += [409, 413, 415]
    if route.form is not None and any(
            prop.get("contentMediaType") == "application/json"
            for prop in _form_schema(route.form)["properties"].values()):
        codes.append(422)  # JSON text that is not JSON: the schema only annotates it
    if route.path not in _STATELESS:
        codes.append(503)
    return sorted(codes)


SSE = "text/event-stream"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
_LOCATION = {"required": True, "schema": {"type": "string"}}
EVENT_ID_PATTERN = "^[0-9]+-[0-9]+$"


def _events_schema(events: dict[str, type[Any]], components: dict[str, Any]) -> dict[str, Any]:
    """The schema of each server-sent event, as OpenAPI 3.2 and schemathesis read a
    text/event-stream schema: an object of the event's fields, whose ``data`` is JSON
    text of the model named for its event."""
    by_model: dict[type[Any], list[str]] = {}
    for name, model in events.items():
        by_model.setdefault(model, []).append(name)
    choices = [{
        "type": "object", "required": ["event", "data"],
        "properties": {
            "event": {"enum": names},
            "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
            "retry": {"type": "integer", "minimum": 0},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": _schema_ref(model, components)},
        },
    } for model, names in by_model.items()]
    return choices[0] if len(choices) == 1 else {"oneOf": choices}


def _body_required(model: type[Any]) -> bool:
    """Whether a body must be sent: when what a missing body reads as is invalid ({}
    for an object, null for a root model's any-value body). A required field makes
    it so, and so does a rule over fields (reschedule: exactly one of two)."""
    empty: Any = None if isinstance(model, type) and issubclass(model, RootModel) else {}
    try:
        adapter(model).validate_python(empty)
    except ValidationError:
        return True
    return False


def build(routes: list[Route], version: str) -> dict[str, Any]:
    components: dict[str, Any] = {"JsonValue": inputs.json_value_schema()}
    error_ref = _schema_ref(ErrorBody, components)
    json_error = {"content": {"application/json": {"schema": error_ref}}}
    # The UI's pages answer errors as pages that say what was wrong.
    html_error = {"content": {HTML: {"schema": {"type": "string"}}}}
    paths: dict[str, Any] = {}
    for route in routes:
        ui = route.tag == "ui"
        error = html_error if ui else json_error
        content: dict[str, Any] = {}
        if route.status in (204, 303):
            pass  # no body: htmx follows HX-Redirect, a browser the Location
        elif route.content_type != SSE:
            content[route.content_type] = {
                "schema": _schema_ref(route.response, components) if route.response else {}}
        if route.events:
            content[SSE] = {"schema": _events_schema(route.events, components)}
        ok: dict[str, Any] = {"content": content} if content else {}
        if route.status == 303:
            ok["headers"] = {"Location": _LOCATION}
        responses: dict[str, Any] = {str(route.status): {"description": "OK", **ok}}
        if ui and route.auth is Auth.USER:
            responses["303"] = {"description": "No session (and no API token): the login "
                                "page, which comes back here after the login",
                                "headers": {"Location": _LOCATION}}
        for extra in route.also:
            responses[str(extra)] = {"description": "OK", **ok}
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True,
             "schema": _PATH_SCHEMAS.get(name, _NAME)}
            for name in _PARAM.findall(route.path)
        ]
        if isinstance(route.query, dict):
            params += [
                {"name": name, "in": "query", "required": False, "description": text,
                 "schema": {"type": "string"}}
                for name, text in route.query.items()
            ]
        elif route.query is not None:
            query_schema = route.query.model_json_schema(by_alias=True)
            params += [
                {"name": name, "in": "query", "required": False,
                 "description": prop.get("description", ""), "schema": _query_schema(prop)}
                for name, prop in query_schema["properties"].items()
            ]
        for code in _error_statuses(route, bool(params)):
            responses.setdefault(str(code), {"description": _ERRORS[code], **error})
        responses["default"] = {"description": "Error", **error}
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "tags": [route.tag],
            "responses": responses,
        }
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": _body_required(route.body), "content": {
                "application/json": {"schema": _schema_ref(route.body, components)}}}
        if route.form is not None:
            op["requestBody"] = {"required": _body_required(route.form), "content": {
                FORM: {"schema": _form_schema(route.form)}}}
        if route.auth is Auth.USER and ui:
            op["security"] = [{"apiToken": []}, {"uiSession": []}]
        elif route.auth is Auth.USER:
            op["security"] = [{"apiToken": []}]
        elif route.auth is Auth.ATTEMPT:
            op["security"] = [{"attemptCredential": []}]
        elif route.auth is Auth.RUNNER:
            op["security"] = [{"runnerCredential": []}]
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
                "runnerCredential": {"type": "http", "scheme": "bearer",
                                     "description": "A warm runner's own credential."},
                "uiSession": {"type": "apiKey", "in": "cookie", "name": auth.COOKIE,
                              "description": "The UI's session, set by POST /login; a "
                              "change made with it needs the HX-Request: true header."},
            },
        },
    }
