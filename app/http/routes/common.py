"""What the Flask views share: the services, the JSON body, JSON responses, what the OpenAPI
document says of each route (`documented`, `post_json`'s arguments), the recent call log's
recording (`call_logged`, and JsonBlueprint's by default), and JsonBlueprint, whose JSON POST
routes the fast path (http/fastpath.py) answers too, with the same handler."""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Blueprint, Response, current_app, request

from mlapi.errors import UnsupportedMediaType
from mlapi.http.pipeline import read_body
from mlapi.protocols.jsonio import dumps, parse_json
from mlapi.protocols.openapi import RouteDoc
from mlapi.protocols.validation import BodyDecoder


def services():
    """The app's Services (mlapi.services.build_services)."""
    return current_app.extensions["mlapi.services"]


def json_bytes() -> bytes:
    """The request's body, which must be JSON: 415 for another content type."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}: send a JSON body with "
            f"the header Content-Type: application/json (curl: -H 'Content-Type: application/json'; "
            f"Python requests: json=...)")
    # No body over MAX_REQUEST_BYTES gets here: the request pipeline refused it (http/pipeline.py).
    return read_body(request.get_data, cache=False)


def json_response(body: Any, status: int = 200) -> Response:
    # An answer may carry headers of its own (X-Cache: http/cache_headers.py).
    return Response(dumps(body), status=status, mimetype="application/json", headers=getattr(body, "headers", None))


def documented(answer: type | str | None, errors: tuple[int, ...] = (), **doc: Any) -> Callable:
    """Decorator of a view: what the OpenAPI document says about its route (protocols/openapi.py
    RouteDoc; the view's docstring gives the words)."""
    def decorator(view: Callable) -> Callable:
        view.route_doc = RouteDoc(answer, tuple(errors), **doc)
        return view
    return decorator


def call_logged(input_variable: str) -> Callable:
    """Decorator of a model route's Flask view that is not a JsonBlueprint route (predict by id):
    its successful answer goes to the caller's recent call log (serving/call_log.py), the input
    being the URL variable `input_variable`."""
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def logged(**params):
            response = view(**params)
            services().call_log.record(params[input_variable])
            return response
        return logged
    return decorator


class JsonBlueprint(Blueprint):
    """A Blueprint whose JSON POST routes are plain handlers: (services, decoded request,
    **URL variables) → a JSON-able answer. Each route names the codec's BodyDecoder its body is
    decoded with (whose Struct is also the route's request schema in the OpenAPI document), and
    is listed in `json_routes`, from which the app factory registers it on the fast path: one
    handler, two ways in, the same answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.json_routes: list[tuple[str, Callable]] = []

    def post_json(self, *rules: str, decode: BodyDecoder, answer: type, errors: tuple[int, ...] = (),
                  call_logged: bool = True, **doc: Any):
        """`call_logged`: a successful answer goes to the caller's recent call log
        (serving/call_log.py), under the model and version the inference core resolved; every
        model route by default, so a route added later is logged without anyone remembering to
        (a route that resolves no model logs nothing). Here, because this wrapper is the one
        place both ways in (the fast path, Flask) pass that holds the body."""
        def decorator(handler: Callable) -> Callable:
            @functools.wraps(handler)  # the fast path and its tests know it by the handler's name
            def run(services, body: dict, sent: bytes | None = None, **params):
                # sent: the body's bytes, which the call log cuts a long input from
                answer = handler(services, decode(body), **params)
                if call_logged:
                    services.call_log.record(body, sent)
                return answer

            def view(**params):
                sent = json_bytes()
                return json_response(run(services(), parse_json(sent), sent, **params))

            run.decode = decode
            view.__doc__ = handler.__doc__
            view.route_doc = RouteDoc(answer, tuple(errors), request=decode.schema, **doc)
            for rule in rules:
                self.add_url_rule(rule, handler.__name__, view, methods=["POST"])
                self.json_routes.append(((self.url_prefix or "") + rule, run))
            return handler
        return decorator
