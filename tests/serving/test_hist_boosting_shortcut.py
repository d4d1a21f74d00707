"""HistGradientBoosting's own inputs through the shortcut (app/serving/shortcuts/hist_boosting.py):
missing values (learned with them or not), infinities, native categorical splits with known,
unseen and missing categories; each bit for bit the model's own output, and each thing the
probe must notice when a walk gets it wrong."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import boosting_trees

HIST = {"path": "hist-gradient-boosting"}


@pytest.fixture(autouse=True)
def one_native_thread():
    """As the server runs models: HistGradientBoosting's OpenMP threads on a busy 2-core
    machine made these tests 20x slower (41 s against 1.8 s)."""
    with threadpool_limits(1):
        yield


def _with_gaps(X, seed=0, share=0.15):
    rng = np.random.default_rng(seed)
    X = X.copy()
    X[rng.uniform(size=X.shape) < share] = np.nan
    return X


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


@pytest.mark.parametrize("learned_with_gaps", [True, False], ids=["nan-at-fit", "no-nan-at-fit"])
def test_missing_values_go_where_each_split_sends_them(cancer, learned_with_gaps):
    # Learned with gaps, each split chose where missing values go; learned without, scikit-learn
    # sends them to the child that saw more samples: either way missing_go_to_left says.
    X, y = cancer
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0)
    model.fit(_with_gaps(X) if learned_with_gaps else X, y)
    served = ServedModel("gaps", "1", model)
    assert served.compute_path["predict_proba"] == HIST
    rows = _with_gaps(X, seed=1, share=0.3)
    rows[0, :] = np.nan
    for batch in (rows, rows[:1], rows[5:6]):
        result = served.predict(batch)
        assert result.probabilities == model.predict_proba(batch).tolist()
        assert result.predictions == model.predict(batch).tolist()


def test_infinities_compare_as_scikit_learn_compares_them(cancer):
    X, y = cancer
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(_with_gaps(X), y)
    served = ServedModel("inf", "1", model)
    rows = X[:40].copy()
    rows[::2, ::3], rows[1::2, 1::3] = np.inf, -np.inf
    assert served.compute_path["predict"] == HIST
    assert served.predict(rows).predictions == model.predict(rows).tolist()


def _categorical_data(n=3000, seed=0):
    # Column 0: 8 categories with gaps; column 1: a number; column 2: 30 categories.
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.integers(0, 8, n), rng.normal(size=n), rng.integers(0, 30, n)]).astype(np.float64)
    X[::7, 0] = np.nan
    signal = (np.nan_to_num(X[:, 0], nan=1) % 3 == 0) ^ (X[:, 1] > 0.2) ^ (X[:, 2] % 4 == 1)
    return X, signal.astype(int) + (X[:, 2] > 20)


def _unusual(X):
    rows = X[:200].copy()
    rows[::5, 2] = 99.0      # a category never seen
    rows[1::5, 0] = 3.5      # not a category at all
    rows[2::5, 0] = -1.0
    rows[3::5, 2] = np.nan
    return rows


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_native_categorical_splits_known_unseen_and_missing_categories(kind):
    X, y = _categorical_data()
    if kind == "regression":
        model = HistGradientBoostingRegressor(max_iter=30, categorical_features=[0, 2], random_state=0).fit(X, y * 1.5)
    else:
        model = HistGradientBoostingClassifier(max_iter=30, categorical_features=[0, 2], random_state=0)
        model.fit(X, y if kind == "multiclass" else y > 0)
    served = ServedModel("categories", "1", model)
    method = "predict" if kind == "regression" else "predict_proba"
    assert served.compute_path[method] == HIST
    for rows in (X, _unusual(X), _unusual(X)[2:3]):
        result = served.predict(rows)
        assert result.predictions == model.predict(rows).tolist()
        if kind != "regression":
            assert result.probabilities == model.predict_proba(rows).tolist()


def test_the_probe_holds_every_category_an_unseen_one_and_nan():
    from mlapi.serving.shortcuts.probes import probe_rows

    X, y = _categorical_data()
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0, 2], random_state=0).fit(X, y)
    rows = probe_rows(model)
    for column in (0, 2):
        known = np.unique(X[:, column][~np.isnan(X[:, column])])
        assert np.isin(known, rows[:, column]).all()
        assert np.isnan(rows[:, column]).any() and (rows[:, column] == known.max() + 1).any()
    assert np.isinf(rows[:, 1]).any() and not np.isinf(rows[:, [0, 2]]).any()


def test_infinity_in_a_categorical_column_is_the_models_own_error():
    X, y = _categorical_data()
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0, 2], random_state=0).fit(X, y)
    served = ServedModel("categories", "1", model)
    rows = X[:3].copy()
    rows[1, 0] = np.inf
    with pytest.raises(ValueError) as own:
        model.predict_proba(rows)
    with pytest.raises(InvalidInput) as ours:
        served.predict(rows)
    assert "instance 1, feature 0" in str(ours.value) and str(own.value).rstrip(".") in str(ours.value)


def test_string_categories_are_left_to_scikit_learn_with_the_reason():
    X, y = _categorical_data(n=600)
    frame = pd.DataFrame({"plan": pd.Categorical(np.array(["basic", "pro", "team", "free"])[X[:, 2].astype(int) % 4]),
                          "spend": X[:, 1]})
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features="from_dtype", random_state=0).fit(frame, y)
    served = ServedModel("plans", "1", model)
    route = served.compute_path["predict_proba"]
    assert route["path"] == "scikit-learn" and "non-numeric categories" in route["reason"]
    assert served.predict(frame[:20]).probabilities == model.predict_proba(frame[:20]).tolist()


def test_categorical_splits_without_the_internal_encoder_are_left_to_scikit_learn():
    # As a release whose model reads raw values as category codes would be: no encoder to follow.
    X, y = _categorical_data(n=600)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0, 2], random_state=0).fit(X, y)
    model._preprocessor = None
    route = ServedModel("raw codes", "1", model).compute_path["predict_proba"]
    assert route == {"path": "scikit-learn", "reason": "native categorical splits without scikit-learn's "
                     "internal category encoder: left to scikit-learn"}


def _wrong_after_build(monkeypatch, spoil):
    built = boosting_trees.NodeTable.__init__

    def spoiled(self, *args, **kwargs):
        built(self, *args, **kwargs)
        spoil(self)

    monkeypatch.setattr(boosting_trees.NodeTable, "__init__", spoiled)


def test_missing_values_sent_the_wrong_way_are_caught_by_the_probe(cancer, monkeypatch):
    X, y = cancer
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(_with_gaps(X), y)
    _wrong_after_build(monkeypatch, lambda table: setattr(table, "missing_right", ~table.missing_right))
    route = ServedModel("wrong", "1", model).compute_path["predict_proba"]
    assert route["path"] == "scikit-learn" and route["reason"].startswith("probe mismatch"), route
    # Only missing values reveal it: the spoiled walk is right on complete rows.
    monkeypatch.undo()
    assert ServedModel("right", "1", model).compute_path["predict_proba"] == HIST


def test_unseen_categories_sent_the_wrong_way_are_caught_by_the_probe(monkeypatch):
    X, y = _categorical_data()
    model = HistGradientBoostingClassifier(max_iter=20, categorical_features=[0, 2], random_state=0).fit(X, y)
    # Unknown codes (NaN after encoding) always to the right, whatever the split learned.
    _wrong_after_build(monkeypatch, lambda table: table.category_lookup.__setitem__((slice(None), -1), True))
    route = ServedModel("wrong", "1", model).compute_path["predict_proba"]
    assert route["path"] == "scikit-learn" and route["reason"].startswith("probe mismatch"), route
