"""What we know about particular scikit-learn estimators' code, used to skip redundant work.

Three shortcuts, each taken only for classes whose methods are exactly scikit-learn's own (a
subclass that overrides one is left alone) and each giving bit-for-bit the model's own output:

- labels read off predict_proba, so a request that wants both does not pay for the model twice;
- a forest's predict_proba / predict computed tree by tree in the calling thread, without the
  joblib Parallel set-up and per-tree input checks that cost ~10x the tree walks themselves
  for the small batches a server sees (100 trees, one row: ~7 ms → ~0.7 ms);
- StandardScaler, LogisticRegression and linear regressors computed without the per-call input
  validation that is almost all of their cost for a request's rows, when the rows are ones that
  validation would pass through unchanged (`linear_shortcut`).

The last two are checked against the model's own method on probe rows when the model loads,
and not used if they differ: a scikit-learn release that computes differently turns them off
rather than changing predictions.

Classes are looked up among modules already imported, never imported here: a model of that kind
has imported its module by being unpickled, and importing the others (73 modules for a logistic
model) would only add to start-up and memory to learn that the model is not one of them.
"""
from __future__ import annotations

import logging
import sys
import warnings
from typing import Callable

import numpy as np

from mlapi.serving.frames import is_plain_numeric_frame

log = logging.getLogger(__name__)

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
    (MONOTONE, "sklearn.naive_bayes._BaseNB", "sklearn.naive_bayes._BaseNB"),
)


def proba_relation_of(predictor) -> str | None:
    """How this estimator's predict() relates to its predict_proba(), or None if not known."""
    if getattr(predictor, "n_outputs_", 1) != 1:
        return None
    for relation, predict_owner, proba_owner in PROBA_RELATIONS:
        if _inherits(predictor, "predict", predict_owner) and _inherits(predictor, "predict_proba", proba_owner):
            return relation
    return None


def argmax_labels(classes: np.ndarray, proba: np.ndarray, relation: str) -> np.ndarray | None:
    """Labels read off the probabilities, or None when a near tie needs the model's predict()."""
    if relation == MONOTONE and proba.shape[1] == 2:  # the common binary case, without a partition
        if np.any(np.abs(proba[:, 1] - proba[:, 0]) < TIE_MARGIN):
            return None
    elif relation == MONOTONE and proba.shape[1] > 2:
        top_two = np.partition(proba, -2, axis=1)[:, -2:]
        if np.any(top_two[:, 1] - top_two[:, 0] < TIE_MARGIN):
            return None
    return classes.take(np.argmax(proba, axis=1), axis=0)


# ---- forests without joblib ----------------------------------------------------------------
# (forest class, its method, tree class, the tree method the forest averages), by module path.
FOREST_METHODS = (
    ("sklearn.ensemble._forest.ForestClassifier", "predict_proba",
     "sklearn.tree._classes.DecisionTreeClassifier", "predict_proba"),
    ("sklearn.ensemble._forest.ForestRegressor", "predict",
     "sklearn.tree._classes.DecisionTreeRegressor", "predict"),
)


def forest_shortcut(predictor, method: str) -> Callable | None:
    """A drop-in for predictor.<method> when it is a plain scikit-learn forest's, else None.

    It does what ForestClassifier.predict_proba / ForestRegressor.predict do with n_jobs=1:
    the forest's own input validation (same errors, same float32 conversion) — or, for rows it
    would pass through unchanged (see plain_rows), the same float32 conversion alone — then each
    tree's leaf values added in tree order into a float64 total divided by the number of trees.
    Only the per-call machinery goes: joblib's Parallel set-up, a lock, and per-tree fitted/shape
    checks the forest has already made. A forest asked for parallel trees (n_jobs) keeps them.
    """
    known = next((row for row in FOREST_METHODS if row[1] == method and _inherits(predictor, method, row[0])), None)
    if known is None or getattr(predictor, "n_outputs_", 1) != 1 or predictor.n_jobs not in (None, 1):
        return None
    _, _, tree_owner, tree_method = known
    estimators = getattr(predictor, "estimators_", None) or []
    validate = getattr(predictor, "_validate_X_predict", None)
    if not estimators or validate is None or not all(
            _inherits(tree, tree_method, tree_owner) and hasattr(tree, "tree_") for tree in estimators):
        return None  # not fitted, or a scikit-learn whose forests are built differently
    trees = [tree.tree_ for tree in estimators]
    width = len(predictor.classes_) if method == "predict_proba" else 1
    n_features, names = getattr(predictor, "n_features_in_", None), fitted_names(predictor)

    def walk_trees(X32):
        total = np.zeros((X32.shape[0], width), dtype=np.float64)
        for tree in trees:
            # Tree.predict gives each row's leaf value: the class fractions for a classifier
            # (what DecisionTreeClassifier.predict_proba returns), the mean for a regressor.
            total += tree.predict(X32)[:, :width]
        total /= len(trees)
        return total if method == "predict_proba" else total[:, 0]

    def float32_rows(rows):
        # What the forest's validation makes of rows it passes through unchanged (finite
        # float64 of the fitted width, for a DataFrame-fitted forest its own columns): the
        # float32 copy the trees read — unless a value is too large for float32 and becomes
        # infinite, which validation refuses (None: let it say so). The validation itself
        # costs ~0.09 ms for an array, ~0.6 ms for a one-row DataFrame.
        rows32 = rows.astype(np.float32)
        return rows32 if np.isfinite(rows32).all() else None

    def forest_output(X):
        rows = plain_rows(X, n_features, names)
        rows32 = float32_rows(rows) if rows is not None else None
        return walk_trees(rows32 if rows32 is not None else validate(X))

    # The probe runs the conversion and the walk itself (see linear_shortcut's probe).
    return _probed(forest_output, predictor, method, "the tree-by-tree shortcut",
                   probe_with=lambda probe: walk_trees(float32_rows(probe)))


