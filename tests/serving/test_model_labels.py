"""Labels read off predict_proba must be exactly the model's own predict(), for every estimator
whose relation we trust, and the model's predict() must decide near ties and unknown estimators."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from mlapi.serving.shortcuts.select import PROBA_RELATIONS
from mlapi.serving.model import ServedModel

ESTIMATORS = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "forest": lambda: RandomForestClassifier(n_estimators=15, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=15, random_state=0),
    "tree": lambda: DecisionTreeClassifier(random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
    "gaussian_nb": lambda: GaussianNB(),
    # Platt scaling is fitted apart from the SVM's decision: predict() may disagree with
    # argmax(predict_proba()), so its labels must come from predict().
    "svc_platt": lambda: SVC(probability=True, random_state=0),
}


class CountingPredict:
    """Wraps an estimator instance's predict to count calls (the class is left alone)."""

    def __init__(self, estimator):
        self.calls = 0
        original = estimator.predict

        def predict(X):
            self.calls += 1
            return original(X)

        estimator.predict = predict


@pytest.mark.parametrize("dataset", [load_breast_cancer, load_iris], ids=["binary", "multiclass"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_served_labels_are_the_models_own_predict(name, dataset):
    X, y = dataset(return_X_y=True)
    rng = np.random.default_rng(0)
    noisy = X + rng.normal(scale=X.std(axis=0) * 0.5, size=X.shape)  # rows near the boundaries too
    estimator = ESTIMATORS[name]().fit(X, y)
    served = ServedModel(name, "1", estimator)
    for rows in (X, noisy, noisy[:1]):
        result = served.predict(rows)
        assert result.predictions == estimator.predict(rows).tolist()
        assert result.probabilities == estimator.predict_proba(rows).tolist()


def test_clear_margins_skip_the_second_model_call():
    X, y = load_breast_cancer(return_X_y=True)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    served = ServedModel("m", "1", estimator)
    counter = CountingPredict(served.predictor)
    served.predict(X[:50])
    assert counter.calls == 0


@pytest.mark.parametrize("name", ["logistic", "hist_gradient_boosting"])
def test_labels_alone_come_off_the_probability_shortcut(name):
    """Asked for labels only, a model with a predict_proba shortcut and a monotone relation
    answers from the shortcut: its own predict() (the validation the shortcut skips) is not
    called, and the labels are still exactly its predict()'s."""
    X, y = load_iris(return_X_y=True)
    estimator = ESTIMATORS[name]().fit(X, y)
    served = ServedModel(name, "1", estimator)
    assert served.compute_path["labels"] == {"path": "from-probabilities"}
    assert served.compute_path["predict_proba"]["path"] != "scikit-learn"
    want = estimator.predict(X).tolist()
    counter = CountingPredict(served.predictor)
    result = served.predict(X, probabilities=False)
    assert result.predictions == want and result.probabilities is None
    assert counter.calls == 0


def test_a_near_tie_is_decided_by_predict():
    X, y = load_breast_cancer(return_X_y=True)
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    # A decision of +1e-20 is class 1 for predict() (score > 0), while both probabilities
    # round to exactly 0.5 and argmax would say class 0.
    estimator.coef_[:] = 0.0
    estimator.intercept_[:] = 1e-20
    assert estimator.predict(X[:3]).tolist() == [1, 1, 1]
    assert np.argmax(estimator.predict_proba(X[:3]), axis=1).tolist() == [0, 0, 0]
    served = ServedModel("tie", "1", estimator)
    counter = CountingPredict(served.predictor)
    assert served.predict(X[:3]).predictions == [1, 1, 1]
    assert counter.calls == 1


def test_a_subclass_that_overrides_predict_is_not_second_guessed():
    class Shifted(RandomForestClassifier):
        def predict(self, X):
            return 1 - super().predict(X)

    X, y = load_breast_cancer(return_X_y=True)
    estimator = Shifted(n_estimators=5, random_state=0).fit(X, y)
    assert ServedModel("s", "1", estimator).predict(X[:20]).predictions == estimator.predict(X[:20]).tolist()


@pytest.mark.parametrize("path", sorted({path for _, *paths in PROBA_RELATIONS for path in paths}))
def test_every_known_relation_names_a_class_this_scikit_learn_has(path):
    # The table names private scikit-learn paths; a release that moves one would silently cost
    # every such model its second call again.
    module, _, name = path.rpartition(".")
    assert isinstance(getattr(importlib.import_module(module), name), type)
