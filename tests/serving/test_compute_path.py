"""Which code computes each output (a shortcut or scikit-learn's own method) is decided at load,
on probe rows from the model's fitted range, and shown with its reason: never switched off
silently."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from conftest import models_env
from mlapi.serving.shortcuts import forests, linear
from mlapi.serving.shortcuts import select as estimators
from mlapi.serving.shortcuts.select import MONOTONE, argmax_labels
from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts.probes import probe_rows


def test_models_and_the_load_log_show_each_models_compute_path(make_app, trained, caplog):
    with caplog.at_level(logging.INFO):
        client = make_app(MODELS=models_env(trained, "cancer", "diabetes", "text")).test_client()
    cancer = client.get("/models/cancer/versions/1").get_json()["compute_path"]
    assert cancer == {"standardscaler.transform": {"path": "linear"}, "predict_proba": {"path": "linear"},
                      "labels": {"path": "from-probabilities"}}
    assert client.get("/models/diabetes/versions/1").get_json()["compute_path"] == {"predict": {"path": "forest"}}
    text = client.get("/models/text/versions/1").get_json()["compute_path"]
    assert text["tfidfvectorizer.transform"] == {"path": "scikit-learn",
                                                 "reason": "no shortcut for TfidfVectorizer.transform"}
    assert "compute path: standardscaler.transform=linear, predict_proba=linear, labels=from-probabilities" in caplog.text


def test_a_classifier_without_a_known_relation_says_why():
    X, y = load_iris(return_X_y=True)
    path = ServedModel("svc", "1", SVC(probability=True, random_state=0).fit(X, y)).compute_path
    assert path["predict_proba"] == {"path": "scikit-learn", "reason": "no shortcut for SVC.predict_proba"}
    assert path["labels"]["path"] == "scikit-learn" and "no known relation" in path["labels"]["reason"]
    no_proba = ServedModel("svc", "1", SVC().fit(X, y)).compute_path
    assert no_proba == {"labels": {"path": "scikit-learn", "reason": "no predict_proba to read labels from"}}


def test_a_moved_private_module_is_named_and_the_model_served_by_scikit_learn(monkeypatch):
    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    moved = tuple((owner.replace("._forest.", "._forest_moved."), *rest) for owner, *rest in forests.FOREST_METHODS)
    monkeypatch.setattr(forests, "FOREST_METHODS", moved)
    served = ServedModel("f", "1", forest)
    assert served.compute_path["predict_proba"] == {
        "path": "scikit-learn",
        "reason": "scikit-learn's private module sklearn.ensemble._forest_moved moved: "
                  "ForestClassifier is now in sklearn.ensemble._forest"}
    assert served.predict(X[:20]).probabilities == forest.predict_proba(X[:20]).tolist()


def test_probe_rows_span_the_fitted_range():
    X, y = load_breast_cancer(return_X_y=True)
    far = X * 10 + 1000.0  # far from the zeros and ones a range-blind probe would use
    scaler = StandardScaler().fit(far)
    rows = probe_rows(scaler)
    assert (rows.min(axis=0) >= scaler.mean_ - 3 * scaler.scale_).all()
    assert (rows.max(axis=0) <= scaler.mean_ + 3 * scaler.scale_).all()
    assert (rows.std(axis=0) > scaler.scale_).all()
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(far, y)
    rows = probe_rows(forest)
    thresholds = np.concatenate([tree.tree_.threshold[tree.tree_.feature >= 0] for tree in forest.estimators_])
    assert rows.flags.c_contiguous and rows.dtype == np.float64
    assert np.isin(rows, thresholds).sum() > len(rows)  # values exactly at splits
    assert rows.min() >= thresholds.min() - 0.1 * np.ptp(far) and (rows > 1000).mean() > 0.9


def test_a_shortcut_wrong_only_in_the_fitted_range_is_caught(monkeypatch, caplog):
    # Right on zeros and ones, wrong beyond 500: only rows from the fitted range reveal it.
    X, y = load_breast_cancer(return_X_y=True)
    far = X + 1000.0
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(far, y)
    exact = linear._LINEAR_COMPUTE["transform"]

    def wrong_far_out(scaler):
        compute = exact(scaler)
        return lambda rows: compute(rows) + (rows > 500) * 1e-12
    monkeypatch.setitem(linear._LINEAR_COMPUTE, "transform", wrong_far_out)
    with caplog.at_level(logging.WARNING):
        served = ServedModel("far", "1", pipeline)
    route = served.compute_path["standardscaler.transform"]
    assert route["path"] == "scikit-learn" and route["reason"].startswith("probe mismatch: differs")
    assert "StandardScaler.transform" in caplog.text and "using scikit-learn's own method" in caplog.text
    assert served.predict(far[:10]).probabilities == pipeline.predict_proba(far[:10]).tolist()


def test_labels_from_probabilities_that_disagree_on_the_probe_fall_back_to_predict(monkeypatch, caplog):
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    monkeypatch.setattr(estimators, "argmax_labels", lambda classes, proba, relation: classes.take(
        np.argmin(proba, axis=1)))  # stands for a release whose predict() no longer is the argmax
    with caplog.at_level(logging.WARNING):
        served = ServedModel("iris", "1", model)
    assert served.compute_path["labels"]["path"] == "scikit-learn"
    assert served.compute_path["labels"]["reason"].startswith("probe mismatch")
    assert "labels (from-probabilities)" in caplog.text
    assert served.predict(X).predictions == model.predict(X).tolist()


def test_a_multiclass_near_tie_is_decided_by_predict():
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    # Softmax of scores [0, 1e-20, 0] is exactly [1/3, 1/3, 1/3]: argmax says class 0, the
    # model's own predict (argmax of the scores) says class 1.
    model.coef_[:] = 0.0
    model.intercept_[:] = [0.0, 1e-20, 0.0]
    assert model.predict(X[:3]).tolist() == [1, 1, 1]
    assert np.argmax(model.predict_proba(X[:3]), axis=1).tolist() == [0, 0, 0]
    assert argmax_labels(model.classes_, model.predict_proba(X[:3]), MONOTONE) is None
    served = ServedModel("tie", "1", model)
    assert served.compute_path["labels"] == {"path": "from-probabilities"}
    assert served.predict(X[:3]).predictions == [1, 1, 1]


SHORTCUT_FOR = {
    # estimator: what each output must be computed by, in every scikit-learn setup.py allows
    # (`make test-sklearn-range`): a release that moves a private module fails here.
    "LogisticRegression": (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                           {"standardscaler.transform": "linear", "predict_proba": "linear",
                            "labels": "from-probabilities"}),
    "RandomForestClassifier": (lambda: RandomForestClassifier(n_estimators=5, random_state=0),
                               {"predict_proba": "forest", "labels": "from-probabilities"}),
    "ExtraTreesRegressor": (lambda: ExtraTreesRegressor(n_estimators=5, random_state=0), {"predict": "forest"}),
    "LinearRegression": (LinearRegression, {"predict": "linear"}),
    "Ridge": (Ridge, {"predict": "linear"}),
    "DecisionTreeClassifier": (lambda: DecisionTreeClassifier(random_state=0),
                               {"predict_proba": "scikit-learn", "labels": "from-probabilities"}),
    "HistGradientBoostingClassifier": (lambda: HistGradientBoostingClassifier(max_iter=5),
                                       {"predict_proba": "hist-gradient-boosting", "labels": "from-probabilities"}),
    "GaussianNB": (GaussianNB, {"predict_proba": "scikit-learn", "labels": "from-probabilities"}),
}


@pytest.mark.parametrize("name", sorted(SHORTCUT_FOR))
def test_every_known_estimator_takes_its_shortcuts_in_this_scikit_learn(name):
    build, expected = SHORTCUT_FOR[name]
    X, y = load_breast_cancer(return_X_y=True)
    estimator = build().fit(X, y)
    served = ServedModel(name, "1", estimator)
    assert {output: route["path"] for output, route in served.compute_path.items()} == expected, served.compute_path
