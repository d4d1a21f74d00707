"""Gradient boosting from its fitted structures (app/serving/shortcuts/hist_boosting.py,
boosting.py, boosting_trees.py) must give bit for bit what the model's own predict_proba /
predict give — on random rows and on rows exactly at and next to every split — and must stand
aside, saying why, whenever it cannot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor)
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import boosting_trees
from mlapi.serving.shortcuts.boosting_trees import MAX_ROWS
from mlapi.serving.shortcuts.probes import probe_rows
from sklearn_validation import count_validations

@pytest.fixture(autouse=True)
def one_native_thread():
    """As the server runs models: HistGradientBoosting's OpenMP threads on a busy 2-core
    machine made these tests 20x slower (41 s against 1.8 s)."""
    with threadpool_limits(1):
        yield


DATASETS = {"binary": load_breast_cancer, "multiclass": load_iris, "regression": load_diabetes}
# family: (classifier, regressor, its parameter for the number of iterations, its compute path)
FAMILIES = {"hist": (HistGradientBoostingClassifier, HistGradientBoostingRegressor, "max_iter", "hist-gradient-boosting"),
            "gb": (GradientBoostingClassifier, GradientBoostingRegressor, "n_estimators", "gradient-boosting")}
MODELS = [(family, task) for family in FAMILIES for task in DATASETS]


def build(family: str, task: str, iterations: int = 30, **params):
    classifier, regressor, count, _ = FAMILIES[family]
    return (regressor if task == "regression" else classifier)(**{count: iterations}, random_state=0, **params)


def _noisy(X, seed=0):
    rng = np.random.default_rng(seed)
    return X + rng.normal(scale=X.std(axis=0) * 0.5, size=X.shape)


def split_points(model) -> tuple[np.ndarray, np.ndarray]:
    """(feature, threshold) of every numeric split of the model, as the model stores them."""
    if hasattr(model, "_predictors"):
        nodes = np.concatenate([p.nodes for iteration in model._predictors for p in iteration])
        split = ~nodes["is_leaf"].astype(bool)
        return nodes["feature_idx"][split], nodes["num_threshold"][split]
    trees = [tree.tree_ for stage in model.estimators_ for tree in stage]
    return (np.concatenate([t.feature[t.feature >= 0] for t in trees]),
            np.concatenate([t.threshold[t.feature >= 0] for t in trees]))


def rows_at_splits(model, X, seed=1) -> np.ndarray:
    """Rows of X with one value moved exactly onto a split, or one float (float64 or float32)
    either side of it."""
    features, thresholds = split_points(model)
    as32 = thresholds.astype(np.float32)
    values = np.concatenate([thresholds, np.nextafter(thresholds, -np.inf), np.nextafter(thresholds, np.inf),
                             np.nextafter(as32, np.float32(-np.inf)), np.nextafter(as32, np.float32(np.inf))])
    features = np.tile(features, 5)
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), len(values))].copy()
    rows[np.arange(len(values)), features] = values
    return np.ascontiguousarray(rows, dtype=np.float64)


def _fit(family, task):
    X, y = DATASETS[task](return_X_y=True)
    return build(family, task).fit(X, y), X, FAMILIES[family][3], "predict" if task == "regression" else "predict_proba"


@pytest.mark.parametrize("family, task", MODELS)
def test_bit_for_bit_on_random_rows_and_at_every_split(family, task, monkeypatch):
    model, X, path, method = _fit(family, task)
    served = ServedModel("boosted", "1", model)
    assert served.compute_path[method] == {"path": path}
    # Batches up to MAX_ROWS are the shortcut's; larger ones the model's own compiled loop's.
    batches = [rows for whole in (X, _noisy(X), rows_at_splits(model, X))
               for rows in np.array_split(whole, -(-len(whole) // MAX_ROWS))] + [_noisy(X)[:1]]
    cases = [(rows, getattr(model, method)(rows).tolist(), model.predict(rows).tolist()) for rows in batches]
    validations = count_validations(monkeypatch)  # zero: scikit-learn's own method did not run
    for rows, expected, labels in cases:
        result = served.predict(rows)
        assert result.predictions == (labels if task != "regression" else expected)
        if task != "regression":
            assert result.probabilities == expected
    assert validations["calls"] == 0
    big = np.resize(_noisy(X), (MAX_ROWS + 1, X.shape[1]))
    result = served.predict(big)
    assert validations["calls"] > 0
    assert getattr(result, "predictions" if task == "regression" else "probabilities") == \
        getattr(model, method)(big).tolist()
    if task != "regression":
        assert served.compute_path["labels"] == {"path": "from-probabilities"}


@pytest.mark.parametrize("family, task", MODELS)
def test_the_probe_holds_every_split_and_the_floats_either_side(family, task):
    model, X, _, _ = _fit(family, task)
    rows = probe_rows(model)
    features, thresholds = split_points(model)
    if family == "gb":  # compared in float32: the float32 values around each threshold
        as32 = thresholds.astype(np.float32)
        near = [as32, np.nextafter(as32, np.float32(-np.inf)), np.nextafter(as32, np.float32(np.inf))]
    else:
        near = [thresholds, np.nextafter(thresholds, -np.inf), np.nextafter(thresholds, np.inf)]
    for values in near:
        for feature, value in zip(features, np.asarray(values, dtype=np.float64)):
            assert value in rows[:, feature], (feature, value)
    assert np.isnan(rows).any() == (family == "hist")  # only HistGradientBoosting takes NaN


@pytest.mark.parametrize("family", ["hist", "gb"])
def test_a_dataframe_fitted_model_takes_the_servers_frames_and_nulls_without_validation(family, monkeypatch):
    from mlapi.serving.instances import to_model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    # HistGradientBoosting learns with missing values and takes them: JSON nulls, as NaN.
    model = build(family, "binary").fit(X.mask(X > X.quantile(0.9)) if family == "hist" else X, y)
    served = ServedModel("frame", "1", model)
    validations = count_validations(monkeypatch)
    instances = _noisy(X.to_numpy())[:40].tolist()
    if family == "hist":
        instances[0][3] = instances[1][7] = instances[2][0] = None
    for sent in (instances[:1], instances, [dict(zip(X.columns, row)) for row in instances[:3]]):
        rows = to_model_input(served, sent)
        validations["calls"] = 0
        result = served.predict(rows)
        assert validations["calls"] == 0
        assert result.probabilities == model.predict_proba(rows).tolist()
        assert result.predictions == model.predict(rows).tolist()
    # Anything else goes to the model's own method: ints, a frame of other columns' order.
    for rows in (X.iloc[:5].round().astype(np.int64), X.iloc[:5, ::-1]):
        if list(rows.columns) != list(X.columns):
            with pytest.raises(Exception, match="feature names"):
                model.predict_proba(rows)
            continue
        assert served.predict(rows).probabilities == model.predict_proba(rows).tolist()


@pytest.mark.parametrize("family", ["hist", "gb"])
def test_a_pipeline_ending_in_a_booster_uses_it(family):
    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), build(family, "multiclass")).fit(X, y)
    served = ServedModel("pipe", "1", model)
    assert served.compute_path["predict_proba"]["path"] == FAMILIES[family][3]
    rows = _noisy(X)
    assert served.predict(rows).probabilities == model.predict_proba(rows).tolist()
    assert served.predict(rows).predictions == model.predict(rows).tolist()


def test_subclasses_that_override_what_the_shortcut_replaces_keep_their_own_code():
    X, y = load_diabetes(return_X_y=True)

    class Clipped(HistGradientBoostingRegressor):
        def predict(self, X):
            return np.clip(super().predict(X), 50, 250)

    class Shifted(GradientBoostingRegressor):
        def _raw_predict(self, X):
            return super()._raw_predict(X) + 1.0

    for model in (Clipped(max_iter=10).fit(X, y), Shifted(n_estimators=10).fit(X, y)):
        served = ServedModel("sub", "1", model)
        route = served.compute_path["predict"]
        assert route["path"] == "scikit-learn" and "overrides" in route["reason"], route
        assert served.predict(X[:30]).predictions == model.predict(X[:30]).tolist()


def test_a_custom_init_estimator_is_left_to_scikit_learn():
    X, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=10, init=LinearRegression()).fit(X, y)
    served = ServedModel("init", "1", model)
    assert served.compute_path["predict"]["path"] == "scikit-learn"
    assert "init=LinearRegression" in served.compute_path["predict"]["reason"]
    assert served.predict(X[:30]).predictions == model.predict(X[:30]).tolist()
    zero = GradientBoostingRegressor(n_estimators=10, init="zero").fit(X, y)
    assert ServedModel("zero", "1", zero).compute_path["predict"] == {"path": "gradient-boosting"}


@pytest.mark.parametrize("family, task", [("hist", "binary"), ("gb", "multiclass"), ("gb", "regression")])
def test_a_walk_off_by_one_float_at_the_splits_is_caught_by_the_probe(family, task, monkeypatch, caplog):
    # `<` where scikit-learn compares `<=`: right on every random row, wrong only for a value
    # exactly at a split, which the probe puts there for every split of the model.
    model, X, _, method = _fit(family, task)
    built = boosting_trees.NodeTable.__init__

    def strict(self, *args, **kwargs):
        built(self, *args, **kwargs)
        # x <= prev(t)  ⇔  x < t, at splits (a leaf's +inf threshold keeps every row left)
        self.threshold = np.where(self.is_leaf, self.threshold, np.nextafter(self.threshold, -np.inf))

    monkeypatch.setattr(boosting_trees.NodeTable, "__init__", strict)
    served = ServedModel("wrong", "1", model)
    route = served.compute_path[method]
    assert route["path"] == "scikit-learn" and route["reason"].startswith("probe mismatch: differs"), route
    assert "the shortcut differs from scikit-learn" in caplog.text
    rows = rows_at_splits(model, X)
    assert getattr(served.predict(rows), "probabilities" if method == "predict_proba" else "predictions") == \
        getattr(model, method)(rows).tolist()


def test_a_gradient_boosting_model_loads_and_answers_through_the_server(make_app, tmp_path):
    import joblib

    X, y = load_iris(return_X_y=True, as_frame=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = GradientBoostingClassifier(n_estimators=15, random_state=0).fit(X, labels)
    joblib.dump(model, tmp_path / "gb.joblib")
    client = make_app(MODELS=f"gb={tmp_path / 'gb.joblib'}").test_client()
    assert client.get("/models/gb/versions/1").get_json()["compute_path"]["predict_proba"] == {
        "path": "gradient-boosting"}
    rows = _noisy(X.to_numpy())[:5]
    answer = client.post("/models/gb/predict", json={"instances": rows.tolist()}).get_json()
    frame = pd.DataFrame(rows, columns=X.columns)
    assert answer["predictions"] == model.predict(frame).tolist()
    assert answer["probabilities"] == model.predict_proba(frame).tolist()
