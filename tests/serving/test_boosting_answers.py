"""A boosted model's answer side: raw sums → probabilities or predictions → labels, for a
request's few rows in Python floats (app/serving/shortcuts/boosting_link.py, select.py's
binary labels) and for larger batches by numpy; every answer bit for bit the model's own
predict / predict_proba, NaN and infinite inputs included."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import boosting_link
from mlapi.serving.shortcuts.boosting_code import CODE_ROWS, build_deferred
from mlapi.serving.shortcuts.select import MONOTONE, TIE_MARGIN, argmax_labels
from test_boosting_code import _awkward_rows, models  # noqa: F401 (models: a fixture used here)

HIST = {"path": "hist-gradient-boosting"}


@pytest.fixture(autouse=True)
def one_native_thread():
    with threadpool_limits(1):  # as the server runs models (OpenMP on a busy 2-core machine)
        yield


@pytest.fixture(scope="module")
def answer_models(models):
    """test_boosting_code's models, and two more: string classes, a Poisson regressor (log link)."""
    X, y = load_breast_cancer(return_X_y=True)
    X = np.where(np.random.default_rng(5).uniform(size=X.shape) < 0.1, np.nan, X)
    return {**models,
            "binary-strings": (HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(
                X, np.where(y == 1, "benign", "malignant")), models["binary"][1]),
            "poisson": (HistGradientBoostingRegressor(loss="poisson", max_iter=30, random_state=0).fit(X, y * 3 + 1),
                        models["binary"][1])}


def _batches(rows):
    yield from (rows[start:start + size] for size in (1, 2, CODE_ROWS) for start in range(0, 24, size))
    yield from (rows[:CODE_ROWS + 1], rows[:33], rows)


@pytest.mark.parametrize("kind", ["binary", "binary-strings", "multiclass", "regression", "poisson"])
def test_every_batch_size_answers_the_models_own_output(answer_models, kind):
    model, X = answer_models[kind]
    served = ServedModel(kind, "1", model)
    method = "predict" if kind in ("regression", "poisson") else "predict_proba"
    assert served.compute_path[method] == HIST
    for batch in _batches(_awkward_rows(X)):
        labels, proba = served.predict_arrays(batch)
        assert np.array_equal(labels, model.predict(batch))  # bit for bit, dtype and all
        assert labels.dtype == model.predict(batch).dtype
        if method == "predict_proba":
            assert np.array_equal(proba, model.predict_proba(batch))


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_few_rows_skip_the_losss_numpy_code(models, kind, monkeypatch):
    model, X = models[kind]
    served = ServedModel(kind, "1", model)
    build_deferred()  # the trees' code, which a worker's first few-row request builds in a thread
    rows = _awkward_rows(X, seed=3)
    expected = {size: (model.predict(rows[:size]), model.predict_proba(rows[:size]) if kind == "binary" else None)
                for size in (1, CODE_ROWS, CODE_ROWS + 1)}

    def no_loss(*args, **kwargs):
        raise AssertionError("the loss's numpy code ran")

    if kind == "binary":
        monkeypatch.setattr(type(model._loss), "predict_proba", no_loss)
    monkeypatch.setattr(type(model._loss.link), "inverse", no_loss)
    for size in (1, CODE_ROWS):
        labels, proba = served.predict_arrays(rows[:size])
        assert np.array_equal(labels, expected[size][0])
        if kind == "binary":
            assert np.array_equal(proba, expected[size][1])
    with pytest.raises(AssertionError, match="numpy code ran"):
        served.predict_arrays(rows[:CODE_ROWS + 1])  # more rows are numpy's


def test_a_python_sigmoid_that_differs_is_not_used(models, monkeypatch):
    # Should Python's exp ever round differently from scipy's, the probe's check notices and
    # the loss's own code answers every row.
    model, X = models["binary"]

    class OffByAnUlp:
        @staticmethod
        def exp(value):
            return float(np.nextafter(math.exp(value), np.inf))  # OverflowError as math's

    monkeypatch.setattr(boosting_link, "math", OffByAnUlp)
    served = ServedModel("ulp", "1", model)
    assert served.compute_path["predict_proba"] == HIST
    for batch in (X[:1], X[:CODE_ROWS]):
        assert np.array_equal(served.predict_arrays(batch)[1], model.predict_proba(batch))
    assert boosting_link.link_for(model._loss, "predict_proba", 1, None) is None


def test_raw_sums_where_exp_overflows_are_the_losss():
    from sklearn._loss.loss import HalfBinomialLoss

    loss = HalfBinomialLoss()
    link = boosting_link.link_for(loss, "predict_proba", 1, None)
    assert link is not None
    raws = [-750.0, -709.5, -30.0, -1e-300, 0.0, 1e-300, 30.0, 750.0]
    got = link([(raw,) for raw in raws if raw > -709.0])
    assert np.array_equal(got, loss.predict_proba(np.array([raw for raw in raws if raw > -709.0])))
    assert link([(-750.0,)]) is None  # math.exp overflows: numpy's turn


