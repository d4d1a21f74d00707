"""ServedModel: one loaded estimator, its feature step, predictor and metadata.

The model sees a DataFrame, an array or a list of texts, never a protocol type. A Pipeline's
leading steps are its feature extractor and its last step the predictor; for a bare estimator
the features are the input. Loading (fetch, verify, unpickle, version check) lives here too,
because it is what turns a ModelSpec into a ServedModel.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.base import is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from mlapi import metrics
from mlapi.config import ModelSpec, Settings
from mlapi.serving.estimators import ARGMAX, argmax_labels, fitted_names, proba_relation_of, shortcut
from mlapi.errors import ArtifactError, InvalidInput
from mlapi.serving.storage import resolve_artifact, sha256_of

log = logging.getLogger(__name__)

TEXT = "text"
TABULAR = "tabular"


@dataclass
class PredictionResult:
    """Plain-Python outputs of one predict call, in request order."""

    predictions: list
    probabilities: list[list[float]] | None = None
    classes: list | None = None


@dataclass
class ServedModel:
    name: str
    version: str
    estimator: Any
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        est = self.estimator
        if isinstance(est, Pipeline) and len(est.steps) > 1:
            self.feature_step = est[:-1]
            self.predictor = est.steps[-1][1]
        else:
            self.feature_step = None
            self.predictor = est.steps[-1][1] if isinstance(est, Pipeline) else est
        # The feature step's transforms, called one after the other: what Pipeline.transform
        # does without metadata routing, whose per-call bookkeeping (routing objects, deep-copied
        # tags) costs more than a one-row scaler; each through a shortcut where one is known.
        self._transforms = [] if self.feature_step is None else [
            shortcut(step, "transform") or step.transform
            for _, step in self.feature_step.steps if step is not None and step != "passthrough"]
        if not hasattr(self.predictor, "predict"):
            raise ArtifactError(f"{type(self.predictor).__name__} has no predict(): not a servable estimator")
        first = est.steps[0][1] if isinstance(est, Pipeline) else est
        # Any vectorizer that builds an analyzer takes raw documents (Count/Tfidf/Hashing).
        self.input_kind = TEXT if hasattr(first, "build_analyzer") else TABULAR
        self.feature_names = fitted_names(est)
        self.n_features = getattr(est, "n_features_in_", None) if self.input_kind == TABULAR else None
        self.classes = _plain(getattr(self.predictor, "classes_", None))
        self.has_proba = self.classes is not None and hasattr(self.predictor, "predict_proba")
        self.task = _task(self.predictor, self.classes)
        # Decided once: whether labels can be read off predict_proba (see predict_arrays), and
        # which methods have a faster drop-in (forests, linear models: app/estimators.py).
        self._proba_relation = proba_relation_of(self.predictor) if self.has_proba else None
        self._predict_proba = self.has_proba and shortcut(self.predictor, "predict_proba") or None
        self._predict_labels = None if self.classes is not None else shortcut(self.predictor, "predict")

    # ---- the three operations every model offers -------------------------------------
    def features(self, model_input):
        """raw → features (identity for a bare estimator)."""
        for transform in self._transforms:
            model_input = _call(transform, model_input)
        return model_input

    def predict_features(self, features, probabilities: bool | None = None) -> PredictionResult:
        """features → prediction, with the final step alone."""
        labels, proba = self.predict_arrays(features, probabilities)
        if proba is None:
            return PredictionResult(_plain(labels))
        return PredictionResult(_plain(labels), proba.tolist(), self.classes)

    def predict(self, model_input, probabilities: bool | None = None) -> PredictionResult:
        """raw → prediction. Transforms once and reuses the features for predict and
        predict_proba, which is what Pipeline.predict / predict_proba compute."""
        return self.predict_features(self.features(model_input), probabilities)

    def predict_arrays(self, features, probabilities: bool | None = None):
        """features → (labels, probabilities or None) as numpy arrays, for callers that
        keep arrays (bulk scoring) rather than JSON-ready lists."""
        predictor = self.predictor
        want_proba = self.has_proba if probabilities is None else (probabilities and self.has_proba)
        # For ARGMAX models predict() is predict_proba() plus an argmax: same cost either way.
        need_proba = want_proba or self._proba_relation == ARGMAX
        proba = _call(self._predict_proba or predictor.predict_proba, features) if need_proba else None
        labels = None
        if proba is not None and self._proba_relation is not None:
            # predict() would repeat the model's whole cost (every tree walked again, the
            # scores recomputed and validated again) for labels predict_proba already holds.
            labels = argmax_labels(predictor.classes_, proba, self._proba_relation)
        if labels is None:
            labels = _call(self._predict_labels or predictor.predict, features)
        metrics.record_prediction(self.name, self.version, len(labels))
        return labels, (proba if want_proba else None)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "ready": True,
            "task": self.task,
            "input_kind": self.input_kind,
            "classes": self.classes,
            "n_features_in": self.n_features,
            "feature_names_in": self.feature_names,
            "estimator": type(self.estimator).__name__,
            "steps": [name for name, _ in self.estimator.steps] if isinstance(self.estimator, Pipeline) else None,
            "has_feature_step": self.feature_step is not None,
            "predict_proba": self.has_proba,
            **self.metadata,
        }


def _call(method, X):
    # scikit-learn reports input that does not fit the model (wrong width, strings where
    # numbers are needed, NaN, unseen categories) as ValueError: that is the client's 422.
    # Anything else escapes as our 500.
    try:
        return method(X)
    except ValueError as exc:
        raise InvalidInput(f"input does not fit the model: {exc}") from exc


def _task(predictor, classes) -> str:
    if classes is not None:
        return "classification"
    try:
        if is_classifier(predictor):
            return "classification"
        if is_regressor(predictor):
            return "regression"
    except (AttributeError, TypeError):
        # scikit-learn-API estimators from other libraries may lack sklearn's tags;
        # fall back to the older convention they usually do follow.
        kind = getattr(predictor, "_estimator_type", None)
        if kind in ("classifier", "regressor"):
            return "classification" if kind == "classifier" else "regression"
    return "other"


def _plain(values):
    """numpy → plain JSON types, labels exactly as trained (ints stay ints, strs stay strs)."""
    if values is None:
        return None
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def load_model(spec: ModelSpec, settings: Settings) -> ServedModel:
    """Fetch, verify and unpickle one artifact. Raises ArtifactError with a readable reason.

    Unpickling runs code from the file: only serve artifacts you trust (see README, Security).
    The sha256 pin is checked before unpickling, so a swapped file is never executed.
    """
    started = time.time()
    path = resolve_artifact(spec.uri, settings.model_cache_dir)
    digest = sha256_of(path)
    if spec.sha256 and digest != spec.sha256:
        raise ArtifactError(f"sha256 mismatch for {spec.uri}: expected {spec.sha256}, file has {digest}; refusing to load it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise ArtifactError(f"could not unpickle {spec.uri}: {exc.__class__.__name__}: {exc}") from exc
    trained_with = _check_sklearn_version(spec, caught, settings.strict_sklearn_version)
    served = ServedModel(spec.name, spec.version, estimator, {
        "uri": spec.uri,
        "sha256": digest,
        "sklearn_version": trained_with,
        "serving_sklearn_version": sklearn.__version__,
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_seconds": round(time.time() - started, 3),
    })
    log.info("loaded model %s:%s from %s (%s, sha256 %s)", spec.name, spec.version, spec.uri,
             type(estimator).__name__, digest[:12])
    return served


def _check_sklearn_version(spec: ModelSpec, caught, strict: bool) -> str:
    mismatch = next((w.message for w in caught
                     if type(w.message).__name__ == "InconsistentVersionWarning"), None)
    if mismatch is None:
        return sklearn.__version__
    pickled = mismatch.original_sklearn_version
    message = (f"model {spec.name}:{spec.version} was pickled with scikit-learn {pickled} "
               f"but this server runs {sklearn.__version__}")
    if strict:
        raise ArtifactError(message + "; refused because STRICT_SKLEARN_VERSION=1")
    log.warning("%s; predictions may differ (set STRICT_SKLEARN_VERSION=1 to refuse)", message)
    return pickled
