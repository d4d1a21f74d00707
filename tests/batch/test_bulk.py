"""`mlapi batch-predict`: outputs equal the models' own predictions row by row and in input
order, for every file format; shards cover every row once; the store → predictions table path
is idempotent per run id; memory does not grow with the input; bad input is one clear line."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from mlapi.cli import main
from mlapi.store.database import make_engine
from mlapi.store.ingest import import_rows, read_rows
from conftest import VENV_BIN, models_env

MODELS = ("cancer", "tree", "diabetes", "ridge", "text")


@pytest.fixture
def bulk(trained, tmp_path, monkeypatch, capsys):
    """Runs `mlapi batch-predict ARGS` in-process; returns (exit code, stdout, stderr)."""
    env = {"MODELS": models_env(trained, *MODELS), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
           "FEATURE_STORE_URL": f"sqlite:///{tmp_path}/features.db",
           "PREDICTIONS_DB_URL": f"sqlite:///{tmp_path}/predictions.db"}
    for key in ("CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT", "CLOUD_RUN_EXECUTION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def run(*args, **extra_env):
        for key, value in extra_env.items():
            monkeypatch.setenv(key, str(value))
        capsys.readouterr()
        code = main(["batch-predict", *map(str, args)])
        out, err = capsys.readouterr()
        for key in extra_env:
            monkeypatch.delenv(key)
        return code, out, err
    return run


def cancer_input(n=None, seed=0):
    """Breast-cancer rows in a shuffled order, with string ids that do not sort like the rows."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    order = np.random.default_rng(seed).permutation(len(data))[:n]
    frame = pd.DataFrame(data[order], columns=[f"f{i}" for i in range(data.shape[1])])
    frame.insert(0, "id", [f"c{i:04d}" for i in order])
    return frame


def diabetes_input(trained):
    """The frame the diabetes and ridge models were fitted on, with ids."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.drop(columns="target")
    frame.insert(0, "id", [f"p{i}" for i in range(len(frame))])
    return frame


def read_output(path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"id": str})
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.DataFrame([orjson.loads(line) for line in path.read_bytes().splitlines()])


def assert_same(actual, expected):
    """Labels exactly; floats to 1e-12: BLAS sums in an order that depends on the batch's
    shape, so even the model's own predict_proba differs in the last bit between a whole
    array and its chunks (test_chunks_add_no_error_at_all shows the pipeline adds none)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0)
    else:
        np.testing.assert_array_equal(actual, expected)


def assert_matches_model(out: pd.DataFrame, frame: pd.DataFrame, estimator, model_input):
    assert list(out["id"]) == list(frame["id"])  # every row, in input order
    assert_same(out["prediction"], estimator.predict(model_input))
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(model_input)
        assert list(out.columns) == ["id", "prediction", *[f"proba_{c}" for c in estimator.classes_]]
        for i, label in enumerate(estimator.classes_):
            assert_same(out[f"proba_{label}"], proba[:, i])
    else:
        assert list(out.columns) == ["id", "prediction"]


# ---- outputs equal the model's own, row by row ------------------------------------------------
@pytest.mark.parametrize("name", ["cancer", "tree"])
def test_csv_to_csv_array_fitted_classifiers(bulk, trained, tmp_path, name):
    frame = cancer_input()
    frame.to_csv(tmp_path / "in.csv", index=False, float_format="%.17g")
    code, out, err = bulk("--model", name, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                          "--chunk-size", 97)
    assert code == 0, err
    assert f"scored {len(frame)} rows with {name}:1" in out
    X = frame.drop(columns="id").to_numpy()
    assert_matches_model(read_output(tmp_path / "out.csv"), frame, trained[name][1], X)


