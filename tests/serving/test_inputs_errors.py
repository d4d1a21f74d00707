"""A DataFrame model's bad value names its instance and column; a missing value reaches a model
that takes one.

The models are what a newcomer brings: a ColumnTransformer with a string category (and a zip
code that looks like a number) beside numeric columns, fitted on a DataFrame; the same with
imputers; a HistGradientBoostingClassifier, which takes NaN itself; a boosting regressor
whose pipeline imputes some columns and not another. Each request form the native protocol
accepts (objects, lists, dataframe_split, dataframe_records) goes through the app
(create_app), and the answers are compared with the model's own predict on a DataFrame.
"""
from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from review_model import reviews, text_column_pipeline
from mlapi.errors import InvalidInput, RequestTimeout
from mlapi.serving.columns import column_types
from mlapi.serving.input_faults import explain_rejection
from mlapi.serving.instances import to_model_input
from mlapi.serving.model import ServedModel

COLUMNS = ["plan", "zip", "age", "income"]
PLANS = ["basic", "family", "premium"]
ZIPS = ["01234", "02139", "10001"]


def customers(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"plan": rng.choice(PLANS, n), "zip": rng.choice(ZIPS, n),
                          "age": rng.integers(18, 80, n).astype(float),
                          "income": rng.normal(50_000, 15_000, n).round(2)})
    churn = (frame["plan"] == "basic") ^ (frame["age"] > 50) ^ (frame["zip"] == "01234")
    return frame, np.where(churn, "churn", "stay")


def strict_pipeline():
    """Neither encoder nor model takes a missing value or an unknown category."""
    return make_pipeline(
        ColumnTransformer([("categories", OneHotEncoder(), ["plan", "zip"]),
                           ("numbers", StandardScaler(), ["age", "income"])]),
        LogisticRegression(max_iter=1000))


def imputing_pipeline():
    return make_pipeline(
        ColumnTransformer([
            ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                         OneHotEncoder(handle_unknown="ignore")), ["plan", "zip"]),
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age", "income"])]),
        LogisticRegression(max_iter=1000))


def visitors(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"plan": rng.choice(PLANS, n), "age": rng.integers(18, 80, n).astype(float),
                          "income": rng.normal(50_000, 15_000, n).round(2),
                          "visits": rng.integers(0, 30, n).astype(float)})
    return frame, frame["visits"] * 3 + frame["age"] / 10 + (frame["plan"] == "premium") * 20


def partly_imputing_pipeline():
    """Age and income imputed; visits only scaled (MinMaxScaler lets NaN through) for a
    regressor that refuses NaN."""
    return make_pipeline(
        ColumnTransformer([
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age", "income"]),
            ("visits", MinMaxScaler(), ["visits"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])]),
        GradientBoostingRegressor(n_estimators=20, random_state=0))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frame-models")
    frame, churn = customers()
    with_gaps = frame[["age", "income"]].copy()
    with_gaps.loc[::9, "age"] = np.nan  # trained with gaps: the trees learned where NaN goes
    fitted = {"strict": strict_pipeline().fit(frame, churn),
              "imputing": imputing_pipeline().fit(frame, churn),
              "boosted": HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(with_gaps, churn),
              "gbreg": partly_imputing_pipeline().fit(*visitors())}
    paths = {}
    for name, estimator in fitted.items():
        paths[name] = folder / f"{name}.joblib"
        joblib.dump(estimator, paths[name])
    return fitted, paths


@pytest.fixture(scope="module")
def client(models, tmp_path_factory):
    from mlapi import create_app
    from mlapi.config import Settings

    folder = tmp_path_factory.mktemp("frame-app")
    _, paths = models
    return create_app(Settings.from_env({
        "MODELS": ",".join(f"{name}={path}" for name, path in paths.items()),
        "MODEL_CACHE_DIR": str(folder / "cache"), "PREDICTION_CACHE_SIZE": "0",
        "FEATURE_STORE_URL": f"sqlite:///{folder}/features.db",
        "PREDICTIONS_DB_URL": f"sqlite:///{folder}/predictions.db"})).test_client()


def bodies(rows: list[dict]) -> dict[str, dict]:
    """The same rows in every form the native protocol accepts (dataframe_split in another
    column order than the model's, which it must put right)."""
    columns = list(rows[0])
    shuffled = columns[::-1]
    return {"objects": {"instances": rows},
            "lists": {"instances": [[row[c] for c in columns] for row in rows]},
            "dataframe_split": {"dataframe_split": {"columns": shuffled,
                                                    "data": [[row[c] for c in shuffled] for row in rows]}},
            "dataframe_records": {"dataframe_records": rows}}


