"""POST /admin/reload: every model read again from its URI and swapped in, on every worker (and,
with REDIS_URL, on every instance). Only with ADMIN_TOKEN: without it the route does not exist
(a 404 like any unknown URL). It is not in the OpenAPI document: /docs may be public, and an
admin route is nobody else's business.

The answer is 200 when every model reloaded; 503 when one or more did not, which go on serving
what they served before (serving/reload.py): a script's `curl --fail` notices, and the body
names what was swapped and what was kept, and why (in production the reason stays in the log).
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, request

from mlapi.errors import Forbidden, Unauthorized
from mlapi.http.auth import bearer_token, same_secret, secret_digest
from mlapi.http.callers import caller_of
from mlapi.http.routes.common import json_response, services
from mlapi.serving.reload import EXTENSION, Reloader

log = logging.getLogger(__name__)

blueprint = Blueprint("admin", __name__)


class AdminTokenRequired(Unauthorized):
    headers = (("WWW-Authenticate", 'Bearer realm="mlapi admin"'),)


def served(settings) -> bool:
    return bool(settings.admin_token)


@blueprint.post("/admin/reload")
def reload_models():
    settings = services().settings
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise AdminTokenRequired("POST /admin/reload needs Authorization: Bearer <ADMIN_TOKEN>")
    if not same_secret(token, current_app.extensions[ADMIN_DIGEST]):
        # The caller the pipeline computed (trusted proxy hops): behind Cloud Run, remote_addr is
        # its front end, the same for everyone.
        log.warning("POST /admin/reload refused: wrong admin token from %s", caller_of(request.environ))
        raise Forbidden("the admin token is not valid")
    outcome = current_app.extensions[EXTENSION].reload()
    return json_response(outcome.as_json(hide_reasons=settings.production), 200 if outcome.complete else 503)


ADMIN_DIGEST = "mlapi.admin_digest"


def register(app) -> None:
    """The route, and how it reloads until the server's master takes over (app/server/reloads.py
    install): in this very process (create_app without a server: tests, `flask run`)."""
    services_ = app.extensions["mlapi.services"]
    app.extensions[ADMIN_DIGEST] = secret_digest(services_.settings.admin_token)
    app.extensions.setdefault(EXTENSION, Reloader(services_, None))
    app.register_blueprint(blueprint)
