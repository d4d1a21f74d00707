"""Scalers and linear models without scikit-learn's per-call validation (app/serving/shortcuts/linear.py)
must give bit-for-bit what scikit-learn's own methods give, and must hand every input that
validation would change or refuse to scikit-learn."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlapi.serving.shortcuts import linear
from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from sklearn_validation import count_validations
from test_forest_shortcut import Counting, _noisy

CLASSIFIERS = {
    "logistic": lambda: LogisticRegression(max_iter=5000),
    "scaled_logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "centred_only": lambda: make_pipeline(StandardScaler(with_std=False), LogisticRegression(max_iter=5000)),
}
REGRESSORS = {
    "linear": LinearRegression,
    "ridge": Ridge,
    "scaled_linear": lambda: make_pipeline(StandardScaler(), LinearRegression()),
}


def _shortcuts_in_use(served: ServedModel) -> bool:
    computed = {output: route for output, route in served.compute_path.items() if output != "labels"}
    return bool(computed) and all(route == {"path": "linear"} for route in computed.values())


@pytest.mark.parametrize("dataset", [load_breast_cancer, load_iris], ids=["binary", "multiclass"])
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_shortcut_equals_predict_proba_bit_for_bit(name, dataset):
    X, y = dataset(return_X_y=True)
    labels = np.array(["no", "yes", "maybe"])[y]  # string labels, as trained
    estimator = CLASSIFIERS[name]().fit(X, labels)
    served = ServedModel(name, "1", estimator)
    assert _shortcuts_in_use(served)
    cases = [(rows, estimator.predict_proba(rows).tolist(), estimator.predict(rows).tolist())
             for rows in (X, _noisy(X), _noisy(X)[:1], _noisy(X, seed=1) * 1e3)]
    sklearn_calls = Counting(served.predictor, "predict_proba")
    for rows, proba, predicted in cases:
        before = rows.copy()
        result = served.predict(rows)
        assert result.probabilities == proba and result.predictions == predicted
        assert np.array_equal(rows, before)  # the request's own array is left as it came
    assert sklearn_calls.calls == 0


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressor_shortcut_equals_predict_bit_for_bit(name):
    X, y = load_diabetes(return_X_y=True)
    estimator = REGRESSORS[name]().fit(X, y)
    served = ServedModel(name, "1", estimator)
    assert _shortcuts_in_use(served)
    for rows in (X, _noisy(X), X[:1]):
        assert served.predict(rows).predictions == estimator.predict(rows).tolist()


def test_input_validation_would_change_or_refuse_goes_to_scikit_learn():
    X, y = load_breast_cancer(return_X_y=True)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    served = ServedModel("m", "1", estimator)
    # Converted by scikit-learn: ints, float32, Fortran order, a DataFrame without names.
    for rows in (X[:5].astype(np.int64), X[:5].astype(np.float32), np.asfortranarray(X[:5]), pd.DataFrame(X[:5])):
        assert served.predict(rows).probabilities == estimator.predict_proba(rows).tolist()
    # Refused by scikit-learn, with its own message.
    with pytest.raises(InvalidInput, match="30 features"):
        served.predict(X[:2, :29])
    for bad in (np.nan, np.inf):
        rows = X[:2].copy()
        rows[1, 3] = bad
        with pytest.raises(InvalidInput, match="NaN|infinity"):
            served.predict(rows)


def test_subclasses_and_configured_outputs_keep_scikit_learns_code():
    X, y = load_breast_cancer(return_X_y=True)

    class Sharpened(LogisticRegression):
        def predict_proba(self, X):
            return np.round(super().predict_proba(X))

    sharpened = Sharpened(max_iter=5000).fit(X, y)
    pandas_out = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).set_output(transform="pandas")
    pandas_out.fit(X, y)
    in_place = make_pipeline(StandardScaler(copy=False), LogisticRegression(max_iter=1000)).fit(X, y)
    assert ServedModel("s", "1", sharpened)._predict_proba is None
    assert ServedModel("p", "1", pandas_out)._transforms[0] == pandas_out[0].transform
    assert ServedModel("i", "1", in_place)._transforms[0] == in_place[0].transform
    for estimator in (sharpened, pandas_out, in_place):
        rows = X[:20].copy()
        assert ServedModel("m", "1", estimator).predict(rows).probabilities == estimator.predict_proba(X[:20]).tolist()


@pytest.fixture
def sklearn_validations(monkeypatch):
    """Counts scikit-learn's input validation: zero means every call went through the shortcut."""
    return count_validations(monkeypatch)


