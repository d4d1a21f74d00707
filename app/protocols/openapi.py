"""The OpenAPI 3.1 document, built from what the server really does.

Every route says what it is where it is declared (a RouteDoc: the Struct its body is decoded
with, the Struct of its answer, its error statuses; its docstring for the words), and
http/routes/openapi.py hands this module the app's routes as Flask knows them. Request schemas
are the very Structs the server validates with (protocols/request_bodies.py), so the document
cannot drift from the check; each served model's predict routes carry its own rows and an
example (protocols/model_schema.py). No Flask here: routes and models come in as plain values.
"""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec

from mlapi.protocols import response_bodies as answers
from mlapi.protocols.model_schema import predict_body
from mlapi.protocols.request_bodies import BatchData, CsrMatrix
from mlapi.protocols.validation import alternatives_of

REF = "#/components/schemas/{name}"

# Each error status: its response in components.responses, and when the server answers it.
ERRORS = {
    400: ("BadRequest", "The body is not JSON, or not of this route's shape; `error.message` says what to send."),
    401: ("Unauthorized", "A token is required: Authorization: Bearer <token>."),
    404: ("NotFound", "No such model, version, record or route; `error.message` lists what there is."),
    405: ("MethodNotAllowed", "Another method than this path takes; the Allow header lists them."),
    408: ("BodyNotReceived", "The body stopped arriving (a pause past the server's read timeout, or a closed "
                             "connection): send it whole."),
    413: ("PayloadTooLarge", "The body is larger than MAX_REQUEST_BYTES, or holds more rows than MAX_ROWS."),
    415: ("UnsupportedMediaType", "The Content-Type is not application/json."),
    422: ("InvalidInput", "Well-formed, but does not fit the model: `error.message` names the instance and "
                         "feature, and what the model expects."),
    503: ("Unavailable", "The model is not loaded, or a database does not answer: retry later."),
    504: ("RequestTimeout", "The request ran longer than REQUEST_TIMEOUT and was stopped."),
}
# What every JSON POST route may answer, whatever it does.
JSON_POST_ERRORS = (400, 405, 408, 413, 415)


@dataclass(frozen=True)
class RouteDoc:
    """What the document says about a route, declared with it (http/routes/common.py)."""

    answer: type | str | None             # the Struct of a 200 JSON answer, or a media type ("text/plain")
    errors: tuple[int, ...] = ()          # statuses answered with the error body
    request: type | None = None           # the Struct its JSON body is decoded with
    other_answers: dict[int, type] = field(default_factory=dict)  # non-error bodies of other statuses
    per_model: bool = False               # each served model's own rows (predict routes)
    tag: str = "models"


@dataclass(frozen=True)
class Route:
    method: str                           # "GET" or "POST"
    rule: str                             # the Flask rule: /models/<name>/predict
    doc: RouteDoc
    summary: str                          # the handler's docstring: first line, then the rest
    description: str = ""


@dataclass(frozen=True)
class ServedModelInfo:
    card: dict                            # serving/card.py's model_card
    default_version: bool                 # the version a request without one gets
    default_model: bool                   # the model /predict serves


_VARIABLE = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def build_document(routes: Iterable[Route], models: Iterable[ServedModelInfo], version: str) -> dict:
    routes, models = list(routes), list(models)
    components = _components(routes)
    # Path parameters show the default model as their example: "Try it out" starts from a request
    # that answers, and so do the tests generated from the document.
    default = next((m.card for m in models if m.default_model), None)
    examples = {} if default is None else {"name": default["name"], "version": str(default["version"])}
    paths: dict[str, dict] = {}
    app_operations, model_operations = [], []
    for route in routes:
        path = _VARIABLE.sub(r"{\1}", route.rule)
        operation = _operation(route, path, components)
        for parameter in operation.get("parameters", ()):
            if parameter["name"] in examples:
                parameter["example"] = examples[parameter["name"]]
        paths.setdefault(path, {})[route.method.lower()] = operation
        app_operations.append(operation)
        if route.doc.per_model:
            for path, operation in _per_model(route, models, components):
                paths.setdefault(path, {})[route.method.lower()] = operation
                model_operations.append(operation)
    # (the default model's /predict replaces the generic one: only what the document keeps counts)
    kept = {id(operation) for operations in paths.values() for operation in operations.values()}
    _unique_operation_ids([op for op in app_operations + model_operations if id(op) in kept])
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlapi", "version": version, "description": INFO},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components, "responses": _error_responses()},
    }


INFO = ("Serves scikit-learn models. Every error answers `{\"error\": {\"message\", \"status\"}}`, the "
        "message saying what to send instead. JSON bodies may write a missing value as null or NaN, "
        "and infinities as Infinity / -Infinity (what Python's json.dumps writes). Each served model's "
        "predict routes are listed with its own features and an example under its tag.")


