"""GET /openapi.json (the OpenAPI 3.1 document) and GET /docs (Swagger UI, an API explorer).

The document is built once per process from the app's own routes (each declares its RouteDoc,
http/routes/common.py) and the served models' cards (serving/card.py), by protocols/openapi.py.
Swagger UI's files come from a PyPI package (flask-swagger-ui, which tracks Swagger UI's
releases) and are served from here: the page loads nothing
from another host, so it works offline and inside a private network.

API_DOCS=off leaves both routes out (404). API_DOCS_TOKEN protects them: "Authorization: Bearer
<token>" for a program, or HTTP Basic with the token as the password, which a browser asks for.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, redirect, request, send_from_directory

from mlapi import __version__
from mlapi.errors import Unauthorized
from mlapi.http.auth import authorized
from mlapi.http.errors import error_response
from mlapi.http.routes.common import json_response, services
from mlapi.protocols.openapi import Route, ServedModelInfo, build_document

blueprint = Blueprint("openapi", __name__)

DOCUMENT_KEY = "mlapi.openapi"
# Swagger UI's files this page uses; anything else under /docs/ is a 404.
ASSETS = ("swagger-ui.css", "index.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
# Long enough for a browser to keep them across visits; the page itself is not cached.
ASSET_MAX_AGE = 24 * 3600

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>mlapi {version}: API explorer</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""

# Relative URLs throughout (the page is /docs): the explorer works behind a proxy that serves
# the API under a path prefix. validatorUrl null: Swagger UI would otherwise send the document
# to an online validator.
INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true,
  defaultModelsExpandDepth: 0,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


def register(app: Flask) -> None:
    """The routes, unless API_DOCS=off."""
    if app.extensions["mlapi.services"].settings.api_docs:
        app.register_blueprint(blueprint)


@blueprint.before_request
def require_token():
    token = services().settings.api_docs_token
    if token and not authorized(request.headers.get("Authorization", ""), token, basic=True):
        status, body, _ = error_response(Unauthorized(
            "the API docs need the API_DOCS_TOKEN: send Authorization: Bearer <token>, or open /docs in a "
            "browser and give the token as the password"))
        response = json_response(body, status)
        response.headers["WWW-Authenticate"] = 'Basic realm="mlapi API docs", charset="UTF-8"'
        return response
    return None


@blueprint.get("/openapi.json")
def openapi_document():
    document = current_app.extensions.get(DOCUMENT_KEY)
    if document is None:  # built on first request: models do not change while the process runs
        document = current_app.extensions[DOCUMENT_KEY] = build_document(
            app_routes(current_app), served_models(), __version__)
    return json_response(document)


@blueprint.get("/docs")
def swagger_ui():
    response = Response(PAGE.format(version=__version__), mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/docs/")
def swagger_ui_slash():
    # The page's URLs are relative to /docs: from /docs/ they would miss. Relative, for a proxy's prefix.
    return redirect("../docs", code=308)


@blueprint.get("/docs/init.js")
def swagger_ui_init():
    return Response(INIT, mimetype="text/javascript")


@blueprint.get("/docs/<asset>")
def swagger_ui_asset(asset: str):
    if asset not in ASSETS:
        from werkzeug.exceptions import NotFound

        raise NotFound()
    return send_from_directory(swagger_ui_dir(), asset, max_age=ASSET_MAX_AGE)


def swagger_ui_dir() -> Path:
    """Where the installed Swagger UI keeps its built files: flask-swagger-ui's dist/, a copy of
    Swagger UI's own release (only its files are used, not its blueprint)."""
    import flask_swagger_ui  # imported on the first asset request: the server never needs it before

    return Path(flask_swagger_ui.__file__).parent / "dist"


# ---- what the document is built from ---------------------------------------------------------
def app_routes(app: Flask) -> list[Route]:
    """Every route the app answers that declares a RouteDoc (all but the docs' own), per method."""
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        doc = getattr(view, "route_doc", None)
        if doc is None:
            continue
        summary, _, description = (view.__doc__ or rule.endpoint).strip().partition("\n\n")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append(Route(method, rule.rule, doc, " ".join(summary.split()), " ".join(description.split())))
    return routes


def served_models() -> list[ServedModelInfo]:
    from mlapi.serving.card import model_card

    registry = services().inference.registry
    return [ServedModelInfo(model_card(model), model.version == registry.default_version(model.name),
                            model.name == registry.default_model
                            and model.version == registry.default_version(model.name))
            for model in registry.models()]
