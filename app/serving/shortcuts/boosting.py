"""GradientBoostingClassifier.predict_proba / GradientBoostingRegressor.predict from the fitted
trees: the init estimator's raw prediction, then learning_rate × each stage's leaf value, added
stage after stage as predict_stages does, and the loss's own predict_proba.

scikit-learn validates the rows twice per call (the model, then its first tree) and walks each
of the n_stages × n_classes trees in its own call; here the rows are converted to float32 as
that validation would (forests.float32_rows), all trees are walked at once
(boosting_trees.py) on the same float32 values, and each leaf value is scaled by the same
multiplication predict_stages does, once at load. Only the default init estimator (a constant:
the class prior, the mean or a quantile) and init='zero' are supported: a custom init
estimator's raw prediction depends on the rows. app/serving/shortcuts/select.py probes the
drop-in against the model's own method.
"""
from __future__ import annotations

import numpy as np

from mlapi.serving.shortcuts.boosting_trees import MAX_ROWS, NodeTable
from mlapi.serving.shortcuts.forests import float32_rows
from mlapi.serving.shortcuts.sklearn_code import Candidate, find_known, fitted_names, owner_mismatch

BOOSTING = "gradient-boosting"

_MODULE = "sklearn.ensemble._gb."
# (class, method, and the methods it calls with their owners, which must be scikit-learn's too).
BOOSTING_METHODS = (
    (_MODULE + "GradientBoostingClassifier", "predict_proba",
     (("decision_function", _MODULE + "GradientBoostingClassifier"),
      ("_raw_predict", _MODULE + "BaseGradientBoosting"), ("_raw_predict_init", _MODULE + "BaseGradientBoosting"))),
    (_MODULE + "GradientBoostingRegressor", "predict",
     (("_raw_predict", _MODULE + "BaseGradientBoosting"), ("_raw_predict_init", _MODULE + "BaseGradientBoosting"))),
)
_DEFAULT_INITS = ("sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor")


def boosting_candidate(model, method: str) -> Candidate | str:
    """A drop-in for model.<method> when it is a plain GradientBoosting model's, else why not
    (UNRELATED for an estimator of another kind)."""
    known, why = find_known(model, method, BOOSTING_METHODS)
    if known is None:
        return why
    why = helper_mismatch(model, known[2])
    if why is not None:
        return why
    stages = getattr(model, "estimators_", None)
    if stages is None or not len(stages):
        return "not fitted"
    init = getattr(model, "init_", None)
    if model.init is not None and not (isinstance(model.init, str) and model.init == "zero"):
        return f"init={type(model.init).__name__}: a custom init estimator's raw prediction depends on the rows"
    if init != "zero" and f"{type(init).__module__}.{type(init).__name__}" not in _DEFAULT_INITS:
        return f"init_ is a {type(init).__name__}, not the default constant one"
    n_features, names = model.n_features_in_, fitted_names(model)
    # The raw prediction before any tree: a constant the model's own code computes (the same
    # for every row), added first as predict_stages adds to it.
    start = model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0]
    table = NodeTable([_tree_nodes(tree.tree_, model.learning_rate) for stage in stages for tree in stage],
                      stages.shape[1], starts=(start,))
    loss, original = model._loss, getattr(model, method)

    def compute(rows32):
        raw = np.ascontiguousarray(table.raw_sum(rows32.astype(np.float64)))  # C, as _raw_predict's
        return loss.predict_proba(raw.ravel() if raw.shape[1] == 1 else raw) if method == "predict_proba" else raw.ravel()

    def boosting_output(X):
        rows32 = float32_rows(X, n_features, names)
        return compute(rows32) if rows32 is not None and len(rows32) <= MAX_ROWS else original(X)

    return Candidate(boosting_output, lambda rows: compute(rows.astype(np.float32)), BOOSTING)


def helper_mismatch(model, helpers) -> str | None:
    """Why one of the (method, owner path) pairs a known method calls is not scikit-learn's own
    in this model (a subclass overriding it, a moved module), or None when all are.
    (linear.py checks its helpers the same way, in its own loop.)"""
    for name, owner in helpers:
        why = owner_mismatch(model, name, owner)
        if why is not None:
            return why or f"{type(model).__name__}.{name} is not {owner}'s"
    return None


def _tree_nodes(tree, scale: float) -> dict:
    """A regression tree's nodes for NodeTable: predict_stages compares the float32 value
    (promoted to double) with the float64 threshold and adds scale * value."""
    return dict(feature=tree.feature, threshold=tree.threshold, left=tree.children_left,
                right=tree.children_right, is_leaf=tree.children_left == -1, value=scale * tree.value[:, 0, 0])
