"""Scalers and linear models without scikit-learn's per-call validation (app/estimators.py)
must give bit-for-bit what scikit-learn's own methods give, and must hand every input that
validation would change or refuse to scikit-learn."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app import estimators
from app.errors import InvalidInput
from app.model import ServedModel
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
    steps = served._transforms + [served._predict_proba or served._predict_labels]
    return all(getattr(step, "__name__", "") == "linear_output" for step in steps)


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


def test_models_fitted_on_dataframes_subclasses_and_configured_outputs_keep_scikit_learns_code():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)

    class Sharpened(LogisticRegression):
        def predict_proba(self, X):
            return np.round(super().predict_proba(X))

    named = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    sharpened = Sharpened(max_iter=5000).fit(X.to_numpy(), y)
    pandas_out = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).set_output(transform="pandas")
    pandas_out.fit(X.to_numpy(), y)
    in_place = make_pipeline(StandardScaler(copy=False), LogisticRegression(max_iter=1000)).fit(X.to_numpy(), y)
    assert ServedModel("n", "1", named)._transforms[0] == named[0].transform
    assert ServedModel("s", "1", sharpened)._predict_proba is None
    assert ServedModel("p", "1", pandas_out)._transforms[0] == pandas_out[0].transform
    assert ServedModel("i", "1", in_place)._transforms[0] == in_place[0].transform
    for estimator, rows in ((named, X.iloc[:20]), (sharpened, X.to_numpy()[:20]), (pandas_out, X.to_numpy()[:20])):
        assert ServedModel("m", "1", estimator).predict(rows).probabilities == estimator.predict_proba(rows).tolist()


def test_a_release_that_computes_differently_turns_the_shortcut_off(monkeypatch, caplog):
    # Stands for a scikit-learn whose LogisticRegression computes its probabilities in another
    # way than ours: the probe at load must notice and leave the model to scikit-learn.
    X, y = load_breast_cancer(return_X_y=True)
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    exact = estimators._LINEAR_COMPUTE["predict_proba"]
    monkeypatch.setitem(estimators._LINEAR_COMPUTE, "predict_proba",
                        lambda model: (lambda rows: exact(model)(rows) * (1 + 1e-15)))
    served = ServedModel("m", "1", estimator)
    assert served._predict_proba is None and "disagrees with scikit-learn" in caplog.text
    assert served.predict(X[:30]).probabilities == estimator.predict_proba(X[:30]).tolist()
