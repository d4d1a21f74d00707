"""mlapi: serve scikit-learn models over HTTP.

create_app() is wiring only: settings → models → cache → inference service → routes.
Every test calls it; app/wsgi.py calls it once for uWSGI and gunicorn.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from mlapi.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    # Imported here, not at the top: `mlapi serve`, `mlapi features ...` and bulk scoring
    # import this package too, and must not pay for Flask, scikit-learn and the database
    # layer before they exec the server or do work that needs none of them.
    from flask import Flask

    from mlapi.batch.pubsub import BatchInference
    from mlapi.http.fastpath import FastPredict
    from mlapi.serving.cache import PredictionCache
    from mlapi.config import Settings
    from mlapi.store.feature_store import FeatureStore
    from mlapi.serving.inference import InferenceService
    from mlapi.logs import configure_logging
    from mlapi.serving.model import load_model
    from mlapi.store.predictions import PredictionStore
    from mlapi.serving.registry import ModelRegistry

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format, settings.google_cloud_project)
    app = Flask(__name__)
    # Flask refuses larger bodies with 413 before anything reads them.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    registry = ModelRegistry.load(settings.models, partial(load_model, settings=settings))
    # Database engines are created lazily, in the worker that first needs them: a
    # connection pool must never be shared across the server's fork().
    store = FeatureStore(settings.feature_store_url, settings.feature_table,
                         settings.feature_id_column, settings.feature_text_column)
    inference = InferenceService(registry, PredictionCache(settings.prediction_cache_size), store,
                                 settings.max_batch_size, settings.max_batch_wait_ms)
    predictions = PredictionStore(settings.predictions_db_url)
    app.extensions["mlapi.settings"] = settings
    app.extensions["mlapi.inference"] = inference
    app.extensions["mlapi.predictions"] = predictions
    app.extensions["mlapi.batch"] = BatchInference(inference, predictions)

    from mlapi.http.routes import register_routes

    register_routes(app)
    # The predict routes' happy path, answered below Flask (app/fastpath.py); the rest and
    # every error still go through Flask, and so does everything when each request is logged
    # (the access log has one implementation, in Flask's hooks).
    if not settings.access_log:
        predict_rules = [rule.rule for rule in app.url_map.iter_rules("native.predict")]
        app.wsgi_app = FastPredict(app.wsgi_app, inference, settings.max_request_bytes, predict_rules)
    return app