@pytest.mark.parametrize("workers", [1, 3])
def test_chunks_add_no_error_at_all(bulk, trained, tmp_path, workers):
    """Against the model's own predict_proba on the same 97-row, row-major chunks, every bit
    is equal, with one scoring thread or several: CSV in and out round-trips floats exactly."""
    frame = cancer_input()
    frame.to_csv(tmp_path / "in.csv", index=False, float_format="%.17g")
    code, _, err = bulk("--model", "cancer", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                        "--chunk-size", 97, "--workers", workers)
    assert code == 0, err
    X, estimator = np.ascontiguousarray(frame.drop(columns="id").to_numpy()), trained["cancer"][1]
    proba = np.vstack([estimator.predict_proba(X[i:i + 97]) for i in range(0, len(X), 97)])
    out = read_output(tmp_path / "out.csv")
    np.testing.assert_array_equal(out[["proba_0", "proba_1"]].to_numpy(), proba)


@pytest.mark.parametrize("name", ["diabetes", "ridge"])
def test_parquet_to_parquet_by_feature_name(bulk, trained, tmp_path, name):
    frame = diabetes_input(trained)
    # Columns in another order than the model's, an extra column, integer ids: all fine.
    shuffled = frame[["id", *reversed(frame.columns[1:])]].assign(note="ignored", id=range(len(frame)))
    shuffled.to_parquet(tmp_path / "in.parquet", index=False)
    code, _, err = bulk("--model", name, "--input", tmp_path / "in.parquet", "--output", tmp_path / "out.parquet",
                        "--chunk-size", 50)
    assert code == 0, err
    out = read_output(tmp_path / "out.parquet")
    assert_matches_model(out, frame.assign(id=[str(i) for i in range(len(frame))]), trained[name][1],
                         frame.drop(columns="id"))


def test_jsonl_text_model(bulk, trained, tmp_path):
    texts = ["refund my last invoice", "the app crashes on my phone", "cannot log in", "héllo, \"quoted\"\nnewline"] * 7
    frame = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts})
    lines = [orjson.dumps({"id": i, "text": t, "extra": 1}) for i, t in enumerate(texts)]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    code, _, err = bulk("--model", "text", "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl",
                        "--chunk-size", 5)
    assert code == 0, err
    assert_matches_model(read_output(tmp_path / "out.jsonl"), frame, trained["text"][1], texts)


def test_text_csv_with_quoted_line_breaks_to_parquet(bulk, trained, tmp_path):
    texts = ["cannot log in,\nagain", 'the "app" crashes', "refund my last invoice"] * 4
    frame = pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "text": texts})
    frame.to_csv(tmp_path / "in.csv", index=False)
    code, _, err = bulk("--model", "text", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.parquet",
                        "--chunk-size", 5)
    assert code == 0, err
    assert_matches_model(read_output(tmp_path / "out.parquet"), frame, trained["text"][1], texts)