def _components(routes: list[Route]) -> dict:
    types = {t for route in routes for t in (route.doc.request, route.doc.answer, *route.doc.other_answers.values())
             if isinstance(t, type)}
    types |= {answers.ErrorBody, CsrMatrix, BatchData}  # referenced by name from extra_json_schema too
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(ordered, ref_template=REF)
    for struct in _all_structs(ordered):
        rule = alternatives_of(struct)
        if rule is not None and struct.__name__ in components:
            combinator = "oneOf" if rule.exactly_one else "anyOf"
            components[struct.__name__][combinator] = [{"required": [key]} for key in rule.keys]
    return components


def _all_structs(types: list[type]) -> set[type]:
    """The Structs given and every Struct their fields name (where alternatives can be)."""
    seen: set[type] = set()
    todo = list(types)
    while todo:
        struct = todo.pop()
        if struct in seen or not isinstance(struct, type) or not issubclass(struct, msgspec.Struct):
            continue
        seen.add(struct)
        for info in msgspec.structs.fields(struct):
            todo.extend(_named_types(info.type))
    return seen


def _named_types(annotation: Any) -> list:
    """The annotation and everything inside it (Annotated, unions, list[...] arguments)."""
    found = [annotation]
    for argument in typing.get_args(annotation):
        found.extend(_named_types(argument))
    return found


def _operation(route: Route, path: str, components: dict) -> dict:
    doc = route.doc
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, path),
        "summary": route.summary,
        "tags": [doc.tag],
        "responses": _responses(route),
    }
    if route.description:
        operation["description"] = route.description
    parameters = [_path_parameter(name) for name in re.findall(r"{([^}]+)}", path)]
    if parameters:
        operation["parameters"] = parameters
    if doc.request is not None:
        body: dict[str, Any] = {"schema": {"$ref": REF.format(name=doc.request.__name__)}}
        example = getattr(doc.request, "example", None)
        if example is not None:
            body["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": body}}
    return operation


def _per_model(route: Route, models: list[ServedModelInfo], components: dict) -> list[tuple[str, dict]]:
    """The route once per served model, at its concrete path, with the model's own rows:
    /predict for the default model, /models/<name>/predict for each model's default version,
    /models/<name>/versions/<version>/predict for each version."""
    variables = set(_VARIABLE.findall(route.rule))
    out = []
    for model in models:
        card = model.card
        if variables == {"name"} and not model.default_version:
            continue
        if not variables and not model.default_model:
            continue
        path = route.rule.replace("<name>", card["name"]).replace("<version>", str(card["version"]))
        operation = _operation(route, path, components)
        schema, example = predict_body(components[route.doc.request.__name__], card)
        content = operation["requestBody"]["content"]["application/json"]
        content["schema"] = schema
        if example is not None:
            content["example"] = example
        else:
            content.pop("example", None)
        operation["summary"] = f"{route.summary} ({card['name']}:{card['version']})"
        operation["tags"] = [f"model {card['name']}"]
        operation.pop("parameters", None)
        out.append((path, operation))
    return out


def _responses(route: Route) -> dict:
    doc = route.doc
    responses: dict[str, Any] = {"200": _answer(doc.answer)}
    for status, struct in doc.other_answers.items():
        responses[str(status)] = _answer(struct, status)
    # Any request may outlast REQUEST_TIMEOUT (the request pipeline answers 504 for every route).
    errors = set(doc.errors) | {504} | (set(JSON_POST_ERRORS) if route.method == "POST" else {405})
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
    return responses


def _answer(answer: type | str | None, status: int = 200) -> dict:
    if isinstance(answer, str):
        return {"description": "OK", "content": {answer: {"schema": {"type": "string"}}}}
    if answer is None:
        return {"description": "OK"}
    description = (answer.__doc__ or "").strip().split("\n\n")[0] or ("OK" if status == 200 else str(status))
    return {"description": " ".join(description.split()),
            "content": {"application/json": {"schema": {"$ref": REF.format(name=answer.__name__)}}}}


def _error_responses() -> dict:
    responses = {}
    for status, (name, description) in ERRORS.items():
        responses[name] = {"description": description,
                           "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}}}
    responses["MethodNotAllowed"]["headers"] = {"Allow": {"schema": {"type": "string"},
                                                          "description": "The methods this path takes."}}
    return responses


_PARAMETERS = {
    "name": "A served model's name (GET /models lists them).",
    "version": "One of the model's versions (GET /models/{name} lists them).",
    "entity_id": "A record's id in the feature store.",
}


def _path_parameter(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": _PARAMETERS.get(name, name)}


def _operation_id(method: str, path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()} {path}").strip("_")


def _unique_operation_ids(operations: list[dict]) -> None:
    """A model named `name` (/models/name/predict beside /models/{name}/predict), or `a-b` beside
    `a_b`, would repeat an id, which OpenAPI forbids and code generators trip on. A repeat gets
    _2, _3, ... in a fixed order: the app's routes first, so their ids never depend on the models
    served, then the models' in the order MODELS lists them."""
    taken: set[str] = set()
    for operation in operations:
        base = candidate = operation["operationId"]
        count = 1
        while candidate in taken:
            count += 1
            candidate = f"{base}_{count}"
        operation["operationId"] = candidate
        taken.add(candidate)
