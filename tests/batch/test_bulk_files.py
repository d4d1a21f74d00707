"""`mlapi batch-predict` on the files people have: a DataFrame saved with pandas (no id
column, `to_csv(index=False)`), scored by a ColumnTransformer pipeline with string, integer and
boolean categories. Every run is the installed command in a subprocess, as a user runs it.

What is promised: without an id column the output keys rows by their number from 0 (`row`), in
input order; with one, by id as before; each column is read as the type the model was fitted
on (a zip code "01234" stays a string, booleans stay booleans, integer categories integers),
for CSV, Parquet and JSON lines; a value that cannot be read names its row and column.
"""
from __future__ import annotations

import os
import subprocess

import joblib
import numpy as np
import pandas as pd
import pytest

from mlapi.batch.bulk.read import layout_for, read_header
from mlapi.serving.model import ServedModel
from conftest import VENV_BIN

PLANS = ["basic", "pro", "team"]
ZIPS = ["01234", "02139", "00501", "10001", "94105"]  # digits only: a CSV reader takes them for numbers
CATEGORIES = ["plan", "zip", "seats", "autopay"]


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Customer rows as a notebook has them: string, integer and boolean categories, numbers,
    and a few missing plans."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "plan": rng.choice(PLANS, rows).tolist(),
        "zip": rng.choice(ZIPS, rows).tolist(),
        "seats": rng.choice([1, 2, 5, 10], rows),
        "autopay": rng.random(rows) < 0.5,
        "age": rng.integers(18, 80, rows),
        "spend": rng.gamma(2.0, 30.0, rows).round(2),
    })
    frame.loc[rng.random(rows) < 0.1, "plan"] = np.nan
    return frame


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """(path, estimator): OneHotEncoder on the categories, StandardScaler on the numbers, then
    LogisticRegression, fitted on a DataFrame. handle_unknown="error": a category read as the
    wrong type (the zip 1234.0 for "01234") is refused, not quietly encoded as all zeros."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = customers(400, seed=1)
    rng = np.random.default_rng(2)
    churned = (frame["spend"] / 60 + np.where(frame["zip"].isin(["01234", "00501"]), 1.0, -1.0)
               + rng.normal(0, 0.5, len(frame))) > 1
    estimator = make_pipeline(
        ColumnTransformer([("categories", OneHotEncoder(handle_unknown="error"), CATEGORIES),
                           ("numbers", StandardScaler(), ["age", "spend"])]),
        LogisticRegression(max_iter=1000)).fit(frame, churned)
    path = tmp_path_factory.mktemp("churn") / "churn.joblib"
    joblib.dump(estimator, path)
    return path, estimator


def batch_predict(tmp_path, models: str, *args) -> subprocess.CompletedProcess:
    """The installed `mlapi batch-predict ARGS` with MODELS=models."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOUD_RUN_")}
    env.update(MODELS=models, MODEL_CACHE_DIR=str(tmp_path / "cache"),
               FEATURE_STORE_URL=f"sqlite:///{tmp_path}/features.db",
               PREDICTIONS_DB_URL=f"sqlite:///{tmp_path}/predictions.db")
    return subprocess.run([str(VENV_BIN / "mlapi"), "batch-predict", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=180)


def write(frame: pd.DataFrame, path):
    """As pandas users write files: no index, so no id column unless the frame has one."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def assert_model_own_output(out: pd.DataFrame, key: str, keys: list, estimator, frame: pd.DataFrame):
    """out holds, row for row in input order, the estimator's own predict / predict_proba."""
    assert list(out.columns) == [key, "prediction", *[f"proba_{c}" for c in estimator.classes_]]
    assert list(out[key]) == keys
    np.testing.assert_array_equal(out["prediction"].to_numpy(), estimator.predict(frame))
    proba = estimator.predict_proba(frame)
    for i, label in enumerate(estimator.classes_):
        # Floats to 1e-12: BLAS sums in an order that depends on the chunk's shape.
        np.testing.assert_allclose(out[f"proba_{label}"].to_numpy(), proba[:, i], rtol=1e-12, atol=0)


# ---- the file everyone has: no id column ----------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_pandas_file_without_ids_is_scored_in_input_order_with_row_numbers(churn, tmp_path, suffix):
    path, estimator = churn
    frame = customers(95, seed=7)
    # Columns in another order than the model's, and one it does not use: read by name.
    source = write(frame[["spend", "autopay", "zip", "age", "seats", "plan"]].assign(note="ignored"),
                   tmp_path / f"customers{suffix}")
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", tmp_path / "out.csv",
                           "--chunk-size", 10, "--workers", 2)
    assert result.returncode == 0, result.stderr
    assert "scored 95 rows with churn:1" in result.stdout
    out = pd.read_csv(tmp_path / "out.csv")
    assert_model_own_output(out, "row", list(range(len(frame))), estimator, frame)


def test_an_input_with_an_id_column_is_keyed_by_id_as_before(churn, tmp_path):
    path, estimator = churn
    frame = customers(40, seed=8)
    ids = [f"cust-{i:03d}" for i in np.random.default_rng(0).permutation(len(frame))]
    source = write(frame.assign(id=ids), tmp_path / "customers.parquet")
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", tmp_path / "out.csv",
                           "--chunk-size", 16)
    assert result.returncode == 0, result.stderr
    assert_model_own_output(pd.read_csv(tmp_path / "out.csv"), "id", ids, estimator, frame)


