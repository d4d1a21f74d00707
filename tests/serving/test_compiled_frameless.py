"""A model whose feature steps are compiled gets a request's columns without a DataFrame
(frames.RequestColumns): the answers are the model's own predict_proba on the DataFrame mlapi
built before, for every input; input the compiled steps defer goes to scikit-learn on that same
DataFrame; input the model refuses gets the same 422 as before."""
from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlapi.errors import InvalidInput
from mlapi.serving import frames
from mlapi.serving.frames import RequestColumns
from mlapi.serving.instances import Columns, to_model_input
from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import compiled_pipeline
from mlapi.serving.shortcuts.compiled_pipeline import read_columns

PLANS = ["free", "basic", "pro", "enterprise"]


def plans_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"plan": rng.choice(PLANS, n), "a": rng.normal(0, 1, n),
                         "b": rng.exponential(50.0, n), "c": rng.uniform(-10, 10, n)})


@pytest.fixture(scope="module")
def boosted(tmp_path_factory):
    """The peer benchmark's M3 in small: OneHotEncoder + StandardScaler → HistGradientBoosting."""
    train = plans_frame(800, 0)
    labels = (train.a + train.b / 50 + (train.plan == "pro") > 1.5).astype(int)
    estimator = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                (StandardScaler(), ["a", "b", "c"])),
        HistGradientBoostingClassifier(max_iter=20, random_state=0)).fit(train, labels)
    path = tmp_path_factory.mktemp("boosted") / "boosted.joblib"
    joblib.dump(estimator, path)
    model = ServedModel("boosted", "1", estimator)
    assert model.compute_path["features"] == {"path": "compiled"}
    return path, estimator, model


def rows_of(n: int, seed: int = 1) -> list[dict]:
    return [{"plan": str(plan), "a": float(a), "b": float(b), "c": float(c)}
            for plan, a, b, c in plans_frame(n, seed).itertuples(index=False)]


ONE = rows_of(1)[0]
# Inputs the compiled steps answer themselves from the request's columns.
PLAIN = {
    "one row": [ONE],
    "many rows": rows_of(60),
    "null plan": [{**ONE, "plan": None}, ONE],
    "null number": [{**ONE, "a": None}],
    "NaN": [{**ONE, "b": float("nan")}, {**ONE, "plan": float("nan")}],
    "unseen category": [{**ONE, "plan": "platinum"}, ONE],
    "number sent as text": [{**ONE, "a": "1.5"}, {**ONE, "c": " -2 "}],
    "whole numbers": [{**ONE, "a": 3, "b": 40}],
    "ints beside floats": [{**ONE, "a": 1}, {**ONE, "a": 2.5}],
    "a number for the category": [{**ONE, "plan": 3}],
    "a big int": [{**ONE, "b": 2**70}],
}


def no_frame(*_args, **_kwargs):
    raise AssertionError("a DataFrame was built")


def answer(model: ServedModel, model_input):
    try:
        result = model.predict(model_input)
    except InvalidInput as exc:
        return exc.message, exc.details
    return result.predictions, result.probabilities


@pytest.mark.parametrize("rows", PLAIN.values(), ids=PLAIN.keys())
def test_requests_answer_from_their_columns_without_a_dataframe(boosted, monkeypatch, rows):
    _, estimator, model = boosted
    frame = to_model_input(model, rows)  # the DataFrame mlapi built for the model before
    expected = estimator.predict(frame).tolist(), estimator.predict_proba(frame).tolist()
    monkeypatch.setattr(frames, "frame_from_arrays", no_frame)
    columns = to_model_input(model, rows, frameless=True)
    assert type(columns) is RequestColumns and columns.plain
    assert answer(model, columns) == expected
    split = Columns(["c", "b", "a", "plan"], [[row["c"], row["b"], row["a"], row["plan"]] for row in rows])
    assert answer(model, to_model_input(model, split, frameless=True)) == expected
    np.testing.assert_array_equal(model.features(to_model_input(model, rows, frameless=True)),
                                  estimator[:-1].transform(frame))


