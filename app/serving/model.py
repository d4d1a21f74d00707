"""ServedModel: one loaded estimator, its feature step, predictor and metadata.

The model sees a DataFrame, an array or a list of texts, never a protocol type. A Pipeline's
leading steps are its feature extractor and its last step the predictor; for a bare estimator
the features are the input. Which code computes each output (a shortcut or scikit-learn's own
method) is decided once, here, and shown by describe(). Loading an artifact into a ServedModel
lives in app/serving/loading.py.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from mlapi import metrics
from mlapi.errors import ArtifactError, InvalidInput, ModelFailure
from mlapi.serving import columns
from mlapi.serving.input_faults import explain_rejection
from mlapi.serving.shortcuts.compute_path import choose as choose_compute_path
from mlapi.serving.shortcuts.select import ARGMAX, argmax_labels
from mlapi.serving.shortcuts.sklearn_code import fitted_names

TEXT = "text"
TABULAR = "tabular"

_total = np.add.reduce  # see _check_labels
log = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    """Plain-Python outputs of one predict call, in request order."""

    predictions: list
    probabilities: list[list[float]] | None = None
    classes: list | None = None


    def instances(self) -> list["InstanceAnswer"]:
        """Each row's part: what the prediction cache keeps, one entry per instance."""
        probabilities = self.probabilities or [None] * len(self.predictions)
        return list(map(InstanceAnswer, self.predictions, probabilities))

    @classmethod
    def of_instances(cls, answers: list["InstanceAnswer"], classes: list | None) -> "PredictionResult":
        """Rows' parts (cached or just computed) as one result, in their order."""
        if not answers or answers[0].probabilities is None:
            return cls([answer.label for answer in answers])
        return cls([answer.label for answer in answers], [answer.probabilities for answer in answers], classes)


class InstanceAnswer(NamedTuple):
    """One instance's prediction and, when asked for, its class probabilities."""

    label: Any
    probabilities: list[float] | None


