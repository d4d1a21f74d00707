"""The compiled feature path: every supported step gives scikit-learn's features bit for bit and
the model's own predictions; input scikit-learn refuses is refused in the same words; anything
unsupported, or a compiled step that is wrong on the probe, leaves the model on scikit-learn
with the reason in compute_path."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_transformer
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                   PolynomialFeatures, StandardScaler)

from mlapi.errors import InvalidInput
from mlapi.serving.instances import to_model_input
from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import compiled_steps

TEXT, NUMBERS = ["plan", "region"], ["spend", "tickets", "seats"]


def customers(n: int, seed: int = 0, unseen: bool = False) -> pd.DataFrame:
    """Two text columns (region with missing values) and three numbers (spend with NaN)."""
    rng = np.random.default_rng(seed)
    plans = ["basic", "pro", "enterprise", "free", "legacy"] + (["platinum"] if unseen else [])
    frame = pd.DataFrame({
        "plan": rng.choice(plans, n, p=None if unseen else [0.4, 0.3, 0.2, 0.08, 0.02]),
        "region": rng.choice(np.array(["eu", "us", "apac", None], dtype=object), n),
        "spend": rng.gamma(2.0, 40.0, n),
        "tickets": rng.poisson(2.0, n).astype(float),
        "seats": rng.integers(1, 500, n).astype(float),
    })
    frame.loc[rng.uniform(size=n) < 0.1, "spend"] = np.nan
    frame.loc[rng.uniform(size=n) < 0.05, "tickets"] = np.nan
    return frame


def target(frame: pd.DataFrame, kind: str):
    score = frame.spend.fillna(50) / 60 + frame.tickets.fillna(1) * 0.4 - (frame.plan == "pro") * 1.5
    if kind == "regression":
        return score.to_numpy()
    if kind == "binary":
        return np.where(score > 2, "yes", "no")
    return np.digitize(score, [1.0, 2.0, 3.5])  # four classes


def numbers():
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


PIPELINES = {
    # name: (feature side, final step, task)
    "one-hot + scaler, logistic binary": (
        lambda: make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                           OneHotEncoder(handle_unknown="ignore")), TEXT),
            (numbers(), NUMBERS)),
        lambda: LogisticRegression(max_iter=500), "binary"),
    "one-hot drop first + min-max clip, forest multiclass": (
        lambda: ColumnTransformer([
            ("text", OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False), TEXT),
            ("numbers", make_pipeline(SimpleImputer(add_indicator=True), MinMaxScaler(clip=True)), NUMBERS)]),
        lambda: RandomForestClassifier(n_estimators=10, random_state=0), "multiclass"),
    "ordinal + imputer indicator, boosting binary": (
        lambda: make_column_transformer(
            (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2), TEXT),
            (SimpleImputer(strategy="mean", add_indicator=True), NUMBERS)),
        lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0), "binary"),
    "infrequent categories + identity remainder, boosting regression": (
        lambda: make_column_transformer(
            (OneHotEncoder(min_frequency=0.05, handle_unknown="infrequent_if_exist", sparse_output=False), ["plan"]),
            (OneHotEncoder(max_categories=3, handle_unknown="infrequent_if_exist"), ["region"]),
            (FunctionTransformer(), ["tickets", "seats"]), remainder="passthrough"),
        lambda: HistGradientBoostingRegressor(max_iter=15, random_state=0), "regression"),
    "missing text as a category + weights, forest regression": (
        lambda: ColumnTransformer([
            ("text", OneHotEncoder(handle_unknown="ignore"), TEXT),
            ("numbers", make_pipeline(SimpleImputer(strategy="most_frequent"), StandardScaler()), NUMBERS)],
            transformer_weights={"numbers": 0.5}),
        lambda: RandomForestRegressor(n_estimators=10, random_state=0), "regression"),
    "numbers as categories (NaN learned), boosting multiclass": (
        lambda: make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["tickets"]),
            (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["tickets", "plan"]),
            (SimpleImputer(), ["spend"])),
        lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0), "multiclass"),
    "scaled numbers, remainder dropped, logistic multiclass": (
        lambda: make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                        (numbers(), ["spend", "seats"])),
        lambda: LogisticRegression(max_iter=1000), "multiclass"),
}


def fitted(name: str, n: int = 400):
    features, final, kind = PIPELINES[name]
    train = customers(n)
    return make_pipeline(features(), final()).fit(train, target(train, kind))


def assert_same_as_the_model(served: ServedModel, model, frame: pd.DataFrame) -> None:
    model_input = to_model_input(served, frame.astype(object).where(frame.notna(), None).to_dict("records"))
    # scikit-learn is given what the server built from the records, not `frame`: the request's
    # null in a text column is NaN there, while pandas 2 keeps `frame`'s None, which an encoder
    # fitted under pandas 2 learned as a category of its own (not NaN). How a null is read is
    # the input conversion's concern (app/serving/typed_rows.py), not the compiled steps'.
    got = served.features(model_input)
    expected = model[:-1].transform(model_input)
    assert hasattr(got, "toarray") == hasattr(expected, "toarray")  # the steps' own form
    assert got.dtype == np.float64
    assert np.array_equal(_dense(got), _dense(expected), equal_nan=True)
    result = served.predict(model_input)
    assert result.predictions == model.predict(model_input).tolist()
    if served.has_proba:
        assert result.probabilities == model.predict_proba(model_input).tolist()
    # `frame` itself (None in its text, under pandas 2) is compiled too, and read as scikit-learn reads it
    assert served._transforms[0].compute(frame) is not None
    assert np.array_equal(_dense(served.features(frame)), _dense(model[:-1].transform(frame)), equal_nan=True)
    assert served.predict(frame).predictions == model.predict(frame).tolist()


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_supported_pipeline_is_compiled_and_predicts_as_scikit_learn(name):
    model = fitted(name)
    served = ServedModel("m", "1", model)
    assert served.compute_path["features"] == {"path": "compiled"}, served.compute_path
    handles_unknown = "error" not in repr(model[0])  # every encoder takes unseen categories
    for rows, seed in ((1, 1), (7, 2), (100, 3)):
        assert_same_as_the_model(served, model, customers(rows, seed, unseen=handles_unknown))


def test_an_array_fitted_pipeline_with_columns_by_index_mask_and_slice():
    train = customers(300)
    X = np.column_stack([train.plan.map({"basic": 0, "pro": 1, "enterprise": 2, "free": 3, "legacy": 4}),
                         train[NUMBERS].to_numpy()]).astype(np.float64)
    features = ColumnTransformer([
        ("codes", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [0]),
        ("scaled", make_pipeline(SimpleImputer(), StandardScaler()), slice(1, 3)),
        ("ranged", MinMaxScaler(), np.array([False, False, False, True]))])
    model = make_pipeline(features, LogisticRegression(max_iter=500)).fit(X, target(train, "binary"))
    served = ServedModel("codes", "1", model)
    assert served.compute_path["features"] == {"path": "compiled"}
    test = X[:50].copy()
    test[3, 0], test[4, 1] = 9.0, np.nan  # an unseen code (ignored), a missing number (imputed)
    model_input = to_model_input(served, test.tolist())
    assert np.array_equal(served.features(model_input), model[:-1].transform(test))
    assert served.predict(model_input).probabilities == model.predict_proba(test).tolist()


def refusal(served: ServedModel, rows: list) -> str:
    with pytest.raises(InvalidInput) as caught:
        served.predict(to_model_input(served, rows))
    return caught.value.message


def test_input_scikit_learn_refuses_is_refused_in_the_same_words():
    train = customers(300).fillna({"tickets": 0.0})
    model = make_pipeline(make_column_transformer((OneHotEncoder(), TEXT), (StandardScaler(), ["tickets", "seats"])),
                          LogisticRegression(max_iter=500)).fit(train.fillna({"region": "eu"}).drop(columns="spend"),
                                                                target(train, "binary"))
    served, plain = ServedModel("m", "1", model), ServedModel("m", "1", model, compiled_path=False)
    assert served.compute_path["features"] == {"path": "compiled"}
    assert plain.compute_path["columntransformer.transform"]["reason"] == "COMPILED_PATH=off"
    good = {"plan": "pro", "region": "eu", "tickets": 1, "seats": 3}
    for bad in ({"plan": "platinum"}, {"region": None}, {"seats": "many"}, {"tickets": float("inf")},
                {"tickets": None}):  # the scaler passes NaN on; the logistic regression refuses it
        rows = [good, {**good, **bad}]
        said = refusal(served, rows)
        assert said == refusal(plain, rows) and said.startswith("instance 1, column"), said
    assert served.predict(to_model_input(served, [good])).probabilities == \
        model.predict_proba(pd.DataFrame([good])).tolist()


def test_a_pipeline_with_an_unsupported_step_stays_on_scikit_learn_whole_and_says_which():
    train = customers(200).dropna()
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                                  (PolynomialFeatures(), ["tickets", "seats"])),
                          LogisticRegression(max_iter=500)).fit(train, target(train, "binary"))
    served = ServedModel("poly", "1", model)
    assert served.compute_path["features"] == {
        "path": "scikit-learn", "reason": "not compiled: step 'columntransformer' (ColumnTransformer): transformer "
                                          "'polynomialfeatures' (PolynomialFeatures): no compiled form for "
                                          "PolynomialFeatures"}
    assert served.compute_path["columntransformer.transform"]["path"] == "scikit-learn"
    test = customers(20, 5).dropna()
    assert served.predict(test).probabilities == model.predict_proba(test).tolist()


def test_a_custom_transformer_keeps_the_model_on_scikit_learn():
    train = customers(200)
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), TEXT),
                                                  (FunctionTransformer(np.log1p), ["seats"])),
                          Ridge()).fit(train, target(train, "regression"))
    served = ServedModel("log", "1", model)
    assert served.compute_path["features"]["reason"].endswith("a FunctionTransformer with a function of its own")
    assert served.predict(train[:10]).predictions == model.predict(train[:10]).tolist()


def test_a_compiled_step_wrong_on_the_probe_leaves_the_model_on_scikit_learn(monkeypatch, caplog):
    model = fitted("one-hot + scaler, logistic binary")

    def off_by_a_bit(scaler):  # stands for a release whose StandardScaler computes otherwise
        exact = compiled_steps._standard_scaler(scaler)
        return compiled_steps.Step(lambda columns: exact.transform(columns) * (1 + 1e-15))
    compilers = tuple((owner, off_by_a_bit if owner == compiled_steps.STANDARD_SCALER else compile_kind)
                      for owner, compile_kind in compiled_steps._COMPILERS)
    monkeypatch.setattr(compiled_steps, "_COMPILERS", compilers)
    with caplog.at_level(logging.WARNING):
        served = ServedModel("m", "1", model)
    reason = served.compute_path["features"]["reason"]
    assert served.compute_path["features"]["path"] == "scikit-learn"
    assert reason.startswith("probe mismatch: features differ from scikit-learn's on"), reason
    assert "compiled feature steps not used (probe mismatch" in caplog.text
    test = customers(30, 9)
    assert served.predict(test).probabilities == model.predict_proba(test).tolist()


def test_compiled_path_off_keeps_every_output_on_scikit_learn():
    model = fitted("ordinal + imputer indicator, boosting binary")
    served = ServedModel("m", "1", model, compiled_path=False)
    assert {route["path"] for route in served.compute_path.values()} == {"scikit-learn"}
    assert {route["reason"] for route in served.compute_path.values()} == {"COMPILED_PATH=off"}
    test = customers(40, 4, unseen=True)
    assert served.predict(test).probabilities == model.predict_proba(test).tolist()


@pytest.mark.parametrize("final", [lambda: LogisticRegression(max_iter=1000), lambda: Ridge(),
                                   lambda: RandomForestClassifier(n_estimators=10, random_state=0)])
def test_a_sparse_feature_side_is_compiled_and_given_to_the_final_step_as_it_sums_it(final):
    # A linear model sums a CSR row in another order than a dense one: it gets the compiled
    # rows as CSR too; a forest reads values, and takes the dense rows.
    train = customers(300)
    features = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), TEXT),
                                       (numbers(), NUMBERS), sparse_threshold=1.0)
    estimator = final()
    kind = "regression" if isinstance(estimator, Ridge) else "binary"
    model = make_pipeline(features, estimator).fit(train, target(train, kind))
    served = ServedModel("sparse", "1", model)
    assert served.compute_path["features"] == {"path": "compiled"}
    assert served._transforms[0].sparse_rows == (not isinstance(estimator, RandomForestClassifier))
    assert_same_as_the_model(served, model, customers(50, 6, unseen=True))  # features() as CSR, as the steps'


def test_merged_requests_of_other_dtypes_are_computed_as_scikit_learn_does():
    # Micro-batching concatenates requests' frames: whole numbers (int64) beside NaN (float64),
    # text beside missing text; the merged frame still takes the compiled path, exactly.
    model = fitted("ordinal + imputer indicator, boosting binary")
    served = ServedModel("m", "1", model)
    whole = to_model_input(served, [{"plan": "pro", "region": "eu", "spend": 12, "tickets": 1, "seats": 3}])
    gaps = to_model_input(served, [{"plan": "free", "region": None, "spend": None, "tickets": 2.5, "seats": 40.0}])
    assert whole["spend"].dtype == np.int64 and gaps["spend"].dtype == np.float64
    merged = pd.concat([whole, gaps], ignore_index=True)
    assert served._transforms[0].compute(merged) is not None  # not deferred
    assert served.predict(merged).probabilities == model.predict_proba(merged).tolist()


def test_probe_inputs_span_the_learned_categories_and_ranges_and_each_unusual_value():
    from mlapi.serving.shortcuts.compiled_encoders import UNSEEN_TEXT
    from mlapi.serving.shortcuts.compiled_probe import probe_inputs

    model = fitted("one-hot + scaler, logistic binary")
    probes = dict(probe_inputs(ServedModel("m", "1", model)._transforms[0]))
    assert list(probes) == ["plain", "missing numbers", "missing text", "None text", "unseen categories",
                            "infinite numbers", "whole numbers", "text as objects"]
    plain = probes["plain"]
    encoder = model[0].named_transformers_["pipeline-1"][-1]
    assert set(plain.plan) == set(encoder.categories_[0])  # every learned category
    scaler = model[0].named_transformers_["pipeline-2"][-1]
    low, high = scaler.mean_ - 3 * scaler.scale_, scaler.mean_ + 3 * scaler.scale_
    assert ((plain[NUMBERS] >= low - 1e-9) & (plain[NUMBERS] <= high + 1e-9)).all().all()
    assert (plain[NUMBERS].std() > scaler.scale_).all()  # the fitted range, not zeros and ones
    gaps = probes["missing numbers"]
    # the text as drawn: learned categories only (pandas 2 keeps a fitted None, which the
    # imputer's NaN does not match: the encoder after it learned None as a category)
    assert gaps[NUMBERS].isna().any().all() and gaps[TEXT].equals(plain[TEXT])
    assert (probes["unseen categories"][TEXT] == UNSEEN_TEXT).any().all()
    assert np.isinf(probes["infinite numbers"][NUMBERS].to_numpy()).any()
    assert (probes["whole numbers"][NUMBERS].dtypes == np.int64).all()
    assert probes["None text"]["region"].dtype == object and probes["None text"]["region"].isna().any()