@pytest.mark.parametrize("rows", PLAIN.values(), ids=PLAIN.keys())
def test_the_columns_handed_over_are_those_the_dataframe_gives_back(boosted, rows):
    """What makes the answers equal: each array is the one the compiled steps read off the DataFrame."""
    _, _, model = boosted
    columns = to_model_input(model, rows, frameless=True)
    handed = read_columns(columns, 4, model.feature_names)
    from_frame = read_columns(columns.frame(), 4, model.feature_names)
    assert len(handed) == len(from_frame) == 4
    for ours, theirs in zip(handed, from_frame):
        assert ours.dtype == theirs.dtype
        assert [(type(v), v) for v in ours.tolist() if v == v] == [(type(v), v) for v in theirs.tolist() if v == v]
        assert [v != v for v in ours.tolist()] == [v != v for v in theirs.tolist()]


# Inputs the compiled steps leave to scikit-learn (deferred), or that pandas may read anew (not plain).
DEFERRED = {
    "infinity": [{**ONE, "b": float("inf")}],
    "text where a number belongs": [ONE, {**ONE, "a": "twelve"}],
    "text and a null in a number column": [{**ONE, "a": "x"}, {**ONE, "a": None}],
    "a bool for a number": [{**ONE, "a": True}],
}


@pytest.mark.parametrize("rows", DEFERRED.values(), ids=DEFERRED.keys())
def test_deferred_input_goes_to_scikit_learn_on_the_same_dataframe(boosted, monkeypatch, rows):
    _, _, model = boosted
    before = answer(model, to_model_input(model, rows))  # the DataFrame path, as it was
    seen = []

    def spy(model_input):
        frame = frames.as_frame(model_input)
        seen.append(frame)
        return frame
    monkeypatch.setattr(compiled_pipeline, "as_frame", spy)
    columns = to_model_input(model, rows, frameless=True)
    assert answer(model, columns) == before
    assert len(seen) == 1, "scikit-learn's chain was not asked"
    pd.testing.assert_frame_equal(seen[0], to_model_input(model, rows))


def test_bad_input_gets_the_same_422_over_http(boosted, make_app, monkeypatch):
    path, _, model = boosted
    client = make_app(MODELS=f"boosted={path}").test_client()
    bad = {"text in a number column": [ONE, {**ONE, "b": "lots"}],
           "infinity": [{**ONE, "c": float("inf")}],
           "a list in a cell": [{**ONE, "a": [1, 2]}],
           "an extra column": [{**ONE, "d": 1.0}],
           "a missing column": [{"plan": "pro", "a": 1.0, "b": 2.0}],
           "a category as an object": [{**ONE, "plan": {"name": "pro"}}]}
    for name, rows in bad.items():
        try:
            model.predict(to_model_input(model, rows))
        except InvalidInput as exc:
            expected = exc.message
        else:
            raise AssertionError(f"{name}: the DataFrame path answered")
        got = client.post("/models/boosted/predict", json={"instances": rows})
        assert got.status_code == 422 and got.get_json()["error"]["message"] == expected, (name, got.get_json())
    explained = client.post("/models/boosted/predict", json={"instances": [ONE, {**ONE, "b": "lots"}]})
    assert explained.get_json()["error"]["message"].startswith("instance 1, column 'b'")


@pytest.mark.parametrize("settings", [{}, {"MAX_BATCH_SIZE": "8", "MAX_BATCH_WAIT_MS": "1"}, {"CACHE_ROUTES": "all"}],
                         ids=["plain", "micro-batching", "cache"])
def test_every_route_answers_the_models_own_predict_proba(boosted, make_app, settings):
    path, estimator, model = boosted
    client = make_app(MODELS=f"boosted={path}", **settings).test_client()
    rows = [*rows_of(12, 5), {**ONE, "plan": None}, {**ONE, "plan": "platinum"}, {**ONE, "a": "0.25"}]
    frame = to_model_input(model, rows)
    for _ in range(2):
        got = client.post("/models/boosted/predict", json={"instances": rows}).get_json()
        assert got["probabilities"] == estimator.predict_proba(frame).tolist()
        assert got["predictions"] == estimator.predict(frame).tolist()


