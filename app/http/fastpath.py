"""JSON POST routes answered below Flask: the hot routes without Flask's per-request machinery.

Flask's request and response objects, URL map, contexts and hooks cost about 50 µs of CPU per
request (its no-op route serves ~14,000 req/s here where raw uWSGI serves ~25,000), as much as
the model itself for a one-row logistic regression. So any protocol adapter can register a JSON
route here (`FastPath.add`, with the same handler its Flask view calls): a request whose
method, URL and content type fit, with a body of a known length, is answered here, errors
included (http/errors.error_response, the function Flask's handlers use), and runs exactly once.
Anything else (other routes and methods, another content type, a missing or empty body) goes
to Flask untouched, which answers it as it always has.

What every request shares (request id, log context, metrics, access log, the body limit) is
not here but in the pipeline around both (http/pipeline.py): no body over MAX_REQUEST_BYTES
gets this far.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from mlapi.http.errors import error_response, log_error, start_json
from mlapi.http.pipeline import ROUTE_KEY, read_body
from mlapi.protocols.jsonio import dumps, parse_json

# A Flask rule's variable with the default converter: one path segment, anything but a slash.
_VARIABLE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")

# (services, decoded JSON body, URL variables) → a JSON-able answer; raises for errors.
JsonHandler = Callable[..., Any]


def rule_pattern(rule: str) -> re.Pattern:
    """A Flask rule string → the regex of exactly the URLs Flask routes to it."""
    parts = _VARIABLE.split(rule)  # literal, name, literal, name, ..., literal
    if any("<" in literal or ">" in literal for literal in parts[::2]):
        raise ValueError(f"{rule!r}: only <name> variables (the default converter) are supported")
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                              for i, part in enumerate(parts)))


class FastPath:
    """WSGI middleware in front of the Flask app, inside the request pipeline."""

    def __init__(self, flask_wsgi: Callable, services: Any):
        self.flask_wsgi = flask_wsgi
        self.services = services
        self.routes: list[tuple[re.Pattern, str, JsonHandler]] = []

    def add(self, rule: str, handler: JsonHandler) -> None:
        """Answer POST `rule` (a Flask rule string, also the metrics label) with `handler`."""
        self.routes.append((rule_pattern(rule), rule, handler))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        route = self._route(environ)
        if route is None:
            return self.flask_wsgi(environ, start_response)
        rule, params, handler, length = route
        environ[ROUTE_KEY] = rule
        try:
            sent = read_body(environ["wsgi.input"].read, length)
            answer = handler(self.services, parse_json(sent), sent, **params)
            body = dumps(answer)
            status, headers = 200, getattr(answer, "headers", ())  # X-Cache: http/cache_headers.py
        except Exception as exc:
            log_error(exc, "POST", environ.get("PATH_INFO", ""))
            status, error, headers = error_response(exc)
            body = dumps(error)
        start_json(start_response, status, body, headers)
        return [body]

    def _route(self, environ: dict):
        if environ.get("REQUEST_METHOD") != "POST" or not self.routes:
            return None
        path = environ.get("PATH_INFO", "")
        for pattern, rule, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is not None:
                break
        else:
            return None
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        length = _length(environ)
        if content_type != "application/json" or length <= 0:
            return None
        return rule, match.groupdict(), handler, length


def _length(environ: dict) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0
