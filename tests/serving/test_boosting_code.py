"""The boosted trees as generated code (app/serving/shortcuts/boosting_code.py): requests of a
few rows answered by it bit for bit as the model's own method, NaN, infinities and signed zeros
included; used only once it agreed with the level walk on the probe's rows; left out where it
cannot be compiled (categorical splits, tables too large). Its building after the start:
test_boosting_code_deferred.py."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import boosting_code, boosting_trees
from mlapi.serving.shortcuts.boosting_code import CODE_ROWS, build_deferred, tree_function
from mlapi.serving.shortcuts.hist_boosting import hist_table
from mlapi.serving.shortcuts.probes import probe_rows

HIST = {"path": "hist-gradient-boosting"}


@pytest.fixture(autouse=True)
def one_native_thread():
    with threadpool_limits(1):  # as the server runs models (OpenMP on a busy 2-core machine)
        yield


def _awkward_rows(X, seed=0):
    """Rows with gaps, infinities and signed zeros among ordinary ones."""
    rng = np.random.default_rng(seed)
    rows = X[rng.permutation(len(X))[:40]].copy()
    rows[rng.uniform(size=rows.shape) < 0.2] = np.nan
    rows[1, ::2], rows[2, ::3], rows[3, :] = np.inf, -np.inf, -0.0
    rows[4, :] = np.nan
    return rows


@pytest.fixture(scope="module")
def models():
    X, y = load_breast_cancer(return_X_y=True)
    gaps = X.copy()
    gaps[np.random.default_rng(1).uniform(size=X.shape) < 0.1] = np.nan
    iris_X, iris_y = load_iris(return_X_y=True)
    return {
        "binary": (HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(gaps, y), X),
        "binary-no-nan-at-fit": (HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y), X),
        "multiclass": (HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(iris_X, iris_y), iris_X),
        "regression": (HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(gaps, y * 2.5 - 1), X),
    }


@pytest.mark.parametrize("kind", ["binary", "binary-no-nan-at-fit", "multiclass", "regression"])
def test_few_rows_through_the_code_are_the_models_own_raw_sums(models, kind):
    model, X = models[kind]
    table = hist_table(model)
    table.checked_raw_sum(probe_rows(model))
    assert table.deferred_code.build()
    assert table.code is not None
    rows = _awkward_rows(X)
    for start in range(0, len(rows), CODE_ROWS):
        for size in (1, CODE_ROWS):
            batch = rows[start:start + size]
            got = table.raw_sum(batch)
            assert got.flags.f_contiguous
            assert np.array_equal(got, model._raw_predict(batch))  # bit for bit


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_a_served_model_answers_few_rows_without_walking(models, kind, monkeypatch):
    model, X = models[kind]
    served = ServedModel(kind, "1", model)
    method = "predict" if kind == "regression" else "predict_proba"
    assert served.compute_path[method] == HIST
    assert build_deferred() >= 1  # what a worker's first few-row request starts in a thread

    def no_walk(self, X):
        raise AssertionError("walked")

    monkeypatch.setattr(boosting_trees.NodeTable, "leaf_values", no_walk)
    rows = _awkward_rows(X, seed=2)
    for batch in (rows[:1], rows[4:5], rows[:CODE_ROWS]):
        result = served.predict(batch)
        assert result.predictions == model.predict(batch).tolist()
        if kind != "regression":
            assert result.probabilities == model.predict_proba(batch).tolist()
    with pytest.raises(Exception):
        served.predict(rows[:CODE_ROWS + 1])  # more rows are the walk's


def test_code_that_differs_from_the_walk_is_not_used(models, monkeypatch):
    model, X = models["binary"]
    made = boosting_code.tree_function

    def off_by_an_ulp(table):
        raw = made(table)
        return lambda row: (np.nextafter(raw(row)[0], np.inf),)

    monkeypatch.setattr(boosting_code, "tree_function", off_by_an_ulp)
    table = hist_table(model)
    probe = probe_rows(model)
    assert np.array_equal(table.checked_raw_sum(probe), model._raw_predict(probe))
    assert table.deferred_code.build() is False
    assert table.code is None
    assert np.array_equal(table.raw_sum(X[:1]), model._raw_predict(X[:1]))
    # And served: the walk answers, still the model's own probabilities.
    served = ServedModel("ulp", "1", model)
    assert served.compute_path["predict_proba"] == HIST
    build_deferred()
    assert served.predict(X[:1]).probabilities == model.predict_proba(X[:1]).tolist()


def test_categorical_splits_and_large_tables_stay_on_the_walk(models, monkeypatch):
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 6, 600), rng.normal(size=600)]).astype(np.float64)
    y = (X[:, 0] % 2 == 0) ^ (X[:, 1] > 0)
    categorical = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0], random_state=0).fit(X, y)
    assert tree_function(hist_table(categorical)) is None
    model, cancer = models["binary"]
    table = hist_table(model)
    assert tree_function(table) is not None
    monkeypatch.setattr(boosting_code, "MAX_CODE_NODES", len(table.value) - 1)
    assert tree_function(table) is None
    monkeypatch.setattr(boosting_code, "MAX_CODE_NODES", len(table.value))
    monkeypatch.setattr(boosting_code, "MAX_CODE_DEPTH", len(table.walking) - 1)
    assert tree_function(table) is None