def test_an_m3_like_pipeline_answers_as_the_pipeline():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"plan": rng.choice(["free", "basic", "pro"], 800), "a": rng.normal(size=800),
                          "b": rng.exponential(50.0, 800), "c": rng.uniform(-10, 10, 800)})
    y = (frame["a"] + (frame["plan"] == "pro") + rng.normal(size=800) > 0.5).astype(int)
    model = Pipeline([
        ("columns", ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                       ("numbers", StandardScaler(), ["a", "b", "c"])])),
        ("boost", HistGradientBoostingClassifier(max_iter=40, random_state=0)),
    ]).fit(frame, y)
    served = ServedModel("m3", "1", model)
    requests = frame.sample(60, random_state=1).reset_index(drop=True)
    requests.loc[3, "a"], requests.loc[4, "plan"] = np.nan, "unknown"
    for batch in (requests[:1], requests[3:5], requests[:CODE_ROWS], requests):
        result = served.predict(batch)
        assert result.predictions == model.predict(batch).tolist()
        assert result.probabilities == model.predict_proba(batch).tolist()


# ---- labels read off binary probabilities, row by row -----------------------------------------
def _numpy_labels(classes, proba):
    """argmax_labels' numpy reading of a MONOTONE binary model, as before the few-row form."""
    with np.errstate(invalid="ignore"):  # NaN and infinite probabilities are cases here
        if np.any(np.abs(proba[:, 1] - proba[:, 0]) < TIE_MARGIN):
            return None
    return classes.take(np.argmax(proba, axis=1), axis=0)


@pytest.mark.parametrize("classes", [np.array([0, 1]), np.array(["no", "yes"], dtype=object), np.array([2.5, 7.0])])
def test_few_row_binary_labels_are_numpys(classes):
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    cases = [np.column_stack([1 - p, p])[i:i + size] for size in (1, 3, 8) for i in range(0, 40, size)]
    cases += [np.array([[0.5, 0.5]]), np.array([[0.5, 0.5 + TIE_MARGIN / 2]]), np.array([[0.4, 0.6], [0.5, 0.5]]),
              np.array([[np.nan, 0.3]]), np.array([[0.3, np.nan]]), np.array([[np.nan, np.nan]]),
              np.array([[np.inf, np.inf]]), np.array([[0.2, np.inf]]), np.array([[0.5, 0.5 + 2 * TIE_MARGIN]])]
    for proba in cases:
        expected = _numpy_labels(classes, proba)
        got = argmax_labels(classes, proba, MONOTONE)
        if expected is None:
            assert got is None, proba
        else:
            assert got.dtype == expected.dtype and got.tolist() == expected.tolist(), proba


def test_no_rows_give_no_labels():
    got = argmax_labels(np.array([0, 1]), np.zeros((0, 2)), MONOTONE)
    assert got.shape == (0,)


# ---- the level walk, compacted to the pairs not yet at a leaf ---------------------------------
@pytest.mark.parametrize("compaction", [(6, 3), (1, 1), (2, 5), (99, 1)],
                         ids=["default", "every-step", "sparse", "never"])
def test_the_compacted_walk_gives_the_models_raw_sums(models, compaction, monkeypatch):
    from mlapi.serving.shortcuts import boosting_trees
    from mlapi.serving.shortcuts.hist_boosting import _categorical_encoder, hist_table

    monkeypatch.setattr(boosting_trees, "COMPACT_FROM", compaction[0])
    monkeypatch.setattr(boosting_trees, "COMPACT_EVERY", compaction[1])
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, 1500)
    numbers = rng.normal(size=(1500, 2))
    X = np.column_stack([codes, numbers]).astype(np.float64)
    y = ((codes % 3 == 0) + numbers[:, 0] + rng.normal(size=1500) > 0.8).astype(int)
    categorical = HistGradientBoostingClassifier(max_iter=20, max_depth=None, categorical_features=[0],
                                                 random_state=0).fit(X, y)
    rows = np.vstack([X[:200], [[np.nan, 0.1, np.nan], [9.0, np.inf, -np.inf], [-1.0, 0.0, -0.0]]])
    cases = [(models[kind][0], _awkward_rows(models[kind][1])) for kind in ("binary", "multiclass", "regression")]
    depths = []
    for model, batch in cases + [(categorical, rows)]:
        table, encode = hist_table(model), _categorical_encoder(model)
        depths.append(len(table.walking))
        for size in (1, 2, 9, 40, len(batch)):
            features = batch[:size] if encode is None else encode(batch[:size])  # category codes
            walked = np.add.accumulate(table.leaf_values(features).reshape(-1, table.n_outputs, size), axis=0)[-1].T
            assert np.array_equal(walked, model._raw_predict(batch[:size]))
    assert max(depths) > 6  # deep enough for the default compaction
