"""The boosted trees' walk on threshold ranks (app/serving/shortcuts/boosting_trees.py,
_RankedNodes) against the model's own raw predictions, bit for bit, on the rows where a rank
could be off: values exactly at, and one float either side of, every split; NaN (both missing
directions), ±inf, -0.0; batches of every walk shape (few rows, one chunk, several chunks)."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlapi.serving.shortcuts.boosting_trees import CHUNK_ROWS, NodeTable, _RankedNodes
from mlapi.serving.shortcuts.hist_boosting import hist_table

from test_boosting_shortcut import rows_at_splits


@pytest.fixture(autouse=True)
def one_native_thread():
    with threadpool_limits(1):
        yield


def _with_gaps(X, seed=0):
    X = np.array(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < 0.15] = np.nan
    return X


def _odd_rows(X, seed=2):
    """Rows of X with NaN, ±inf and -0.0 / 0.0 dropped in at random places."""
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), 400)].copy()
    for value in (np.nan, np.inf, -np.inf, -0.0, 0.0):
        rows[rng.random(rows.shape) < 0.05] = value
    return rows


CASES = {
    "binary, missing values": (HistGradientBoostingClassifier, load_breast_cancer, True),
    "multiclass, missing values": (HistGradientBoostingClassifier, load_iris, True),
    "regression, missing values": (HistGradientBoostingRegressor, load_diabetes, True),
    "binary, complete": (HistGradientBoostingClassifier, load_breast_cancer, False),
    "regression, complete": (HistGradientBoostingRegressor, load_diabetes, False),
}


@pytest.mark.parametrize("case", CASES)
def test_the_rank_walk_gives_the_models_raw_predictions(case, monkeypatch):
    monkeypatch.setattr(_RankedNodes, "pays", lambda self, n_rows: True)  # at every batch size
    estimator, dataset, gaps = CASES[case]
    X, y = dataset(return_X_y=True)
    X = _with_gaps(X) if gaps else np.asarray(X, dtype=np.float64)
    model = estimator(max_iter=30, max_depth=None, random_state=0).fit(X, y)
    table = hist_table(model)
    rows = np.concatenate([rows_at_splits(model, np.nan_to_num(X)), _odd_rows(np.nan_to_num(X))])
    if not gaps:  # a model that saw no missing value sends them where scikit-learn does: test it too
        rows = np.concatenate([rows, _with_gaps(rows[:200], seed=3)])
    for count in (9, 57, CHUNK_ROWS, CHUNK_ROWS + 1, 3 * CHUNK_ROWS - 5):
        for start in range(0, len(rows) - count, 2 * count):
            batch = np.ascontiguousarray(rows[start:start + count])
            expected = model._raw_predict(batch)
            assert np.array_equal(table._walked_sum(batch, "ranks"), expected, equal_nan=True), (case, count, start)
            assert np.array_equal(table.raw_sum(batch), expected, equal_nan=True), (case, count, start)
    assert table.ranks  # the walk above was the rank walk


def test_ranks_place_missing_values_by_each_nodes_direction(monkeypatch):
    monkeypatch.setattr(_RankedNodes, "pays", lambda self, n_rows: True)
    # Two one-split trees on feature 0, threshold 1.0: one sends missing values right, one left.
    def tree(missing_left):
        return dict(feature=np.array([0, 0, 0]), threshold=np.array([1.0, 0, 0]), left=np.array([1, 0, 0]),
                    right=np.array([2, 0, 0]), is_leaf=np.array([0, 1, 1]), value=np.array([0.0, 10.0, 20.0]),
                    missing_left=np.array([missing_left, 0, 0]))

    table = NodeTable([tree(0), tree(1)], 1)
    rows = np.array([[np.nan], [1.0], [np.nextafter(1.0, 2)], [np.inf], [-np.inf]] * 4)
    leaves = table.leaf_values(rows)
    assert leaves[:, :5].tolist() == [[20.0, 10.0, 20.0, 20.0, 10.0], [10.0, 10.0, 20.0, 20.0, 10.0]]
    assert table.ranks


def test_the_rank_walk_serves_where_it_pays():
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    X, y = load_breast_cancer(return_X_y=True)
    table = hist_table(model.fit(X[:, :7], y))
    table.raw_sum(X[:9, :7])
    assert table.ranks and table.ranks.pays(9) and table.ranks.pays(100)
    wide = hist_table(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y))
    wide.raw_sum(X[:9])
    assert not wide.ranks.pays(9)  # 30 features, 5 shallow trees: the value walk


@pytest.mark.parametrize("broken", ["ranks", "values", "masks"])
def test_a_walk_that_disagrees_with_the_other_leaves_the_model_on_scikit_learn(broken, monkeypatch):
    # Requests find their leaves three ways (masks for rows without NaN, the rank walk for many
    # rows with one, the walk on values for a few): the probe checks each against the walk on
    # values, so one broken (a leaf off by one) is caught whichever it is.
    from mlapi.serving.model import ServedModel
    from mlapi.serving.shortcuts.boosting_masks import LeafMasks

    X, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X[:, :7], y)
    if broken == "masks":
        found = LeafMasks.leaf_values

        def off_by_one_leaf(self, rows):
            values = found(self, rows)
            values[-1, :1] += 1.0  # the last tree's first row
            return values

        monkeypatch.setattr(LeafMasks, "leaf_values", off_by_one_leaf)
    else:
        owner, name = (_RankedNodes, "step") if broken == "ranks" else (NodeTable, "_step")
        step = getattr(owner, name)

        def off_by_one_node(self, at, *args):
            step(self, at, *args)
            at[:1] ^= 1  # the first (tree, row) pair lands on its sibling

        monkeypatch.setattr(owner, name, off_by_one_node)
    served = ServedModel("broken", "1", model)
    route = served.compute_path["predict_proba"]
    assert route["path"] == "scikit-learn"
    if broken != "values":  # the walk on values agrees with the model: the broken way is named
        assert f"the leaves found by {broken} and the walk on values differ" in route["reason"], route
    rows = X[:5, :7]
    assert served.predict(rows).probabilities == model.predict_proba(rows).tolist()
