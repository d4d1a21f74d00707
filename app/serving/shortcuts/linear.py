"""Scalers and linear models without scikit-learn's per-call input checks.

scikit-learn validates its input in every call (namespace and dataframe detection, dtype,
shape, finiteness, feature names): for a one-row StandardScaler + LogisticRegression that is
nearly all of the call, the arithmetic a microsecond or two. Rows that validation would hand
through unchanged (see plain_rows) get the same numpy expressions scikit-learn's methods
evaluate after it; anything else (lists, other DataFrames, sparse matrices, NaN, a wrong width)
goes to the estimator's own method, for its conversions, its warnings and its error messages.
app/serving/shortcuts/select.py probes each drop-in against the estimator's own method before use.
"""
from __future__ import annotations

import numpy as np

from mlapi.serving.shortcuts.sklearn_code import Candidate, find_known, fitted_names, owner_mismatch, plain_rows

LINEAR = "linear"

# (class, method, and the methods that one calls, which must be scikit-learn's too), by module path.
LINEAR_METHODS = (
    ("sklearn.preprocessing._data.StandardScaler", "transform", ()),
    ("sklearn.linear_model._logistic.LogisticRegression", "predict_proba",
     (("decision_function", "sklearn.linear_model._base.LinearClassifierMixin"),
      ("_predict_proba_lr", "sklearn.linear_model._base.LinearClassifierMixin"))),
    ("sklearn.linear_model._base.LinearModel", "predict",
     (("_decision_function", "sklearn.linear_model._base.LinearModel"),)),
    # Two predicts that only call LinearModel's (for their docstrings): LinearRegression's, Ridge's
    ("sklearn.linear_model._base.MultiOutputLinearModel", "predict",
     (("_decision_function", "sklearn.linear_model._base.LinearModel"),)),
    ("sklearn.linear_model._ridge.Ridge", "predict",
     (("_decision_function", "sklearn.linear_model._base.LinearModel"),)),
)


def linear_candidate(estimator, method: str) -> Candidate | str:
    """A drop-in for estimator.<method> when it is one of LINEAR_METHODS, else why not
    (UNRELATED for an estimator of another kind)."""
    known, why = find_known(estimator, method, LINEAR_METHODS)
    if known is None:
        return why
    for name, owner in known[2]:
        why = owner_mismatch(estimator, name, owner)
        if why is not None:
            return why or f"{type(estimator).__name__}.{name} is not {owner}'s"
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        return "not fitted"
    if getattr(estimator, "_sklearn_output_config", None):
        return "set_output is configured: scikit-learn wraps the output"
    compute = _LINEAR_COMPUTE[method](estimator)
    if isinstance(compute, str):
        return compute
    original = getattr(estimator, method)
    # Fitted on a DataFrame (the usual case for a data scientist's model, and our demo's),
    # scikit-learn checks the columns' names on every call, then validates the values as it
    # would an array: a DataFrame with exactly the fitted columns, in order, is that array
    # (what np.asarray, its validation's conversion, gives). A bare array goes to scikit-learn,
    # which warns that it has no names.
    names = fitted_names(estimator)

    def linear_output(X):
        rows = plain_rows(X, n_features, names)
        return compute(rows) if rows is not None else original(X)

    return Candidate(linear_output, compute, LINEAR)


def scaler_transform(scaler):
    """StandardScaler.transform on a dense float64 array, after validation copied it (here, or
    by the caller: copy=False; the compiled path's steps, app/serving/shortcuts/compiled_steps.py)."""
    if getattr(scaler, "copy", True) is not True:
        return "copy=False transforms the caller's array in place: left to scikit-learn"
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(X, copy=True):
        if copy:
            X = X.copy()
        if mean is not None:
            X -= mean.astype(X.dtype)
        if scale is not None:
            X /= scale.astype(X.dtype)
        return X
    return transform


def _linear_scores(model):
    # LinearClassifierMixin.decision_function / LinearModel._decision_function after validation
    # (safe_sparse_dot of two dense arrays is their matrix product).
    coef, intercept = model.coef_, model.intercept_
    coef_T = coef.T if coef.ndim == 2 else coef
    return lambda X: X @ coef_T + intercept


def _logistic_proba(model):
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    scores_of = _linear_scores(model)
    binary = len(model.classes_) <= 2

    def predict_proba(X):
        scores = scores_of(X)
        if binary:  # LinearClassifierMixin._predict_proba_lr, one column of scores
            if scores.ndim > 1 and scores.shape[1] == 1:
                scores = scores.reshape(-1)
            prob = expit(scores, out=scores)
            return np.stack([1 - prob, prob], axis=1)
        return softmax(scores, copy=False)
    return predict_proba


_LINEAR_COMPUTE = {"transform": scaler_transform, "predict_proba": _logistic_proba, "predict": _linear_scores}