FORMS = ["objects", "lists", "dataframe_split", "dataframe_records"]
GOOD = [{"plan": "premium", "zip": "02139", "age": 34.0, "income": 61_000.0},
        {"plan": "basic", "zip": "01234", "age": 58.0, "income": 42_500.5},
        {"plan": "family", "zip": "10001", "age": 45.0, "income": 38_000.0}]


def as_frame(rows: list[dict]) -> pd.DataFrame:
    """The DataFrame a user would hand the model: None as NaN, columns in fitted order."""
    frame = pd.DataFrame([{k: np.nan if v is None else v for k, v in row.items()} for row in rows])
    return frame.astype({c: float for c in frame.columns if c in ("age", "income")})


def predict(client, model: str, form: str, rows: list[dict]):
    response = client.post(f"/models/{model}/predict", json=bodies(rows)[form])
    return response.status_code, response.get_json()


def with_value(index: int, column: str, value) -> list[dict]:
    rows = [dict(row) for row in GOOD]
    rows[index][column] = value
    return rows


@pytest.mark.parametrize("form", FORMS)
def test_good_rows_predict_as_the_model_does(client, models, form):
    fitted, _ = models
    status, body = predict(client, "strict", form, GOOD)
    assert status == 200, body
    assert body["predictions"] == fitted["strict"].predict(as_frame(GOOD)).tolist()
    assert body["probabilities"] == fitted["strict"].predict_proba(as_frame(GOOD)).tolist()


@pytest.mark.parametrize("form", FORMS)
def test_a_zip_code_stays_text_and_a_number_sent_for_it_is_its_text(client, models, form):
    # "01234" read as a number would be 1234, a category the encoder never saw.
    fitted, _ = models
    rows = with_value(2, "zip", 10001)  # the category "10001", sent as a JSON number
    status, body = predict(client, "strict", form, rows)
    assert status == 200, body
    assert body["predictions"] == fitted["strict"].predict(as_frame(GOOD)).tolist()


@pytest.mark.parametrize("form", FORMS)
def test_a_string_in_a_numeric_column_names_instance_column_and_value(client, form):
    status, body = predict(client, "strict", form, with_value(1, "age", "twelve"))
    error = body["error"]
    assert (status, error["status"]) == (422, 422), body
    assert error["message"].startswith("instance 1, column 'age': 'twelve' is not a number; send a number")
    assert "could not convert" in error["message"]  # scikit-learn's own words come last
    assert (error["instance"], error["column"], error["value"], error["expected"]) == (1, "age", "twelve", "a number")


@pytest.mark.parametrize("form", FORMS)
def test_an_unknown_category_lists_the_known_ones(client, form):
    status, body = predict(client, "strict", form, with_value(2, "plan", "platinum"))
    error = body["error"]
    assert status == 422, body
    assert error["message"].startswith("instance 2, column 'plan': 'platinum' is not one of the known categories "
                                       "'basic', 'family', 'premium'; send one of those")
    assert (error["instance"], error["column"], error["categories"]) == (2, "plan", PLANS)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("column,expected", [("income", "send a number"),
                                             ("zip", "send one of the known categories '01234', '02139', '10001'")])
def test_a_missing_value_for_a_model_that_cannot_take_one_says_so(client, form, column, expected):
    status, body = predict(client, "strict", form, with_value(1, column, None))
    error = body["error"]
    assert status == 422, body
    assert error["message"].startswith(f"instance 1, column {column!r}: the value is missing (null or NaN) and model "
                                       f"strict:1 cannot take a missing value here; {expected}")
    assert (error["instance"], error["column"]) == (1, column)


@pytest.mark.parametrize("form", FORMS)
def test_a_list_where_a_value_belongs_is_refused_by_name(client, form):
    status, body = predict(client, "imputing", form, with_value(0, "plan", ["basic", "family"]))
    assert status == 422 and body["error"]["message"].startswith(
        "instance 0, column 'plan': ['basic', 'family'] is a list; send a single value"), body


@pytest.mark.parametrize("form", FORMS)
def test_missing_values_reach_a_pipeline_that_imputes_them(client, models, form):
    fitted, _ = models
    rows = [dict(row) for row in GOOD]
    rows[0]["age"], rows[1]["plan"], rows[2]["zip"], rows[2]["income"] = None, None, None, None
    status, body = predict(client, "imputing", form, rows)
    assert status == 200, body
    expected = as_frame(rows)
    assert body["predictions"] == fitted["imputing"].predict(expected).tolist()
    assert body["probabilities"] == fitted["imputing"].predict_proba(expected).tolist()


