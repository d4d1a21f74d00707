"""Leaves found by bit masks (app/serving/shortcuts/boosting_masks.py) against the model's own
raw predictions, bit for bit: at and one float either side of every split, ±inf and -0.0, in
batches of every shape; trees of up to 32 leaves (uint32 masks), up to 64 (uint64), more (no
masks: the walk); a row with a missing value goes to the walk; tables past their size cap are
not built; both lowest-bit computations."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlapi.serving.shortcuts import boosting_masks
from mlapi.serving.shortcuts.boosting_masks import LeafMasks, lowest_bit, lowest_bit_by_exponent
from mlapi.serving.shortcuts.hist_boosting import hist_table

from test_boosting_shortcut import rows_at_splits


@pytest.fixture(autouse=True)
def one_native_thread():
    with threadpool_limits(1):
        yield


def _edge_rows(X, seed=4):
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), 300)].copy()
    for value in (np.inf, -np.inf, -0.0, 0.0):
        rows[rng.random(rows.shape) < 0.05] = value
    return rows


CASES = {
    "binary": (HistGradientBoostingClassifier, load_breast_cancer, {}),
    "multiclass": (HistGradientBoostingClassifier, load_iris, {}),
    "regression": (HistGradientBoostingRegressor, load_diabetes, {}),
    "binary, 60 leaves (uint64)": (HistGradientBoostingClassifier, load_breast_cancer, {"max_leaf_nodes": 60}),
}


@pytest.mark.parametrize("case", CASES)
def test_masks_give_the_models_raw_predictions(case):
    estimator, dataset, options = CASES[case]
    X, y = dataset(return_X_y=True)
    model = estimator(max_iter=30, max_depth=None, min_samples_leaf=2, random_state=0, **options).fit(X, y)
    table = hist_table(model)
    rows = np.concatenate([rows_at_splits(model, X), _edge_rows(np.asarray(X, dtype=np.float64))])
    for count in (1, 2, 9, 128, 129, len(rows)):
        for start in range(0, len(rows) - count + 1, max(count, 97)):
            batch = np.ascontiguousarray(rows[start:start + count])
            assert np.array_equal(table._walked_sum(batch, "masks"), model._raw_predict(batch)), (case, count, start)
    assert table.masks and table.masks.dtype == (np.uint64 if "uint64" in case else np.uint32)


def test_gradient_boosting_finds_its_leaves_by_masks(monkeypatch):
    from mlapi.serving.model import ServedModel
    from mlapi.serving.shortcuts import boosting

    tables = []
    built = boosting.NodeTable
    monkeypatch.setattr(boosting, "NodeTable", lambda *args, **kwargs: tables.append(built(*args, **kwargs)) or tables[-1])
    X, y = load_iris(return_X_y=True)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    served = ServedModel("gb", "1", model)
    assert served.compute_path["predict_proba"] == {"path": "gradient-boosting"}
    rows = rows_at_splits(model, X)
    assert served.predict(rows).probabilities == model.predict_proba(rows).tolist()
    [table] = tables
    assert table.masks and table.masks.dtype == np.uint32  # the masks served, not the walk


def test_trees_of_more_than_64_leaves_are_walked():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 4))
    y = np.sin(3 * X).sum(axis=1) + rng.normal(scale=0.1, size=len(X))
    model = HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=100, min_samples_leaf=1, random_state=0).fit(X, y)
    assert max(predictor[0].get_n_leaf_nodes() for predictor in model._predictors) > 64
    table = hist_table(model)
    rows = rows_at_splits(model, X)[:200]
    assert np.array_equal(table.raw_sum(rows), model._raw_predict(rows))
    assert table.masks is False and table.ranks


def test_tables_past_their_cap_are_not_built(monkeypatch):
    monkeypatch.setattr(boosting_masks, "MAX_TABLE_BYTES", 1000)
    monkeypatch.setattr(LeafMasks, "__init__", lambda *args: pytest.fail("tables built past the cap"))
    X, y = load_breast_cancer(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    table = hist_table(model)
    assert np.array_equal(table.raw_sum(X[:50]), model._raw_predict(X[:50]))
    assert table.masks is False


def test_a_row_with_a_missing_value_takes_the_walk(monkeypatch):
    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[::7, 3] = np.nan
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    table = hist_table(model)
    table.raw_sum(X[1:3])  # builds the tables (rows without NaN: by masks)
    calls = []
    found = LeafMasks.leaf_values
    monkeypatch.setattr(LeafMasks, "leaf_values", lambda self, rows: calls.append(len(rows)) or found(self, rows))
    complete, gaps = X[~np.isnan(X).any(axis=1)][:40], X[:40]  # rows 0, 7, ... hold a NaN
    assert np.array_equal(table.raw_sum(complete), model._raw_predict(complete))
    assert np.array_equal(table.raw_sum(gaps), model._raw_predict(gaps))
    assert calls == [40]  # the request with a missing value was walked


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_both_lowest_bit_computations(dtype):
    rng = np.random.default_rng(0)
    bits = np.iinfo(dtype).bits
    masks = rng.integers(1, np.iinfo(dtype).max, size=(50, 64), dtype=dtype, endpoint=True)
    masks[0, :bits] = (dtype(1) << np.arange(bits, dtype=dtype))  # every single bit
    expected = np.array([[(int(m) & -int(m)).bit_length() - 1 for m in row] for row in masks])
    assert np.array_equal(lowest_bit(masks), expected)
    lowest = masks & (~masks + dtype(1))
    assert np.array_equal(lowest_bit_by_exponent(lowest), expected)
