"""The one business flow, with no HTTP in it: (model ref, input) → cache → model → result.

Routes for every protocol call these methods with decoded, plain-Python input and encode what
comes back; so a behaviour (validation, caching, error statuses) is the same on every route.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mlapi import metrics
from mlapi.serving.batching import MicroBatcher
from mlapi.serving.cache import MISSING, PredictionCache, cache_key
from mlapi.errors import InvalidInput, RecordNotFound
from mlapi.store.feature_store import FeatureStore
from mlapi.serving.inputs import to_feature_matrix, to_model_input
from mlapi.serving.model import TEXT, PredictionResult, ServedModel
from mlapi.serving.records import record_to_instance
from mlapi.serving.registry import ModelRegistry


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for; None means the default model / its default version."""

    name: str | None = None
    version: str | None = None


@dataclass
class Cached:
    value: Any
    from_cache: bool


@dataclass
class RecordPredictions:
    """Predictions for the records that could be scored; the others with their reasons."""

    model: ServedModel
    ids: list[str]
    data: list[Any]
    result: PredictionResult | None
    failures: dict[str, str]     # entity id → why it cannot be scored (permanent)


class InferenceService:
    def __init__(self, registry: ModelRegistry, cache: PredictionCache, store: FeatureStore | None = None,
                 max_batch_size: int = 0, max_batch_wait_ms: float = 0.0):
        self.registry = registry
        self.cache = cache
        self.store = store
        self._batch_rows = max_batch_size
        self._batch_wait_s = max_batch_wait_ms / 1000
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._batchers_lock = threading.Lock()

    def model(self, ref: ModelRef) -> ServedModel:
        model = self.registry.get(ref.name, ref.version)
        metrics.note_model(model.name, model.version)
        return model

    # ---- batch operations: instances in, one model call ---------------------------------
    def predict(self, ref: ModelRef, instances: Any, probabilities: bool | None = None):
        model = self.model(ref)
        model_input = to_model_input(model, instances)  # validated alone: a bad request fails alone
        if self._batch_rows > 1:
            return model, self._batcher(model).predict(model_input, probabilities)
        return model, model.predict(model_input, probabilities)

    def _batcher(self, model: ServedModel) -> MicroBatcher:
        key = (model.name, model.version)
        batcher = self._batchers.get(key)
        if batcher is None:
            with self._batchers_lock:
                batcher = self._batchers.setdefault(
                    key, MicroBatcher(model.predict, self._batch_rows, self._batch_wait_s))
        return batcher

    def features(self, ref: ModelRef, instances: Any):
        model = self.model(ref)
        return model, model.features(to_model_input(model, instances))

    def predict_features(self, ref: ModelRef, features: Any, probabilities: bool | None = None):
        model = self.model(ref)
        return model, model.predict_features(to_feature_matrix(model, features), probabilities)

    # ---- by id: the features come from the online store ----------------------------------
    def predict_id(self, ref: ModelRef, entity_id: str) -> RecordPredictions:
        """One record: unknown id → 404, a record the model cannot use → 422."""
        model = self.model(ref)
        record = self._store().lookup([entity_id]).get(entity_id)
        if record is None:
            raise RecordNotFound(f"no record with id {entity_id!r} in the feature store", id=entity_id)
        instance, data = self._instance(model, entity_id, record)
        result = model.predict(to_model_input(model, [instance]))
        return RecordPredictions(model, [entity_id], [data], result, {})

    def predict_ids(self, ref: ModelRef, entity_ids: list[str]) -> RecordPredictions:
        """Many records in one model call; unknown ids and unusable records are reported per id
        (batch inference stores them as failures instead of failing the whole message)."""
        model = self.model(ref)
        records = self._store().lookup(entity_ids)
        failures: dict[str, str] = {}
        ids, instances, data = [], [], []
        for entity_id in dict.fromkeys(entity_ids):  # a repeated id is scored once
            record = records.get(entity_id)
            if record is None:
                failures[entity_id] = f"no record with id {entity_id!r} in the feature store"
                continue
            try:
                instance, shown = self._instance(model, entity_id, record)
            except InvalidInput as exc:
                failures[entity_id] = exc.message
                continue
            ids.append(entity_id)
            instances.append(instance)
            data.append(shown)
        if not ids:
            return RecordPredictions(model, [], [], None, failures)
        try:
            result = model.predict(to_model_input(model, instances))
        except InvalidInput:
            # One record the model rejects must not fail the others: score them one by one.
            return self._predict_each(model, ids, instances, data, failures)
        return RecordPredictions(model, ids, data, result, failures)

    def _predict_each(self, model, ids, instances, data, failures) -> RecordPredictions:
        kept_ids, kept_data, results = [], [], []
        for entity_id, instance, shown in zip(ids, instances, data):
            try:
                results.append(model.predict(to_model_input(model, [instance])))
            except InvalidInput as exc:
                failures[entity_id] = exc.message
                continue
            kept_ids.append(entity_id)
            kept_data.append(shown)
        if not results:
            return RecordPredictions(model, [], [], None, failures)
        merged = PredictionResult([r.predictions[0] for r in results],
                                  None if results[0].probabilities is None else [r.probabilities[0] for r in results],
                                  results[0].classes)
        return RecordPredictions(model, kept_ids, kept_data, merged, failures)

    def _instance(self, model: ServedModel, entity_id: str, record: dict):
        store = self._store()
        return record_to_instance(model, entity_id, record, store.text_column, store.feature_columns)

    def _store(self) -> FeatureStore:
        if self.store is None:
            raise RecordNotFound("no feature store is configured (FEATURE_STORE_URL)")
        return self.store

    # ---- single-input operations with the prediction cache (seed 002's routes) ----------
    def text_to_features(self, ref: ModelRef, text: str, skip_cache: bool = False):
        model = self._text_model(ref)
        return model, self._cached(model, "text_to_features", text, skip_cache,
                                   lambda: dense_row(model.features([text])))

    def features_to_prediction(self, ref: ModelRef, features: list, skip_cache: bool = False):
        model = self.model(ref)
        if not isinstance(features, list) or (features and isinstance(features[0], list)):
            raise InvalidInput("features must be one flat list of numbers")
        return model, self._cached(model, "features_to_prediction", features, skip_cache,
                                   lambda: model.predict_features(to_feature_matrix(model, [features]), True))

    def text_to_prediction(self, ref: ModelRef, text: str, skip_cache: bool = False):
        model = self._text_model(ref)
        return model, self._cached(model, "text_to_prediction", text, skip_cache,
                                   lambda: model.predict([text], True))

    def _text_model(self, ref: ModelRef) -> ServedModel:
        model = self.model(ref)
        if model.input_kind != TEXT:
            raise InvalidInput(f"model {model.name}:{model.version} takes tabular features, not text; "
                               f"use features_to_prediction or POST /models/{model.name}/predict")
        return model

    def _cached(self, model: ServedModel, operation: str, payload: Any, skip_cache: bool, compute) -> Cached:
        key = cache_key(model.name, model.version, model.metadata.get("sha256"), operation, payload)
        if not skip_cache:
            value = self.cache.get(key)
            metrics.record_cache(value is not MISSING)
            if value is not MISSING:
                return Cached(value, True)
        value = compute()
        self.cache.put(key, value)
        return Cached(value, False)


def dense_row(matrix) -> list[float]:
    """The first row of a (possibly sparse) feature matrix as a plain list."""
    if sparse.issparse(matrix):
        matrix = matrix[:1].toarray()
    return np.asarray(matrix, dtype=np.float64)[0].tolist()


__all__ = ["InferenceService", "ModelRef", "Cached", "PredictionResult"]
