"""The one business flow, with no HTTP in it: (model ref, input) → cache → model → result.

Routes for every protocol call these methods with decoded, plain-Python input and encode what
comes back; so a behaviour (validation, caching, error statuses) is the same on every route.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from app.cache import MISSING, PredictionCache, cache_key
from app.errors import InvalidInput
from app.inputs import to_feature_matrix, to_model_input
from app.model import TEXT, PredictionResult, ServedModel
from app.registry import ModelRegistry


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for; None means the default model / its default version."""

    name: str | None = None
    version: str | None = None


@dataclass
class Cached:
    value: Any
    from_cache: bool


class InferenceService:
    def __init__(self, registry: ModelRegistry, cache: PredictionCache):
        self.registry = registry
        self.cache = cache

    def model(self, ref: ModelRef) -> ServedModel:
        return self.registry.get(ref.name, ref.version)

    # ---- batch operations: instances in, one model call ---------------------------------
    def predict(self, ref: ModelRef, instances: Any, probabilities: bool | None = None):
        model = self.model(ref)
        return model, model.predict(to_model_input(model, instances), probabilities)

    def features(self, ref: ModelRef, instances: Any):
        model = self.model(ref)
        return model, model.features(to_model_input(model, instances))

    def predict_features(self, ref: ModelRef, features: Any, probabilities: bool | None = None):
        model = self.model(ref)
        return model, model.predict_features(to_feature_matrix(model, features), probabilities)

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