def test_a_numeric_model_fitted_on_a_dataframe_takes_its_matrix_as_columns(monkeypatch):
    train = plans_frame(400, 2)[["a", "b", "c"]]
    train.loc[::7, "a"] = np.nan
    estimator = make_pipeline(SimpleImputer(), StandardScaler(),
                              HistGradientBoostingClassifier(max_iter=10, random_state=0)).fit(train, train.b > 50)
    model = ServedModel("numbers", "1", estimator)
    assert model.compute_path["features"] == {"path": "compiled"}
    rows = [[1.0, None, 3.0], [float("nan"), 60.0, -1.0], [0.5, 10.0, 2.0]]
    frame = to_model_input(model, rows)
    expected = estimator.predict(frame).tolist(), estimator.predict_proba(frame).tolist()
    monkeypatch.setattr(frames, "frame_from_arrays", no_frame)
    monkeypatch.setattr(pd, "DataFrame", no_frame)
    columns = to_model_input(model, rows, frameless=True)
    assert type(columns) is RequestColumns and answer(model, columns) == expected


def test_encoders_that_drop_or_refuse_answer_from_columns_as_scikit_learn_does(monkeypatch):
    """A category without a column of its own (drop=, unknown ignored) and refusals
    (handle_unknown="error"): the compiled answer or refusal from the columns is scikit-learn's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OrdinalEncoder

    train = plans_frame(300, 3).assign(region=lambda f: np.where(f.a > 0, "eu", "us"),
                                       size=lambda f: np.where(f.b > 40, "big", "small"))
    estimator = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]),
                                (OneHotEncoder(drop="first", handle_unknown="ignore"), ["region"]),
                                (OrdinalEncoder(), ["size"]), (StandardScaler(), ["a", "b", "c"])),
        LogisticRegression(max_iter=500)).fit(train, train.c > 0)
    compiled, plain = ServedModel("m", "1", estimator), ServedModel("m", "1", estimator, compiled_path=False)
    assert compiled.compute_path["features"] == {"path": "compiled"}
    good = {"plan": "pro", "region": "eu", "size": "big", "a": 0.5, "b": 20.0, "c": 1.0}
    cases = [[good], [good, {**good, "region": "us"}, {**good, "region": "mars"}],
             [good, {**good, "plan": "platinum"}], [{**good, "size": "huge"}], [{**good, "plan": None}]]
    for rows in cases:
        expected = answer(plain, to_model_input(plain, rows))
        assert answer(compiled, to_model_input(compiled, rows, frameless=True)) == expected, rows
    expected = answer(plain, to_model_input(plain, cases[1]))
    monkeypatch.setattr(frames, "frame_from_arrays", no_frame)  # an answered request built no DataFrame
    assert answer(compiled, to_model_input(compiled, cases[1], frameless=True)) == expected


def test_a_model_loaded_through_joblib_keeps_its_compiled_features(tmp_path):
    """How every served model arrives: joblib's arrays carry float64 dtype objects of their own
    (equal to numpy's, not the same object); the probe's rows drawn from them must not defer."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"zone": rng.choice([10.0, 20.0, 30.0], 300), "a": rng.normal(size=300),
                          "b": rng.normal(size=300)})
    fitted = make_pipeline(make_column_transformer((OneHotEncoder(), ["zone"]),
                                                   (make_pipeline(SimpleImputer(), MinMaxScaler()), ["a", "b"])),
                           LogisticRegression()).fit(train, train.a > 0)
    joblib.dump(fitted, tmp_path / "zones.joblib")
    loaded = ServedModel("zones", "1", joblib.load(tmp_path / "zones.joblib"))
    assert loaded.compute_path["features"] == {"path": "compiled"}
    rows = [{"zone": 20.0, "a": 0.5, "b": -1.0}, {"zone": 30.0, "a": None, "b": 2.0}]
    expected = pd.DataFrame(rows).astype({"a": float})
    assert answer(loaded, to_model_input(loaded, rows, frameless=True)) == (
        fitted.predict(expected).tolist(), fitted.predict_proba(expected).tolist())


def test_a_finite_matrix_whose_sum_overflows_is_no_warning_and_no_deferral():
    import warnings

    from mlapi.serving.shortcuts.compiled_steps import float_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matrix = float_matrix([np.array([1.5e308, 1.5e308]), np.array([1.0, 2.0])])
    assert matrix.tolist() == [[1.5e308, 1.0], [1.5e308, 2.0]]
