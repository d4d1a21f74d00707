"""build_services(settings): the objects the server and the CLI commands work with, built one way.

Nothing here touches HTTP: the app factory (mlapi.create_app) puts these behind routes, and
commands such as bulk scoring use them directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from mlapi.batch.pubsub import BatchInference
    from mlapi.config import Settings
    from mlapi.naming import ModelSpec
    from mlapi.serving.call_log import CallLog
    from mlapi.serving.inference import InferenceService
    from mlapi.serving.registry import ModelRegistry
    from mlapi.store.feature_store import FeatureStore
    from mlapi.store.predictions import PredictionStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: ModelRegistry
    inference: InferenceService
    feature_store: FeatureStore
    predictions: PredictionStore
    batch: BatchInference
    call_log: CallLog


def build_services(settings: Settings, models: Iterable[ModelSpec] | None = None) -> Services:
    """Load the models (all of settings.models unless `models` says which) and wire the stores.

    Database engines are created lazily, in the process that first needs them: a connection
    pool must never be shared across the server's fork().
    """
    # Imported here: `mlapi serve` and the data commands import this package without paying
    # for scikit-learn and SQLAlchemy before they need them.
    from mlapi.batch.pubsub import BatchInference
    from mlapi.serving.cache import build_prediction_cache
    from mlapi.serving.call_log import build_call_log
    from mlapi.serving.inference import InferenceService
    from mlapi.serving.loading import load_model
    from mlapi.serving.registry import ModelRegistry
    from mlapi.store.feature_store import FeatureStore
    from mlapi.store.predictions import PredictionStore

    registry = ModelRegistry.load(settings.models if models is None else models,
                                  partial(load_model, settings=settings))
    registry.hide_load_reasons = settings.production
    feature_store = FeatureStore(settings.feature_store_url, settings.feature_table,
                                 settings.feature_id_column, settings.feature_text_column)
    inference = InferenceService(registry, build_prediction_cache(settings), feature_store,
                                 settings.max_batch_size, settings.max_batch_wait_ms, settings.max_rows,
                                 settings.cache_routes)
    predictions = PredictionStore(settings.predictions_db_url)
    return Services(settings, registry, inference, feature_store, predictions,
                    BatchInference(inference, predictions), build_call_log(settings))