@pytest.mark.parametrize("form", FORMS)
def test_missing_values_reach_a_model_that_takes_nan(client, models, form):
    fitted, _ = models
    rows = [{"age": 30.0, "income": None}, {"age": None, "income": 52_000.0}, {"age": None, "income": None},
            {"age": 71.0, "income": 12_000.0}]
    status, body = predict(client, "boosted", form, rows)
    assert status == 200, body
    expected = as_frame(rows)
    assert body["predictions"] == fitted["boosted"].predict(expected).tolist()
    assert body["probabilities"] == fitted["boosted"].predict_proba(expected).tolist()


def test_a_nan_float_is_a_missing_value_too(models):
    # What a JSON NaN literal decodes to (app/protocols/jsonio.py accepts NaN, as Python's json writes it).
    fitted, _ = models
    served = ServedModel("boosted", "1", fitted["boosted"])
    rows = [[float("nan"), 52_000.0], [30.0, float("nan")]]
    expected = pd.DataFrame(rows, columns=["age", "income"])
    assert served.predict(to_model_input(served, rows)).predictions == fitted["boosted"].predict(expected).tolist()


def test_an_array_model_names_the_feature_of_a_missing_value():
    X = np.random.default_rng(1).normal(size=(60, 4))
    estimator = LogisticRegression().fit(X, X[:, 0] > 0)
    served = ServedModel("lr", "1", estimator)
    rows = X[:3].tolist()
    rows[2][3] = None
    with pytest.raises(InvalidInput) as caught:
        served.predict(to_model_input(served, rows))
    assert caught.value.message.startswith("instance 2, feature 3: the value is missing (null or NaN)")
    assert (caught.value.details["instance"], caught.value.details["column"]) == (2, 3)


# ---- which of several missing values the model refuses: the model is asked, one gap at a time -----
VISITS = [{"plan": "premium", "age": 34.0, "income": 61_000.0, "visits": 12.0},
          {"plan": "basic", "age": 58.0, "income": 42_500.5, "visits": 3.0}]
REFUSED_VISITS = ("the value is missing (null or NaN) and model gbreg:1 cannot take a missing value here; "
                  "send a number (scikit-learn: Input X contains NaN)")


def test_scikit_learn_refuses_a_missing_visits_and_takes_a_missing_income(models):
    fitted, _ = models
    fitted["gbreg"].predict(as_frame([dict(VISITS[0], income=None)]))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted["gbreg"].predict(as_frame([dict(VISITS[0], visits=None)]))


@pytest.mark.parametrize("form", FORMS)
def test_of_gaps_in_one_row_the_column_that_cannot_take_one_is_named(client, form):
    # income comes first and is missing too, but an imputer fills it: visits is at fault
    rows = [dict(VISITS[0], plan=None, income=None, visits=None), VISITS[1]]
    status, body = predict(client, "gbreg", form, rows)
    error = body["error"]
    assert status == 422, body
    assert error["message"] == f"instance 0, column 'visits': {REFUSED_VISITS}"
    assert (error["instance"], error["column"], error["expected"]) == (0, "visits", "a number")


@pytest.mark.parametrize("form", FORMS)
def test_a_gap_the_model_takes_in_an_earlier_row_is_not_named(client, form):
    rows = [dict(VISITS[0], income=None), dict(VISITS[1], visits=None)]
    status, body = predict(client, "gbreg", form, rows)
    assert status == 422, body
    assert body["error"]["message"] == f"instance 1, column 'visits': {REFUSED_VISITS}"
    assert (body["error"]["instance"], body["error"]["column"]) == (1, "visits")


def test_a_number_column_an_encoder_reads_is_filled_with_a_category_it_knows():
    # 0.0 for floor (categories 1, 2, 3) would be refused as unknown, and income blamed for it
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"income": rng.normal(50, 15, 120), "floor": rng.integers(1, 4, 120)})
    estimator = make_pipeline(ColumnTransformer([("income", SimpleImputer(), ["income"]),
                                                 ("floor", OneHotEncoder(), ["floor"])]),
                              LogisticRegression()).fit(frame, frame["floor"] == 2)
    served = ServedModel("floors", "1", estimator)
    with pytest.raises(InvalidInput) as caught:
        served.predict(to_model_input(served, [{"income": 1.0, "floor": 3}, {"income": None, "floor": None}]))
    assert caught.value.message.startswith("instance 1, column 'floor': the value is missing (null or NaN)")
    assert (caught.value.details["instance"], caught.value.details["column"]) == (1, "floor")