def test_a_zip_code_that_looks_like_a_number_stays_a_string(churn, tmp_path):
    path, estimator = churn
    frame = customers(30, seed=9)
    source = write(frame, tmp_path / "customers.csv")
    assert ",01234," in source.read_text()  # bare digits, as pandas writes them
    # What a plain reading of the file gets: numbers, which the model refuses.
    assert pd.read_csv(source)["zip"].dtype.kind in "if"
    with pytest.raises((ValueError, TypeError)):  # (scikit-learn's words vary: unknown categories, isnan)
        estimator.predict(pd.read_csv(source))
    layout = layout_for(ServedModel("churn", "1", estimator), read_header(source, "csv"), "id", "text")
    assert dict(zip(layout.columns, layout.kinds)) == {
        "plan": "string", "zip": "string", "seats": "integer", "autopay": "boolean",
        "age": "number", "spend": "number"}
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", tmp_path / "out.parquet")
    assert result.returncode == 0, result.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["row"].dtype.kind == "i"
    assert_model_own_output(out, "row", list(range(len(frame))), estimator, frame)


def test_a_text_column_beside_numbers_is_read_as_text(tmp_path):
    # TF-IDF on `description` in a ColumnTransformer: the column is text, not a number.
    from review_model import reviews, text_column_pipeline

    frame, liked = reviews(300, seed=3)
    estimator = text_column_pipeline("tfidf").fit(frame, liked)
    joblib.dump(estimator, tmp_path / "reviews.joblib")
    scored, _ = reviews(45, seed=4)
    source = write(scored, tmp_path / "reviews.csv")
    result = batch_predict(tmp_path, f"reviews={tmp_path / 'reviews.joblib'}", "--input", source,
                           "--output", tmp_path / "out.csv", "--chunk-size", 10)
    assert result.returncode == 0, result.stderr
    assert_model_own_output(pd.read_csv(tmp_path / "out.csv"), "row", list(range(45)), estimator, scored)


# ---- a value the model cannot take: its row and column, a non-zero exit, no output ------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.parametrize("column,value,expected", [("spend", "twelve", "is not a number"),
                                                   ("seats", "many", "is not an integer")])
def test_a_bad_value_names_its_row_and_column(churn, tmp_path, suffix, column, value, expected):
    path, _ = churn
    frame = customers(60, seed=10).astype({column: object})
    frame.loc[37, column] = value  # in the fourth chunk of 10: rows count across chunks
    if suffix == ".parquet":
        frame[column] = frame[column].astype(str)  # Parquet holds one type per column: all text
    # Not in the model's order: the column named is the file's, wherever it stands.
    source = write(frame[["age", "spend", "autopay", "seats", "zip", "plan"]], tmp_path / f"customers{suffix}")
    out = tmp_path / "out.csv"
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", out, "--chunk-size", 10)
    assert result.returncode == 2, result.stderr
    assert f"row 37, column '{column}': '{value}' {expected}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not out.with_name("out.csv.partial").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_a_missing_value_the_final_estimator_refuses_names_its_row_and_column(churn, tmp_path, suffix):
    # The scaler passes NaN on and LogisticRegression refuses it: explained as a request's rows
    # are, not in scikit-learn's words. The missing plans (which the encoder learned) are not blamed.
    path, _ = churn
    frame = customers(60, seed=10)
    frame.loc[37, "spend"] = np.nan
    assert frame.loc[:36, "plan"].isna().any()
    source = write(frame, tmp_path / f"customers{suffix}")
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", tmp_path / "out.csv",
                           "--chunk-size", 10)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("mlapi batch-predict: row 37, column 'spend': the value is missing (null or NaN) and "
                             "model churn:1 cannot take a missing value here; send a number "
                             "(scikit-learn: Input X contains NaN)\n")


# ---- numeric models, fitted on a DataFrame or on an array: unchanged, and numbered without ids --------
def test_numeric_models_score_a_file_without_ids(trained, tmp_path):
    from sklearn.datasets import load_breast_cancer, load_diabetes

    diabetes = load_diabetes(as_frame=True).frame.drop(columns="target")
    source = write(diabetes, tmp_path / "diabetes.csv")
    result = batch_predict(tmp_path, f"ridge={trained['ridge'][0]}", "--input", source,
                           "--output", tmp_path / "ridge.parquet", "--chunk-size", 100)
    assert result.returncode == 0, result.stderr
    out = pd.read_parquet(tmp_path / "ridge.parquet")
    assert list(out.columns) == ["row", "prediction"] and list(out["row"]) == list(range(len(diabetes)))
    np.testing.assert_allclose(out["prediction"], trained["ridge"][1].predict(diabetes), rtol=1e-12)

    cancer = pd.DataFrame(load_breast_cancer().data).add_prefix("f")  # fitted on an array: every column, in order
    source = write(cancer, tmp_path / "cancer.jsonl")
    result = batch_predict(tmp_path, f"cancer={trained['cancer'][0]}", "--input", source,
                           "--output", tmp_path / "cancer.csv", "--chunk-size", 100)
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "cancer.csv")
    assert_model_own_output(out, "row", list(range(len(cancer))), trained["cancer"][1], cancer.to_numpy())


def test_a_named_id_column_must_be_there(churn, tmp_path):
    path, _ = churn
    source = write(customers(5, seed=11), tmp_path / "customers.csv")
    result = batch_predict(tmp_path, f"churn={path}", "--input", source, "--output", tmp_path / "out.csv",
                           "--id-column", "customer_id")
    assert result.returncode == 2
    assert "the input has no 'customer_id' column, which --id-column names" in result.stderr
