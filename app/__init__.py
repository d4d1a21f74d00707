"""mlapi: serve scikit-learn models over HTTP.

create_app() is wiring only: settings → services (models, stores, the inference core) → the
request pipeline around the fast path and Flask → routes and error handlers.
Every test calls it; app/wsgi.py calls it once for uWSGI, gunicorn and granian.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from mlapi.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    # Imported here, not at the top: `mlapi serve` and the data commands import this package
    # too, and must not pay for Flask and scikit-learn before they exec the server or do work
    # that needs neither.
    from flask import Flask

    from mlapi.config import Settings
    from mlapi.http.callers import build_callers
    from mlapi.http.fastpath import FastPath
    from mlapi.http.pipeline import RequestPipeline
    from mlapi.http.push_auth import guard_push
    from mlapi.http.rate_limit import build_rate_limits
    from mlapi.http.routes import register_routes
    from mlapi.logs import configure_logging
    from mlapi.services import build_services

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format, settings.google_cloud_project)
    app = Flask(__name__)
    services = build_services(settings)
    app.extensions["mlapi.services"] = services
    fast = FastPath(app.wsgi_app, services)
    register_routes(app, fast)
    # Outermost: what every request shares (who calls and whether they may: API keys, rate
    # limits; the body limit, MAX_REQUEST_BYTES, included: no layer inside sees a larger body),
    # then the push token check (PUSH_AUTH), then the fast path, then Flask.
    app.wsgi_app = RequestPipeline(guard_push(fast, settings), settings.access_log,
                                   settings.max_request_bytes, settings.request_timeout_seconds,
                                   build_callers(settings), build_rate_limits(settings))
    return app