@dataclass
class ServedModel:
    name: str
    version: str
    estimator: Any
    metadata: dict = field(default_factory=dict)
    # Settings.compiled_path: off puts every output on scikit-learn's own method.
    compiled_path: bool = True

    def __post_init__(self) -> None:
        est = self.estimator
        if isinstance(est, Pipeline) and len(est.steps) > 1:
            self.feature_step = est[:-1]
            self.predictor = est.steps[-1][1]
        else:
            self.feature_step = None
            self.predictor = est.steps[-1][1] if isinstance(est, Pipeline) else est
        if not hasattr(self.predictor, "predict"):
            raise ArtifactError(f"{type(self.predictor).__name__} has no predict(): not a servable estimator")
        first = est.steps[0][1] if isinstance(est, Pipeline) else est
        # Any vectorizer that builds an analyzer takes raw documents (Count/Tfidf/Hashing).
        self.input_kind = TEXT if hasattr(first, "build_analyzer") else TABULAR
        self.feature_names = fitted_names(est)
        # The columns that take strings, with their known categories (app/serving/columns.py):
        # request rows keep them as text. Worked out at load, in the master before it forks
        # (shared copy-on-write), so no worker's first request pays for it; a walk of the steps.
        self.string_columns: dict[str, list | None] = (
            columns.string_columns(est) if self.feature_names else {})
        self.n_features = getattr(est, "n_features_in_", None) if self.input_kind == TABULAR else None
        self.classes = _plain(getattr(self.predictor, "classes_", None))
        self.has_proba = self.classes is not None and hasattr(self.predictor, "predict_proba")
        self.task = _task(self.predictor, self.classes)
        self._choose_compute_path()

    def _choose_compute_path(self) -> None:
        """Decided once: which code computes each output, each shortcut probed on rows from the
        model's fitted range; compute_path records every choice and why (shortcuts/compute_path.py)."""
        path = choose_compute_path(self, self.compiled_path)
        self._transforms, self._proba_relation = path.transforms, path.proba_relation
        self._predict_proba, self._predict_labels = path.predict_proba, path.predict_labels
        self.compute_path = path.describe()

    # ---- the three operations every model offers -------------------------------------
    def features(self, model_input):
        """raw → features (identity for a bare estimator), in the form the model's own steps
        give them (a compiled feature side's dense rows as CSR when those are sparse)."""
        try:
            features = self._transform(model_input)
        except InvalidInput as exc:  # say which instance and column, not just scikit-learn's words
            raise explain_rejection(self, model_input, exc) from exc
        own_form = getattr(self._transforms[0], "own_form", None) if self._transforms else None
        return features if own_form is None else own_form(features)

    def _transform(self, model_input):
        for transform in self._transforms:
            model_input = _call(transform, model_input, self)
        return model_input

    def predict_features(self, features, probabilities: bool | None = None) -> PredictionResult:
        """features → prediction, with the final step alone."""
        return self._result(*self.predict_arrays(features, probabilities))

    def predict(self, model_input, probabilities: bool | None = None) -> PredictionResult:
        """raw → prediction. Transforms once and reuses the features for predict and
        predict_proba, which is what Pipeline.predict / predict_proba compute."""
        return self._result(*self.predict_input_arrays(model_input, probabilities))

    def predict_input_arrays(self, model_input, probabilities: bool | None = None):
        """raw → (labels, probabilities or None) as numpy arrays (bulk scoring keeps arrays).
        Input any step rejects, the last included, is explained the one way: its instance and
        column (app/serving/input_faults.py)."""
        try:
            return self.predict_arrays(self._transform(model_input), probabilities)
        except InvalidInput as exc:
            raise explain_rejection(self, model_input, exc) from exc

    def gives_probabilities(self, probabilities: bool | None) -> bool:
        """Whether an answer holds class probabilities: asked for (None: the default, yes) and
        the model has them."""
        return self.has_proba if probabilities is None else bool(probabilities and self.has_proba)

    def _result(self, labels, proba) -> PredictionResult:
        if proba is None:
            return PredictionResult(_plain(labels))
        return PredictionResult(_plain(labels), proba.tolist(), self.classes)

    def predict_arrays(self, features, probabilities: bool | None = None):
        """features → (labels, probabilities or None) as numpy arrays, for callers that
        keep arrays (bulk scoring) rather than JSON-ready lists."""
        predictor = self.predictor
        want_proba = self.gives_probabilities(probabilities)
        # For ARGMAX models predict() is predict_proba() plus an argmax: same cost either way.
        # A MONOTONE model with a predict_proba shortcut (boosting, logistic) gets its labels
        # from that too: its own predict() costs the validation the shortcut skips.
        need_proba = want_proba or self._proba_relation == ARGMAX or (
            self._proba_relation is not None and self._predict_proba is not None)
        proba = _call(self._predict_proba or predictor.predict_proba, features, self) if need_proba else None
        rows = features.shape[0] if hasattr(features, "shape") else len(features)
        if proba is not None:
            self._check_proba(proba, rows)
        labels = None
        if proba is not None and self._proba_relation is not None:
            # predict() would repeat the model's whole cost (every tree walked again, the
            # scores recomputed and validated again) for labels predict_proba already holds.
            labels = argmax_labels(predictor.classes_, proba, self._proba_relation)
        if labels is None:
            labels = _call(self._predict_labels or predictor.predict, features, self)
            self._check_labels(labels, rows)
        metrics.record_prediction(self.name, self.version, len(labels))
        return labels, (proba if want_proba else None)

    # ---- what a model answers must be an answer: one per row, numbers that are numbers ------
    # O(1) on the happy path beside the model call: lengths, and one sum whose finiteness says
    # that no value is NaN or infinite (_total: the ufunc itself, without ndarray.sum's Python
    # wrapper, a third of the check's cost on a one-row request).
    def _check_labels(self, labels, rows: int) -> None:
        if len(labels) != rows:
            raise self.failure(f"predict returned {len(labels)} values for {rows} rows")
        # NaN is the model's "no value" and is answered as null (docs/api.md); an infinity is
        # an overflow, which no JSON number can say.
        if getattr(labels, "dtype", None) is not None and labels.dtype.kind == "f" and \
                not math.isfinite(_total(labels, None)) and np.isinf(labels).any():
            raise self.failure(f"predict returned infinity for row {int(np.flatnonzero(np.isinf(labels))[0])}")

    def _check_proba(self, proba, rows: int) -> None:
        shape = getattr(proba, "shape", None)  # an array's own attribute and method: np.shape and
        if shape != (rows, len(self.classes)):  # np.sum cost three times as much per call
            raise self.failure(f"predict_proba returned {f'shape {shape}' if shape else type(proba).__name__} "
                               f"for {rows} rows of {len(self.classes)} classes")
        if not math.isfinite(_total(proba, None)):
            raise self.failure("predict_proba returned NaN or infinity")

    def failure(self, what: str, cause: BaseException | None = None) -> ModelFailure:
        """A fault of the model: logged with the detail (and the traceback of `cause`), answered
        as a 500 that names the model and sends none of it (a model's own words may hold paths)."""
        log.error("model %s:%s failed: %s", self.name, self.version, what, exc_info=cause)
        return ModelFailure(f"model {self.name}:{self.version} failed: a fault in the model, not in the request; "
                            f"the server's log says what went wrong", model=self.name, version=self.version)

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
            "compute_path": self.compute_path,
            **self.metadata,
        }


def _call(method, X, model: ServedModel):
    # scikit-learn reports input that does not fit the model (wrong width, strings where
    # numbers are needed, NaN, unseen categories) as ValueError: that is the client's 422.
    # A ValueError the model's own code raised (a custom transformer, a FunctionTransformer's
    # function) is the model's fault: a 500, its message (paths and all) logged, not sent.
    # Anything else escapes as our 500.
    try:
        return method(X)
    except ValueError as exc:
        if refused_input(exc):
            raise InvalidInput(f"input does not fit the model: {exc}") from exc
        raise model.failure(f"its own code raised {exc.__class__.__name__}", exc) from exc


# Libraries scikit-learn's validation calls into: the code that asked for the failing step is
# further out. (A model's own code calling them is found the same way.)
_CALLED_BY_VALIDATION = ("numpy", "pandas", "scipy")


def refused_input(exc: ValueError) -> bool:
    """Whether scikit-learn raised `exc` (its input validation: check_array, the encoders, the
    vectorizers) rather than the model's own code: the innermost frame outside numpy, pandas
    and scipy is scikit-learn's. An unfitted estimator is the model's fault whoever says so."""
    if isinstance(exc, NotFittedError):
        return False
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        package = frame.f_globals.get("__name__", "").partition(".")[0]
        if package not in _CALLED_BY_VALIDATION:
            return package == "sklearn"
    return False


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