def test_when_no_gap_is_refused_on_its_own_the_first_is_named_as_before(models):
    # A model that takes NaN, told it refused one: no gap can be shown at fault, so the first is named.
    fitted, _ = models
    served = ServedModel("boosted", "1", fitted["boosted"])
    rows = pd.DataFrame({"age": [30.0, np.nan], "income": [np.nan, 52_000.0]})
    explained = explain_rejection(served, rows, InvalidInput("input does not fit the model: Input X contains NaN."))
    assert explained.message.startswith("instance 0, column 'income': the value is missing (null or NaN)")
    assert (explained.details["instance"], explained.details["column"]) == (0, "income")


def test_a_request_out_of_time_while_its_gaps_are_tried_is_a_timeout(models, monkeypatch):
    fitted, _ = models
    served = ServedModel("gbreg", "1", fitted["gbreg"])

    def out_of_time(X):
        raise RequestTimeout("the request ran longer than REQUEST_TIMEOUT")

    monkeypatch.setattr(served.estimator, "predict", out_of_time)
    rows = as_frame([dict(VISITS[0], income=None, visits=None)])
    with pytest.raises(RequestTimeout):
        explain_rejection(served, rows, InvalidInput("input does not fit the model: Input X contains NaN."))


def test_what_each_column_takes_comes_from_the_fitted_encoders(models):
    fitted, _ = models
    strict = column_types(fitted["strict"])
    assert strict == [{"name": "plan", "type": "string", "categories": PLANS},
                      {"name": "zip", "type": "string", "categories": ZIPS},
                      {"name": "age", "type": "number"}, {"name": "income", "type": "number"}]
    # the encoder behind an imputer, in a Pipeline; handle_unknown="ignore": it takes other values too
    assert column_types(fitted["imputing"]) == [
        {**column, "accepts_unknown": True} if "categories" in column else column for column in strict]
    assert column_types(fitted["boosted"]) == [{"name": "age", "type": "number"}, {"name": "income", "type": "number"}]
    assert column_types(LogisticRegression().fit([[0.0], [1.0]], [0, 1])) is None  # fitted on an array
    frame, churn = customers(60)
    frame = frame.drop(columns="zip").assign(visits=np.arange(60) % 4)  # plan, age, income, visits
    by_position = make_pipeline(  # columns given by position, the rest passed through
        ColumnTransformer([("codes", OrdinalEncoder(), [3]), ("plan", OneHotEncoder(), [0])], remainder="passthrough"),
        LogisticRegression(max_iter=500)).fit(frame, churn)
    assert column_types(by_position) == [{"name": "plan", "type": "string", "categories": PLANS},
                                         {"name": "age", "type": "number"}, {"name": "income", "type": "number"},
                                         {"name": "visits", "type": "integer", "categories": [0, 1, 2, 3]}]


# ---- a text column beside numbers: TF-IDF on a `description`, in a ColumnTransformer -----------
@pytest.mark.parametrize("vectorizer", ["tfidf", "count", "hashing"])
def test_a_column_a_text_vectorizer_reads_takes_text(vectorizer):
    from mlapi.serving.card import model_card

    frame, liked = reviews()
    estimator = text_column_pipeline(vectorizer).fit(frame, liked)
    assert column_types(estimator) == [{"name": "description", "type": "string"}, {"name": "price", "type": "number"}]
    served = ServedModel("reviews", "1", estimator)
    card = model_card(served)
    assert card["features"] == column_types(estimator) and card["example"] == {"description": "example text",
                                                                                "price": 0.0}
    rows = frame.head(5).to_dict(orient="records")
    rows[1]["description"] = 1234  # a number sent for a text is its text, as in a category column
    expected = frame.head(5).copy()
    expected.loc[1, "description"] = "1234"
    assert served.predict(to_model_input(served, rows)).predictions == estimator.predict(expected).tolist()
    rows[3]["description"] = None
    with pytest.raises(InvalidInput) as caught:
        served.predict(to_model_input(served, rows))
    assert caught.value.message.startswith("instance 3, column 'description': the value is missing (null or NaN) "
                                           "and model reviews:1 cannot take a missing value here; send a text")