def shortcut(estimator, method: str) -> Callable | None:
    """The fastest known drop-in for estimator.<method>, or None to call the method itself."""
    return forest_shortcut(estimator, method) or linear_shortcut(estimator, method)


# ---- linear steps without the per-call input checks ----------------------------------------
# scikit-learn validates its input in every call (namespace and dataframe detection, dtype,
# shape, finiteness, feature names): for a one-row StandardScaler + LogisticRegression that is
# nearly all of the call, the arithmetic a microsecond or two. Rows that validation would hand
# through unchanged (a 2-D C-ordered float64 ndarray, the fitted width, every value finite; for
# an estimator fitted on a DataFrame, a DataFrame of its own columns holding such an array: see
# plain_rows) get the same numpy expressions scikit-learn's methods evaluate after it; anything
# else (lists, other DataFrames, sparse matrices, NaN, a wrong width) goes to the estimator's
# own method, for its conversions, its warnings and its error messages.
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


def linear_shortcut(estimator, method: str) -> Callable | None:
    """A drop-in for estimator.<method> when it is one of LINEAR_METHODS, else None."""
    known = next((row for row in LINEAR_METHODS if row[1] == method and _inherits(estimator, method, row[0])), None)
    if known is None or not all(_inherits(estimator, name, owner) for name, owner in known[2]):
        return None
    n_features = getattr(estimator, "n_features_in_", None)
    # Set to output DataFrames, the estimator wraps its result: that is scikit-learn's business.
    if n_features is None or _output_configured(estimator):
        return None
    compute = _LINEAR_COMPUTE[method](estimator)
    if compute is None:
        return None
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

    # The probe runs the computation itself: given the probe's bare array, linear_output
    # would hand a DataFrame-fitted model's rows to scikit-learn. (Building a DataFrame here
    # instead would import pandas, with pyarrow, before the server decides how: app/wsgi.py.)
    return _probed(linear_output, estimator, method, "the unvalidated shortcut", probe_with=compute)


def plain_rows(X, n_features: int | None, names: list | None) -> np.ndarray | None:
    """X as the array scikit-learn's validation would pass through unchanged — C-ordered
    float64, 2-D, the fitted width, every value finite — or None when validation would convert,
    warn or refuse (then the estimator's own method must see X). An estimator fitted on a
    DataFrame takes a DataFrame with exactly its columns in order, as that array."""
    if names is not None:
        if not is_plain_numeric_frame(X, names):
            return None
        X = X.to_numpy()  # the array np.asarray (validation's conversion) gives, 25x faster
    # C order too: validation hands it on as it is, and a Fortran-ordered array's matrix product
    # (the linear models') can round differently. No rows: validation refuses them.
    if (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2 and X.shape[0] > 0
            and X.shape[1] == n_features and X.flags.c_contiguous and np.isfinite(X).all()):
        return X
    return None


def _scaler_transform(scaler):
    # StandardScaler.transform on a dense float64 array, after validation copied it.
    if getattr(scaler, "copy", True) is not True:
        return None  # copy=False transforms the caller's array in place: keep that to scikit-learn
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(X):
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


_LINEAR_COMPUTE = {"transform": _scaler_transform, "predict_proba": _logistic_proba, "predict": _linear_scores}


def _output_configured(estimator) -> bool:
    return bool(getattr(estimator, "_sklearn_output_config", None))


def _probed(shortcut: Callable, estimator, method: str, what: str,
            probe_with: Callable | None = None) -> Callable | None:
    """The shortcut if it gives bit-for-bit estimator.<method>'s output on probe rows, else None
    (with a warning): a scikit-learn release that computes differently turns it off rather than
    changing predictions."""
    if _agrees(probe_with or shortcut, getattr(estimator, method), estimator):
        return shortcut
    log.warning("%s.%s: %s disagrees with scikit-learn on a probe; not used", type(estimator).__name__, method, what)
    return None


def _agrees(shortcut, original, estimator) -> bool:
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        return False
    probe = np.array([np.zeros(n_features), np.ones(n_features), np.full(n_features, -1.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model fitted on a DataFrame warns about a bare array
        try:
            return np.array_equal(shortcut(probe), original(probe))
        except Exception:  # e.g. a model that needs more than numbers: leave it to scikit-learn
            return False


def fitted_names(estimator) -> list[str] | None:
    """The column names the estimator was fitted with, as plain strings (what DataFrame
    columns compare equal to), or None for an estimator fitted on an array."""
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def _inherits(estimator, method: str, owner_path: str) -> bool:
    """True when estimator.<method> is exactly the one the class at owner_path defines."""
    owner = _loaded_class(owner_path)
    return owner is not None and getattr(type(estimator), method, None) is getattr(owner, method, False)


def _loaded_class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(sys.modules.get(module), name, None)
