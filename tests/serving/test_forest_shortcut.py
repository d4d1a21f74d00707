"""Forests walked tree by tree without joblib (app/serving/shortcuts/forests.py) must give bit-for-bit what
scikit-learn's own predict_proba / predict give, and must stand aside whenever they cannot."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from sklearn_validation import count_validations

CLASSIFIERS = {
    "random_forest": lambda: RandomForestClassifier(n_estimators=25, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=25, random_state=0),
    "pipeline": lambda: make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=25, random_state=0)),
}
REGRESSORS = {
    "random_forest": lambda: RandomForestRegressor(n_estimators=25, random_state=0),
    "extra_trees": lambda: ExtraTreesRegressor(n_estimators=25, random_state=0),
}


def _noisy(X, seed=0):
    rng = np.random.default_rng(seed)
    return X + rng.normal(scale=X.std(axis=0) * 0.5, size=X.shape)


class Counting:
    """Counts calls to one method of one estimator instance (the class is left alone)."""

    def __init__(self, estimator, method):
        self.calls = 0
        original = getattr(estimator, method)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        setattr(estimator, method, counted)


@pytest.mark.parametrize("dataset", [load_breast_cancer, load_iris], ids=["binary", "multiclass"])
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_shortcut_equals_predict_proba_bit_for_bit(name, dataset):
    X, y = dataset(return_X_y=True)
    estimator = CLASSIFIERS[name]().fit(X, y)
    served = ServedModel(name, "1", estimator)
    assert served._predict_proba is not None
    cases = [(rows, estimator.predict_proba(rows).tolist(), estimator.predict(rows).tolist())
             for rows in (X, _noisy(X), _noisy(X)[:1])]
    sklearn_calls = Counting(served.predictor, "predict_proba")
    for rows, proba, labels in cases:
        result = served.predict(rows)
        assert result.probabilities == proba and result.predictions == labels
        labels_only = served.predict(rows, probabilities=False)
        assert labels_only.predictions == labels and labels_only.probabilities is None
    assert sklearn_calls.calls == 0


def test_string_labels_and_a_dataframe_with_feature_names():
    X, y = load_iris(return_X_y=True, as_frame=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, labels)
    served = ServedModel("iris", "1", estimator)
    rows = X.sample(40, random_state=1)
    result = served.predict(rows)
    assert result.predictions == estimator.predict(rows).tolist()
    assert result.probabilities == estimator.predict_proba(rows).tolist()


@pytest.fixture
def forest_validations(monkeypatch):
    """Counts scikit-learn's input validation (the forests' _validate_X_predict ends in it):
    zero means the shortcut converted the rows itself."""
    return count_validations(monkeypatch)


@pytest.mark.parametrize("fitted_on", ["array", "dataframe"])
def test_rows_validation_would_pass_unchanged_skip_it(fitted_on, forest_validations):
    # Finite float64 rows of the fitted width (for a DataFrame-fitted forest: a DataFrame with
    # exactly its columns, as the server builds it) are converted to float32 here, as the
    # forest's validation would; everything else still goes through that validation.
    from mlapi.serving.instances import to_model_input

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    fit_rows = X if fitted_on == "dataframe" else X.to_numpy()
    estimator = RandomForestClassifier(n_estimators=15, random_state=0).fit(fit_rows, y)
    served = ServedModel("f", "1", estimator)
    noisy = _noisy(X.to_numpy())
    # The server's own inputs; for an array-fitted forest a C-ordered array too (how a dataset's
    # frame, and so its arrays, are laid out depends on the pandas release).
    plain = [to_model_input(served, noisy[:n].tolist()) for n in (1, 40)]
    if fitted_on == "array":
        plain.append(np.ascontiguousarray(fit_rows[:3]))
    for rows in plain:
        forest_validations["calls"] = 0
        result = served.predict(rows)
        assert forest_validations["calls"] == 0
        assert result.probabilities == estimator.predict_proba(rows).tolist()
        assert result.predictions == estimator.predict(rows).tolist()
    converted = [noisy[:5].astype(np.float32), np.asfortranarray(noisy[:5]), noisy[:5].round().astype(np.int64)]
    if fitted_on == "dataframe":
        converted = [pd.DataFrame(rows, columns=X.columns) for rows in converted[::2]]
    for rows in converted:
        forest_validations["calls"] = 0
        assert served.predict(rows).probabilities == estimator.predict_proba(rows).tolist()
        assert forest_validations["calls"] > 0
    # Refused by the forest's validation, with its message: infinity, a value that float32
    # cannot hold (finite as float64, infinite once converted), no rows.
    for bad in (np.inf, 1e39):
        rows = noisy[:2].copy()
        rows[1, 4] = bad
        with pytest.raises(InvalidInput, match="infinity or a value too large"):
            served.predict(to_model_input(served, rows.tolist()) if fitted_on == "dataframe" else rows)
    with pytest.raises(InvalidInput, match="0 sample"):
        served.predict(fit_rows[:0])


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressor_shortcut_equals_predict_bit_for_bit(name):
    X, y = load_diabetes(return_X_y=True)
    estimator = REGRESSORS[name]().fit(X, y)
    served = ServedModel(name, "1", estimator)
    assert served._predict_labels is not None
    cases = [(rows, estimator.predict(rows).tolist()) for rows in (X, _noisy(X), _noisy(X)[:1])]
    sklearn_calls = Counting(served.predictor, "predict")
    for rows, expected in cases:
        assert served.predict(rows).predictions == expected
    assert sklearn_calls.calls == 0


def test_missing_values_follow_the_trees_learned_direction():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[::7, 3] = np.nan  # trained with gaps: each split learned where a missing value goes
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    served = ServedModel("gaps", "1", estimator)
    assert served._predict_proba is not None
    rows = _noisy(np.nan_to_num(X))
    rows[::3, [3, 5, 10]] = np.nan
    assert served.predict(rows).probabilities == estimator.predict_proba(rows).tolist()


def test_bad_input_is_the_forests_own_error():
    X, y = load_breast_cancer(return_X_y=True)
    served = ServedModel("f", "1", RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y))
    with pytest.raises(InvalidInput, match="30 features"):
        served.predict(X[:2, :29])
    rows = X[:2].copy()
    rows[0, 0] = np.inf
    with pytest.raises(InvalidInput, match="infinity"):
        served.predict(rows)


def test_parallel_forests_and_subclasses_keep_scikit_learns_code():
    X, y = load_breast_cancer(return_X_y=True)

    class Sharpened(RandomForestClassifier):
        def predict_proba(self, X):
            return np.round(super().predict_proba(X))

    parallel = RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0).fit(X, y)
    sharpened = Sharpened(n_estimators=5, random_state=0).fit(X, y)
    for estimator in (parallel, sharpened):
        served = ServedModel("f", "1", estimator)
        assert served._predict_proba is None
        assert served.predict(X[:30]).probabilities == estimator.predict_proba(X[:30]).tolist()


@pytest.mark.parametrize("fitted_on", ["array", "dataframe"])
def test_a_release_whose_trees_report_other_values_turns_the_shortcut_off(monkeypatch, fitted_on):
    # Stands for a scikit-learn whose trees report probabilities differently than they store
    # them: the probe at load must notice and leave the model to scikit-learn.
    X, y = load_breast_cancer(return_X_y=True, as_frame=fitted_on == "dataframe")
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    original = DecisionTreeClassifier.predict_proba
    monkeypatch.setattr(DecisionTreeClassifier, "predict_proba",
                        lambda self, X, check_input=True: original(self, X, check_input) / 2)
    served = ServedModel("f", "1", estimator)
    assert served._predict_proba is None
    assert served.predict(X[:30]).probabilities == estimator.predict_proba(X[:30]).tolist()


def test_pandas_input_without_names_for_a_forest_fitted_on_arrays():
    X, y = load_breast_cancer(return_X_y=True)
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    rows = pd.DataFrame(X[:10])
    assert ServedModel("f", "1", estimator).predict(rows).probabilities == estimator.predict_proba(rows).tolist()


def test_a_forest_the_probe_cannot_run_on_still_loads_without_the_shortcut():
    X, y = load_breast_cancer(return_X_y=True)
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)

    def refuse(X):
        raise TypeError("this forest only takes its own input type")

    estimator._validate_X_predict = refuse  # instance attribute: the class is left alone
    served = ServedModel("f", "1", estimator)
    assert served._predict_proba is None and served.task == "classification"
