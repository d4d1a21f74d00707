"""Forests walked tree by tree in the calling thread, without joblib.

For the small batches a server sees, ForestClassifier.predict_proba / ForestRegressor.predict
spend ~10x the tree walks themselves on joblib's Parallel set-up and per-tree input checks
(100 trees, one row: ~7 ms → ~0.7 ms). The drop-in here gives bit-for-bit the forest's output;
app/serving/shortcuts/select.py probes it against the forest's own method before it is used.
"""
from __future__ import annotations

import numpy as np

from mlapi.serving.shortcuts.sklearn_code import Candidate, find_known, fitted_names, owner_mismatch, plain_rows

FOREST = "forest"

# (forest class, its method, tree class, the tree method the forest averages), by module path.
FOREST_METHODS = (
    ("sklearn.ensemble._forest.ForestClassifier", "predict_proba",
     "sklearn.tree._classes.DecisionTreeClassifier", "predict_proba"),
    ("sklearn.ensemble._forest.ForestRegressor", "predict",
     "sklearn.tree._classes.DecisionTreeRegressor", "predict"),
)


def forest_candidate(predictor, method: str) -> Candidate | str:
    """A drop-in for predictor.<method> when it is a plain scikit-learn forest's, else why not
    (UNRELATED for an estimator that is no forest).

    It does what ForestClassifier.predict_proba / ForestRegressor.predict do with n_jobs=1:
    the forest's own input validation (same errors, same float32 conversion) — or, for rows it
    would pass through unchanged (see plain_rows), the same float32 conversion alone — then each
    tree's leaf values added in tree order into a float64 total divided by the number of trees.
    Only the per-call machinery goes: joblib's Parallel set-up, a lock, and per-tree fitted/shape
    checks the forest has already made. A forest asked for parallel trees (n_jobs) keeps them.
    """
    known, why = find_known(predictor, method, FOREST_METHODS)
    if known is None:
        return why
    if getattr(predictor, "n_outputs_", 1) != 1:
        return "a multi-output forest"
    if predictor.n_jobs not in (None, 1):
        return f"n_jobs={predictor.n_jobs}: the forest's own parallel tree walks are kept"
    _, _, tree_owner, tree_method = known
    estimators = getattr(predictor, "estimators_", None) or []
    validate = getattr(predictor, "_validate_X_predict", None)
    if not estimators:
        return "the forest is not fitted"
    if validate is None:
        return f"scikit-learn's private method {type(predictor).__name__}._validate_X_predict is gone"
    for tree in estimators:
        why = owner_mismatch(tree, tree_method, tree_owner)
        if why is not None:
            return f"a tree of the forest: {why or 'not a ' + tree_owner.rpartition('.')[2]}"
        if not hasattr(tree, "tree_"):
            return "scikit-learn's private attribute tree_ is gone from the forest's trees"
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

    def forest_output(X):
        rows32 = float32_rows(X, n_features, names)
        return walk_trees(rows32 if rows32 is not None else validate(X))

    return Candidate(forest_output, lambda rows: walk_trees(rows.astype(np.float32)), FOREST)


def float32_rows(X, n_features: int | None, names: list | None) -> np.ndarray | None:
    """The float32 copy of X a tree ensemble's validation (dtype float32, finite) would give,
    for rows it passes through unchanged (see plain_rows), or None: let the validation convert,
    warn or refuse — as it does when a value too large for float32 becomes infinite. The
    validation itself costs ~0.09 ms for an array, ~0.6 ms for a one-row DataFrame."""
    rows = plain_rows(X, n_features, names)
    if rows is None:
        return None
    rows32 = rows.astype(np.float32)
    return rows32 if np.isfinite(rows32).all() else None