def test_empty_input_writes_a_header_only_file(bulk, tmp_path):
    cancer_input().iloc[:0].to_csv(tmp_path / "in.csv", index=False)
    code, out, err = bulk("--model", "cancer", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    assert code == 0, err
    assert (tmp_path / "out.csv").read_text().splitlines() == ['"id","prediction","proba_0","proba_1"']


# ---- sharding -----------------------------------------------------------------------------------
def test_shards_cover_every_row_exactly_once(bulk, trained, tmp_path):
    frame = cancer_input()
    frame.to_csv(tmp_path / "in.csv", index=False, float_format="%.17g")
    for index in range(3):
        code, _, err = bulk("--model", "cancer", "--input", tmp_path / "in.csv", "--output",
                            tmp_path / "out-{shard}.parquet", "--chunk-size", 50,
                            "--shard-index", index, "--shard-count", 3)
        assert code == 0, err
    shards = [read_output(tmp_path / f"out-{i}.parquet") for i in range(3)]
    for index, shard in enumerate(shards):
        # Shard i holds exactly the chunks k with k % 3 == i, in input order.
        expected = [row_id for row, row_id in enumerate(frame["id"]) if (row // 50) % 3 == index]
        assert list(shard["id"]) == expected
    merged = pd.concat(shards).set_index("id").loc[frame["id"]].reset_index()
    assert_matches_model(merged, frame, trained["cancer"][1], frame.drop(columns="id").to_numpy())
    # Cloud Run Jobs' task variables are the defaults.
    code, _, err = bulk("--model", "cancer", "--input", tmp_path / "in.csv", "--output", tmp_path / "env-{shard}.csv",
                        "--chunk-size", 50, CLOUD_RUN_TASK_INDEX=1, CLOUD_RUN_TASK_COUNT=3)
    assert code == 0, err
    assert list(read_output(tmp_path / "env-1.csv")["id"]) == list(shards[1]["id"])


# ---- the feature store → the predictions table ----------------------------------------------------
@pytest.fixture
def store(trained, tmp_path, db_url, monkeypatch):
    """The diabetes rows in the feature store (SQLite, PostgreSQL, MariaDB); p5's bmi is NULL."""
    frame = diabetes_input(trained)
    frame.loc[5, "bmi"] = None
    frame.to_parquet(tmp_path / "records.parquet", index=False)
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(tmp_path / "records.parquet"))
    engine.dispose()
    monkeypatch.setenv("FEATURE_STORE_URL", db_url)
    return frame


def stored_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The scorable records as the store returns them (the reference for the model's own
    predictions), in the store's order: by id."""
    from mlapi.store.feature_store import FeatureStore

    records = FeatureStore(os.environ["FEATURE_STORE_URL"]).lookup(list(frame["id"]))
    columns = [c for c in frame.columns if c != "id"]
    features = pd.DataFrame([records[i] for i in frame["id"]], index=frame["id"])[columns]
    return features.dropna().sort_index()


def stored_rows(tmp_path, table):
    engine = make_engine(f"sqlite:///{tmp_path}/predictions.db")
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY row_id")).mappings()]
    engine.dispose()
    return rows


def test_from_store_to_db_is_idempotent_per_run_id(bulk, trained, store, tmp_path):
    # p5's NULL reaches the model as NaN, which the scaled linear model cannot take: p5 is a failure.
    estimator = trained["ridge"][1]
    code, out, err = bulk("--model", "ridge", "--from-store", "--to-db", "--run-id", "r1", "--chunk-size", 100)
    assert code == 0, err
    assert f"({len(store) - 1} new rows, run id r1)" in out and "p5" in err
    rows = stored_rows(tmp_path, "predictions")
    assert len(rows) == len(store) - 1 and {r["entity_id"] for r in rows} == set(store["id"]) - {"p5"}
    features = stored_features(store)
    expected = dict(zip(features.index, estimator.predict(features)))
    for row in rows:
        # To 1e-12: BLAS sums a chunk in an order that depends on its shape.
        assert orjson.loads(row["prediction"]) == {"value": pytest.approx(expected[row["entity_id"]], rel=1e-12)}
        assert row["message_id"].startswith("batch:r1:0:")
        assert (row["model_name"], row["model_version"]) == ("ridge", "1")
    failures = stored_rows(tmp_path, "prediction_failures")
    assert [f["entity_id"] for f in failures] == ["p5"]
    assert failures[0]["reason"].startswith("record p5, column 'bmi': the value is missing (null or NaN)")

    # A retried task (same run id) writes nothing twice.
    code, out, err = bulk("--model", "ridge", "--from-store", "--to-db", "--run-id", "r1", "--chunk-size", 100)
    assert code == 0, err
    assert "(0 new rows, run id r1)" in out
    assert len(stored_rows(tmp_path, "predictions")) == len(rows)
    assert len(stored_rows(tmp_path, "prediction_failures")) == 1

    # On Cloud Run the execution names the run. The forest takes p5's missing bmi: every record is scored.
    code, _, err = bulk("--model", "diabetes", "--from-store", "--to-db", "--chunk-size", 1000,
                        CLOUD_RUN_EXECUTION="job-x7k2")
    assert code == 0, err
    forest = stored_rows(tmp_path, "predictions")[len(rows):]
    assert {r["message_id"] for r in forest} == {"batch:job-x7k2:0:0"} and len(forest) == len(store)


def test_from_store_to_file(bulk, trained, store, tmp_path):
    code, _, err = bulk("--model", "ridge", "--from-store", "--output", tmp_path / "out.csv", "--chunk-size", 64)
    assert code == 0, err
    features = stored_features(store)
    out = read_output(tmp_path / "out.csv")
    assert list(out["id"]) == list(features.index)
    assert_same(out["prediction"], trained["ridge"][1].predict(features))


def test_file_to_db(bulk, trained, tmp_path):
    texts = ["refund my last invoice", "cannot log in"]
    pd.DataFrame({"id": ["a", "b"], "text": texts}).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = bulk("--model", "text", "--input", tmp_path / "in.csv", "--to-db", "--run-id", "f1")
    assert code == 0, err
    estimator = trained["text"][1]
    for row, text in zip(stored_rows(tmp_path, "predictions"), texts):
        stored = orjson.loads(row["prediction"])
        assert row["message_id"] == "batch:f1:0:0" and stored["sequence"] == text
        assert stored["label"] == estimator.predict([text])[0]
        assert max(stored["scores"]) == estimator.predict_proba([text])[0].max()


def test_file_to_db_needs_ids(bulk, tmp_path):
    # Row numbers as entity ids ("0", "1", ...) would collide with real ids in the shared
    # predictions table: refused before any scoring, saying what to do; nothing is stored.
    pd.DataFrame({"text": ["refund my last invoice", "cannot log in"]}).to_csv(tmp_path / "in.csv", index=False)
    code, out, err = bulk("--model", "text", "--input", tmp_path / "in.csv", "--to-db", "--run-id", "f1")
    assert (code, out) == (2, "")
    assert err == ("mlapi batch-predict: --to-db needs an id per row, and the input has no 'id' column (it has "
                   "text): add one, name the input's id column with --id-column, or write a file with --output, "
                   "where rows without ids are keyed by number\n")
    assert not (tmp_path / "predictions.db").exists() or stored_rows(tmp_path, "predictions") == []
    # ...and with the ids in a column of another name, --id-column names it
    pd.DataFrame({"ticket": ["t1", "t2"], "text": ["refund my last invoice", "cannot log in"]}) \
        .to_csv(tmp_path / "in.csv", index=False)
    code, _, err = bulk("--model", "text", "--input", tmp_path / "in.csv", "--to-db", "--run-id", "f1",
                        "--id-column", "ticket")
    assert code == 0, err
    assert [row["entity_id"] for row in stored_rows(tmp_path, "predictions")] == ["t1", "t2"]


# ---- bounded memory ----------------------------------------------------------------------------
# A child spawned straight from pytest would report pytest's own peak: Linux keeps ru_maxrss
# across exec, and a vfork()ed child starts with its parent's. A small wrapper process runs
# the command and reports its children's ru_maxrss, which is then the command's alone.
MEASURE = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def peak_rss_kb(args, env) -> int:
    """Peak resident memory of one `mlapi` process, in KiB."""
    result = subprocess.run([sys.executable, "-c", MEASURE, str(VENV_BIN / "mlapi"), *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_peak_memory_does_not_grow_with_the_input(trained, tmp_path):
    values = np.random.default_rng(0).normal(size=(300_000, 30)).round(6)
    table = pa.table({"id": pa.array(np.arange(len(values)).astype(str)),
                      **{f"f{i}": values[:, i] for i in range(values.shape[1])}})
    pcsv.write_csv(table, tmp_path / "in1.csv")
    header, body = (tmp_path / "in1.csv").read_bytes().split(b"\n", 1)
    (tmp_path / "in3.csv").write_bytes(header + b"\n" + body * 3)  # the same rows three times
    env = {**os.environ, "MODELS": models_env(trained, "cancer")}
    peaks = {}
    for copies in (1, 3):
        peaks[copies] = peak_rss_kb(["batch-predict", "--input", tmp_path / f"in{copies}.csv", "--output",
                                     tmp_path / f"out{copies}.parquet", "--chunk-size", 2000], env) * 1024
        assert pq.ParquetFile(tmp_path / f"out{copies}.parquet").metadata.num_rows == copies * len(values)
    # Loading the larger file would take at least 144 MB more (its float matrix alone; pandas
    # needs twice that). Streaming takes a constant, plus allocator noise of a few tens of MB.
    extra_loaded = 2 * values.nbytes
    assert peaks[3] - peaks[1] < 0.35 * extra_loaded, {"peak bytes": peaks, "extra bytes if loaded": extra_loaded}


# ---- bad input: one clear line and a non-zero exit, no traceback, no output file --------------------
def test_bad_input_is_a_clear_error(bulk, trained, tmp_path):
    frame = diabetes_input(trained)
    out = tmp_path / "out.csv"

    def fails(*args, expect):
        code, _, err = bulk(*args)
        assert code == 2, err
        assert expect in err and "Traceback" not in err, err
        assert not out.exists() and not out.with_name("out.csv.partial").exists()
        return err

    frame.drop(columns="bmi").to_csv(tmp_path / "nobmi.csv", index=False)
    fails("--model", "diabetes", "--input", tmp_path / "nobmi.csv", "--output", out,
          expect="lacks feature column(s) ['bmi']")
    bad = frame.astype({"s3": object})
    bad.loc[300, "s3"] = "high"  # in a later chunk: earlier chunks were already written
    bad.to_csv(tmp_path / "text.csv", index=False)
    fails("--model", "diabetes", "--input", tmp_path / "text.csv", "--output", out, "--chunk-size", 100,
          expect="row 300, column 's3': 'high' is not a number")
    bad.astype({"s3": str}).to_parquet(tmp_path / "text.parquet", index=False)
    fails("--model", "ridge", "--input", tmp_path / "text.parquet", "--output", out,
          expect="row 300, column 's3': 'high' is not a number")
    (tmp_path / "text.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in bad.to_dict("records")))
    fails("--model", "ridge", "--input", tmp_path / "text.jsonl", "--output", out,
          expect="row 300, column 's3': 'high' is not a number")
    empty = frame.copy()
    empty.loc[150, "age"] = None
    empty.to_csv(tmp_path / "empty.csv", index=False)
    # (The forest takes missing values; the linear model does not.)
    fails("--model", "ridge", "--input", tmp_path / "empty.csv", "--output", out, "--chunk-size", 100,
          expect="row 150, column 'age': the value is missing (null or NaN) and model ridge:1 cannot take a "
                 "missing value here; send a number (scikit-learn: Input X contains NaN)")
    fails("--model", "diabetes", "--input", tmp_path / "empty.csv", "--output", out, "--id-column", "key",
          expect="no 'key' column")
    fails("--model", "cancer", "--input", tmp_path / "nobmi.csv", "--output", out,
          expect="fitted without feature names and expects 30 feature columns; the input has 9")
    fails("--model", "nope", "--input", tmp_path / "nobmi.csv", "--output", out, expect="unknown model 'nope'")
    fails("--model", "diabetes:7", "--input", tmp_path / "nobmi.csv", "--output", out, expect="no version '7'")
    fails("--input", tmp_path / "missing.csv", "--output", out, expect="no such input file")
    fails("--input", tmp_path / "nobmi.csv", "--output", tmp_path / "out.xlsx", expect="unsupported file type '.xlsx'")
    fails("--input", tmp_path / "nobmi.csv", "--output", out, "--shard-count", 2, expect="put {shard} in --output")


def test_the_installed_command_exits_non_zero(trained, tmp_path):
    pd.DataFrame({"id": ["1"], "age": [1.0]}).to_csv(tmp_path / "in.csv", index=False)
    result = subprocess.run([str(VENV_BIN / "mlapi"), "batch-predict", "--input", tmp_path / "in.csv",
                             "--output", tmp_path / "out.csv"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MODELS": models_env(trained, "ridge")})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mlapi batch-predict: the input lacks feature column(s)")
