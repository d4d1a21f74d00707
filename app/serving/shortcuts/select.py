"""Which code computes each of a model's outputs: a shortcut, or scikit-learn's own method.

Shortcuts, each taken only for classes whose methods are exactly scikit-learn's own (a
subclass that overrides one is left alone) and each giving bit-for-bit the model's own output:

- labels read off predict_proba, so a request that wants both does not pay for the model twice;
- a forest's predict_proba / predict walked tree by tree without joblib (app/serving/shortcuts/forests.py);
- StandardScaler, LogisticRegression and linear regressors without the per-call input
  validation that is almost all of their cost for a request's rows (app/serving/shortcuts/linear.py);
- HistGradientBoosting* and GradientBoosting* from their fitted trees, all walked at once
  (app/serving/shortcuts/hist_boosting.py, boosting.py).

Each is checked at load against the model's own method on rows drawn from the model's fitted
range (probes.py) and not used if they differ: a scikit-learn release that computes
differently turns it off, with a warning, rather than changing predictions. Every decision is a
Route whose path and, when scikit-learn's own method is used, reason /models shows: a shortcut
never switches off silently.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mlapi.serving.shortcuts.boosting import boosting_candidate
from mlapi.serving.shortcuts.forests import forest_candidate
from mlapi.serving.shortcuts.hist_boosting import hist_candidate
from mlapi.serving.shortcuts.linear import linear_candidate
from mlapi.serving.shortcuts.probes import compare, disagreement
from mlapi.serving.shortcuts.sklearn_code import Candidate, owner_mismatch

log = logging.getLogger(__name__)

SCIKIT_LEARN = "scikit-learn"            # the estimator's own method
FROM_PROBABILITIES = "from-probabilities"  # labels read off the predict_proba output


@dataclass(frozen=True)
class Route:
    """How one output is computed: `call` (None: the estimator's own method), the path's name,
    and why the estimator's own method is used when it is."""

    call: Callable | None
    path: str
    reason: str | None = None
    # The estimator's own output on the probe rows, when the probe computed it: reused by the
    # labels probe, so a 100-tree forest is not walked through joblib once more at start-up.
    probe_output: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> dict:
        return {"path": self.path} if self.reason is None else {"path": self.path, "reason": self.reason}


def own_method(reason: str) -> Route:
    return Route(None, SCIKIT_LEARN, reason)


def shortcut(estimator, method: str, probe: np.ndarray | None) -> Route:
    """The fastest known drop-in for estimator.<method> that agrees with it on the probe rows."""
    reasons = []
    for candidate_of in (forest_candidate, linear_candidate, hist_candidate, boosting_candidate):
        found = candidate_of(estimator, method)
        if isinstance(found, Candidate):
            break
        reasons.append(found)
    else:
        return own_method(next((why for why in reasons if why), f"no shortcut for {type(estimator).__name__}.{method}"))
    if probe is None:
        return own_method("no probe rows for this estimator")
    outputs = {}
    why = disagreement(found.checked, getattr(estimator, method), probe, outputs)
    if why is not None:
        return _mismatch(estimator, f"{method} ({found.path})", why)
    return Route(found.call, found.path, probe_output=outputs.get("expected"))


def _mismatch(estimator, what: str, why: str) -> Route:
    log.warning("%s.%s: the shortcut %s on a probe; using scikit-learn's own method",
                type(estimator).__name__, what, why)
    return own_method(f"probe mismatch: {why}")


# ---- labels from probabilities -------------------------------------------------------------
# How an estimator's predict() relates to its predict_proba(), by its own code:
# ARGMAX: predict() is classes_[argmax(predict_proba())] (forests, decision trees);
# MONOTONE: predict() is the argmax of scores that predict_proba() maps through a strictly
# increasing function (logistic/softmax of the decision function, exp of the joint log
# likelihood, ...), so both agree except where two probabilities are too close to tell apart
# after rounding; there the model's own predict() decides.
ARGMAX = "argmax"
MONOTONE = "monotone"
# Probabilities closer than this may not order the classes as the model's scores do.
TIE_MARGIN = 1e-9

# (relation, class whose predict is used, class whose predict_proba is used), by module path.
PROBA_RELATIONS = (
    (ARGMAX, "sklearn.ensemble._forest.ForestClassifier", "sklearn.ensemble._forest.ForestClassifier"),
    (ARGMAX, "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.DecisionTreeClassifier"),
    (MONOTONE, "sklearn.linear_model._base.LinearClassifierMixin", "sklearn.linear_model._logistic.LogisticRegression"),
    (MONOTONE, "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
     "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier"),
    (MONOTONE, "sklearn.ensemble._gb.GradientBoostingClassifier", "sklearn.ensemble._gb.GradientBoostingClassifier"),
    (MONOTONE, "sklearn.naive_bayes._BaseNB", "sklearn.naive_bayes._BaseNB"),
)


def _relation_or_reason(predictor) -> str:
    if getattr(predictor, "n_outputs_", 1) != 1:
        return "multi-output"
    reasons = []
    for relation, predict_owner, proba_owner in PROBA_RELATIONS:
        why = owner_mismatch(predictor, "predict", predict_owner)
        if why is None:
            why = owner_mismatch(predictor, "predict_proba", proba_owner)
        if why is None:
            return relation
        reasons.append(why)
    return next((why for why in reasons if why),
                f"{type(predictor).__name__}'s predict() has no known relation to its predict_proba()")


def labels_route(predictor, probe: np.ndarray | None, proba: np.ndarray | None = None) -> tuple[str | None, Route]:
    """(relation, route) for a classifier's labels: read off predict_proba when its relation to
    predict() is known and they agree on the probe rows, else predict() itself. `proba`: the
    estimator's own predict_proba of the probe rows, when already computed."""
    relation = _relation_or_reason(predictor)
    if relation not in (ARGMAX, MONOTONE):
        return None, own_method(relation)
    if probe is None:
        return None, own_method("no probe rows for this estimator")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model fitted on a DataFrame warns about a bare array
        try:
            proba = predictor.predict_proba(probe) if proba is None else proba
            predicted = _own_predict(predictor, probe, proba if relation == ARGMAX else None)
        except Exception as exc:
            return None, own_method(f"scikit-learn's own method refused the probe rows ({type(exc).__name__}: {exc})")
    labels = argmax_labels(predictor.classes_, proba, relation)
    # None: a near tie among the probe rows, which predict() decides at serving time too.
    why = None if labels is None else compare(labels, predicted, len(probe))
    if why is not None:
        return None, _mismatch(predictor, "labels (from-probabilities)", why)
    return relation, Route(None, FROM_PROBABILITIES)


def _own_predict(predictor, probe, proba):
    """predictor.predict(probe), by the estimator's own code. For an ARGMAX estimator, whose
    predict() calls its predict_proba(), that call is answered with the probabilities the probe
    already has: a 100-tree forest's predict_proba through joblib costs ~7 ms of cold start."""
    if proba is None:
        return predictor.predict(probe)
    own = vars(predictor).get("predict_proba")  # an instance's own wrapper, kept as it was
    original = predictor.predict_proba
    predictor.predict_proba = lambda X: proba if X is probe else original(X)
    try:
        return predictor.predict(probe)
    finally:
        if own is None:
            del predictor.predict_proba
        else:
            predictor.predict_proba = own


def argmax_labels(classes: np.ndarray, proba: np.ndarray, relation: str) -> np.ndarray | None:
    """Labels read off the probabilities, or None when a near tie needs the model's predict()."""
    if relation == MONOTONE and proba.shape[1] == 2:  # the common binary case, without a partition
        if 0 < len(proba) <= FEW_ROWS:
            return _binary_labels(classes, proba)
        if (np.abs(proba[:, 1] - proba[:, 0]) < TIE_MARGIN).any():  # the method: no np.any wrapper
            return None
    elif relation == MONOTONE and proba.shape[1] > 2:
        top_two = np.partition(proba, -2, axis=1)[:, -2:]
        if (top_two[:, 1] - top_two[:, 0] < TIE_MARGIN).any():
            return None
    return classes.take(proba.argmax(axis=1), axis=0)


# A request's few rows: the binary labels in Python floats (one tolist, one take) rather than
# eight numpy calls on a (1, 2) array.
FEW_ROWS = 8


def _binary_labels(classes: np.ndarray, proba: np.ndarray) -> np.ndarray | None:
    """argmax_labels for a MONOTONE binary model, row by row in Python floats: the same tie
    test (abs of the float64 difference; NaN is no tie) and argmax's choice (the first of equal
    maxima, a NaN counting as the maximum)."""
    pick = []
    for first, second in proba.tolist():
        if abs(second - first) < TIE_MARGIN:
            return None
        pick.append(0 if first != first or not (second > first or second != second) else 1)
    return classes.take(pick, axis=0)