def test_models_fitted_on_dataframes_take_the_shortcut_for_their_own_columns(sklearn_validations):
    # A data scientist's model is usually fitted on a DataFrame; the server hands it one with
    # the fitted columns in the fitted order (app/serving/typed_rows.py), and that is the shortcut's input.
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = np.array(["benign", "malignant"])[y]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, labels)
    bare = LogisticRegression(max_iter=5000).fit(X, labels)
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    regressor = make_pipeline(StandardScaler(), Ridge()).fit(Xd, yd)
    noisy = pd.DataFrame(np.asfortranarray(_noisy(X.to_numpy())), columns=X.columns)
    one_noisy_row = pd.DataFrame(noisy.to_numpy()[3:4], columns=X.columns)  # as app/serving/typed_rows.py builds it
    served = {id(estimator): ServedModel("named", "1", estimator) for estimator in (pipeline, bare, regressor)}
    for estimator, shortcut_cases, other_cases in (
            (pipeline, (X, X.iloc[:1], one_noisy_row), (noisy,)),
            (bare, (X.iloc[:7], one_noisy_row), (noisy,)),
            (regressor, (Xd, Xd.iloc[:1]), ())):
        model = served[id(estimator)]
        assert _shortcuts_in_use(model)
        for rows in shortcut_cases + other_cases:
            # A frame whose values are Fortran-ordered (noisy; how pandas lays out a dataset's
            # frame depends on its release): the shortcut leaves it to scikit-learn, same answers.
            sklearn_validations["calls"] = 0
            result = model.predict(rows)
            c_ordered = rows.to_numpy().flags.c_contiguous
            assert (sklearn_validations["calls"] == 0) == c_ordered, rows.shape
            assert result.predictions == estimator.predict(rows).tolist()
            if hasattr(estimator, "predict_proba"):
                assert result.probabilities == estimator.predict_proba(rows).tolist()
    # Through the server's own input layer (rows as objects keyed by feature name, or as lists),
    # whose frames of several rows are laid out for the shortcut too.
    from mlapi.serving.instances import to_model_input

    model = served[id(pipeline)]
    objects = [dict(zip(X.columns, map(float, row))) for row in noisy.to_numpy()[:50]]
    lists = noisy.to_numpy()[:50].tolist()
    for instances in (objects[:1], objects[1:2], objects, lists[:1], lists):
        model_input = to_model_input(model, instances)
        sklearn_validations["calls"] = 0
        result = model.predict(model_input)
        assert sklearn_validations["calls"] == 0
        # The model's own answer for the very frame it was given (for several rows, scikit-learn's
        # last bit depends on the frame's memory layout, as for arrays: see the README).
        assert result.probabilities == pipeline.predict_proba(model_input).tolist()


def test_dataframes_the_shortcut_cannot_take_go_to_scikit_learn(sklearn_validations):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    served = ServedModel("named", "1", pipeline)
    assert _shortcuts_in_use(served)
    # Converted by scikit-learn, same answers: integer columns, a DataFrame subclass.
    class Frame(pd.DataFrame):
        pass

    for rows in (X.iloc[:5].astype(np.int64), Frame(X.iloc[:5])):
        sklearn_validations["calls"] = 0
        assert served.predict(rows).probabilities == pipeline.predict_proba(rows).tolist()
        assert sklearn_validations["calls"] > 0
    # Same answers and scikit-learn's own warning: a bare array, names that are not str.
    numpy_names = X.iloc[:5].copy()
    numpy_names.columns = pd.Index([np.str_(name) for name in X.columns], dtype=object)
    for rows in (X.to_numpy()[:5], numpy_names):
        with pytest.warns(UserWarning, match="valid feature names"):
            result = served.predict(rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert result.probabilities == pipeline.predict_proba(rows).tolist()
    # Refused by scikit-learn: sparse columns (it would make a sparse matrix), no rows.
    sparse_columns = X.iloc[:1].astype(pd.SparseDtype("float64", 0.0))
    with pytest.raises(InvalidInput, match="sparse"):
        served.predict(sparse_columns)
    with pytest.raises(InvalidInput, match="0 sample"):
        served.predict(X.iloc[:0])
    # Refused by scikit-learn, with its own message: columns reordered, one missing, a NaN.
    with pytest.raises(InvalidInput, match="same order"):
        served.predict(X.iloc[:2, ::-1])
    with pytest.raises(InvalidInput, match="missing"):
        served.predict(X.iloc[:2].drop(columns=["mean radius"]))
    with_nan = X.iloc[:2].copy()
    with_nan.iloc[1, 3] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        served.predict(with_nan)


@pytest.mark.parametrize("fitted_on", ["array", "dataframe"])
def test_a_release_that_computes_differently_turns_the_shortcut_off(monkeypatch, caplog, fitted_on):
    # Stands for a scikit-learn whose LogisticRegression computes its probabilities in another
    # way than ours: the probe at load must notice and leave the model to scikit-learn.
    X, y = load_breast_cancer(return_X_y=True, as_frame=fitted_on == "dataframe")
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    exact = linear._LINEAR_COMPUTE["predict_proba"]
    monkeypatch.setitem(linear._LINEAR_COMPUTE, "predict_proba",
                        lambda model: (lambda rows: exact(model)(rows) * (1 + 1e-15)))
    served = ServedModel("m", "1", estimator)
    assert served._predict_proba is None and "on a probe; using scikit-learn's own method" in caplog.text
    route = served.describe()["compute_path"]["predict_proba"]
    assert route["path"] == "scikit-learn" and route["reason"].startswith("probe mismatch: differs")
    assert served.predict(X[:30]).probabilities == estimator.predict_proba(X[:30]).tolist()
