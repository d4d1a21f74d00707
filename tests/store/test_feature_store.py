"""Online feature store: ingestion (add, import, sync) and predict by id, on SQLite,
PostgreSQL and MariaDB."""
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlapi.serving.inference import ModelRef
from mlapi.store.database import make_engine
from mlapi.store.ingest import ImportRefused, import_rows, read_rows
from conftest import VENV_BIN, free_port, models_env


def mlapi(*args, env=None, check=True):
    result = subprocess.run([str(VENV_BIN / "mlapi"), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def write_csv(path, frame):
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def stocked(db_url, trained, tmp_path):
    """A store with text records and tabular (diabetes) records, imported from files."""
    texts = pd.DataFrame({"id": ["1", "2", "3"], "text": ["refund my last invoice", "the app crashes on my phone",
                                                          "cannot log in to my account"]})
    frame = trained["diabetes"][2].copy()
    frame.insert(0, "id", [f"p{i}" for i in range(len(frame))])
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_csv(tmp_path / "texts.csv", texts)))
    import_rows(engine, "tabular", "id", read_rows(write_csv(tmp_path / "tab.csv", frame)))
    engine.dispose()
    return db_url, texts, frame


def app_for(make_app, trained, url, table="features", **env):
    return make_app(MODELS=f"text={trained['text'][0]},diabetes={trained['diabetes'][0]}",
                    FEATURE_STORE_URL=url, FEATURE_TABLE=table, **env).test_client()


def test_predict_by_id_text_model(stocked, make_app, trained):
    url, texts, _ = stocked
    client = app_for(make_app, trained, url)
    estimator = trained["text"][1]
    for entity_id, text in zip(texts["id"], texts["text"]):
        body = client.get(f"/predict/{entity_id}").get_json()
        proba = estimator.predict_proba([text])[0]
        order = sorted(range(len(proba)), key=lambda i: -proba[i])
        assert body["id"] == entity_id and body["data"] == text
        assert body["prediction"] == {"label": estimator.predict([text])[0],
                                      "labels": [estimator.classes_[i] for i in order],
                                      "scores": [proba[i] for i in order], "sequence": text}
    versioned = client.get("/models/text/versions/1/predict/2").get_json()
    assert versioned["prediction"]["label"] == estimator.predict([texts["text"][1]])[0]


def test_predict_by_id_tabular_regressor(stocked, make_app, trained):
    url, _, frame = stocked
    client = app_for(make_app, trained, url, table="tabular")
    estimator = trained["diabetes"][1]
    body = client.get("/models/diabetes/predict/p3").get_json()
    features = frame.drop(columns="id").iloc[[3]]
    assert body["data"] == features.iloc[0].to_dict()  # exactly as stored (no DECIMAL rounding)
    assert body["prediction"] == {"value": estimator.predict(features)[0]}


def test_unknown_id_404_and_missing_feature_422(stocked, make_app, trained):
    url, _, _ = stocked
    client = app_for(make_app, trained, url, table="tabular")
    missing = client.get("/models/diabetes/predict/nope")
    assert missing.status_code == 404 and "nope" in missing.get_json()["error"]["message"]
    # The store has no column for the model's features (a table of texts): named, 422.
    textual = app_for(make_app, trained, url).get("/models/diabetes/predict/1")
    error = textual.get_json()["error"]
    assert textual.status_code == 422 and error["message"].startswith(
        "record 1 is missing features ['age', 'sex', 'bmi', 'bp', 's1', 's2', 's3', 's4', 's5', 's6'] that model "
        "diabetes needs: the store has no such column")
    assert error["missing"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def test_a_null_feature_is_a_missing_value_as_null_in_a_body_is(stocked, make_app, trained):
    # NULL in the store = null in a request body: NaN reaches the model. The forest takes it (its
    # own prediction for the row with NaN); the scaled linear model cannot, and says which record
    # and column, for the HTTP route and the batch flow (Pub/Sub, bulk --from-store) alike.
    url, _, frame = stocked
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tabular SET bmi = NULL, s5 = NULL WHERE id = 'p1'"))
    engine.dispose()
    app = make_app(MODELS=models_env(trained, "diabetes", "ridge"), FEATURE_STORE_URL=url, FEATURE_TABLE="tabular")
    client = app.test_client()
    with_gaps = frame.drop(columns="id").iloc[[1]].copy()
    with_gaps[["bmi", "s5"]] = np.nan
    body = client.get("/models/diabetes/predict/p1").get_json()
    assert body["prediction"] == {"value": trained["diabetes"][1].predict(with_gaps)[0]}
    assert body["data"]["bmi"] is None and body["data"]["s5"] is None
    assert client.post("/models/diabetes/predict", json={"instances": [body["data"]]}).get_json()["predictions"] \
        == [body["prediction"]["value"]]  # as the same record sent with nulls
    refused = client.get("/models/ridge/predict/p1")
    error = refused.get_json()["error"]
    said = ("record p1, column 'bmi': the value is missing (null or NaN) and model ridge:1 cannot take a missing "
            "value here; send a number (scikit-learn: Input X contains NaN); record p1 has NULL for ['bmi', 's5']: "
            "store values there (`mlapi features add`), or send the instance itself to POST /models/ridge/predict")
    assert (refused.status_code, error["message"]) == (422, said)
    assert (error["id"], error["column"], error["missing"]) == ("p1", "bmi", ["bmi", "s5"])
    batch = app.extensions["mlapi.services"].inference.predict_ids(ModelRef("ridge"), ["p0", "p1", "p2"])
    assert batch.ids == ["p0", "p2"] and batch.failures == {"p1": said}
    assert batch.result.predictions == trained["ridge"][1].predict(frame.drop(columns="id").iloc[[0, 2]]).tolist()


def test_a_record_the_model_refuses_is_named_by_its_id(db_url, make_app, tmp_path):
    # Fetched by id, the one instance is "record c2", for the HTTP route and for batch (Pub/Sub) alike.
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from churn_model import PLANS, churn_frame

    frame, labels = churn_frame()
    model = make_pipeline(ColumnTransformer([("plan", OneHotEncoder(), ["plan"]),
                                             ("numbers", StandardScaler(), ["tenure_months", "monthly_spend"])]),
                          LogisticRegression(max_iter=500)).fit(frame, labels)
    joblib.dump(model, tmp_path / "churn.joblib")
    records = pd.DataFrame({"id": ["c1", "c2"], "plan": ["pro", "gold"], "tenure_months": [12.0, 3.0],
                            "monthly_spend": [40.0, 80.0]})
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_csv(tmp_path / "records.csv", records)))
    engine.dispose()
    app = make_app(MODELS=f"churn={tmp_path / 'churn.joblib'}", FEATURE_STORE_URL=db_url)
    client = app.test_client()
    good = client.get("/models/churn/predict/c1")
    assert good.status_code == 200 and good.get_json()["prediction"]["label"] == model.predict(records.iloc[[0]])[0]
    refused = client.get("/models/churn/predict/c2")
    error = refused.get_json()["error"]
    said = (f"record c2, column 'plan': 'gold' is not one of the known categories "
            f"{', '.join(repr(plan) for plan in PLANS)}; send one of those")
    assert refused.status_code == 422 and error["message"].startswith(said), error
    assert (error["id"], error["column"], error["value"]) == ("c2", "plan", "gold") and "instance" not in error
    batch = app.extensions["mlapi.services"].inference.predict_ids(ModelRef("churn"), ["c1", "c2"])
    assert batch.ids == ["c1"] and batch.failures["c2"].startswith(said)


def test_empty_store_is_404_not_500(make_app, trained, tmp_path):
    client = app_for(make_app, trained, f"sqlite:///{tmp_path}/empty.db")
    assert client.get("/predict/1").status_code == 404


def test_unreachable_store_is_503_and_readyz_reports_it(make_app, trained):
    port = free_port()  # nothing listens there
    client = app_for(make_app, trained, f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    response = client.get("/models/text/predict/1")
    assert response.status_code == 503 and "feature store is unreachable" in response.get_json()["error"]["message"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["stores"]["feature_store"].startswith("the feature store is unreachable")
    assert client.post("/models/text/predict", json={"instances": ["still serving"]}).status_code == 200


def test_import_refuses_a_file_with_bad_rows_and_writes_nothing(db_url, tmp_path):
    good = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    engine = make_engine(db_url)
    import_rows(engine, "features", "id", read_rows(write_csv(tmp_path / "good.csv", good)))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x\nc,3.5\n,4.5\nd,not-a-number\ne,5.5,extra\nf,6.5\n")
    with pytest.raises(ImportRefused) as refused:
        import_rows(engine, "features", "id", read_rows(bad))
    assert [line for line, _ in refused.value.report.bad_rows] == [3, 4, 5]
    assert "not a float" in refused.value.report.bad_rows[1][1]
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT id FROM features")).scalars()) == ["a", "b"]  # nothing of bad.csv
    report = import_rows(engine, "features", "id", read_rows(bad), skip_bad_rows=True)
    assert report.written == 2 and len(report.bad_rows) == 3
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, x FROM features")).all())
    assert rows == {"a": 1.5, "b": 2.5, "c": 3.5, "f": 6.5}
    engine.dispose()


def test_import_formats_create_the_table_and_upsert(tmp_path):
    url = f"sqlite:///{tmp_path}/fs.db"
    frame = pd.DataFrame({"id": ["1", "2"], "age": [30, 41], "score": [0.5, 1.5], "city": ["a", "b"]})
    frame.to_parquet(tmp_path / "f.parquet")
    env = {"FEATURE_STORE_URL": url}
    assert "(table created)" in mlapi("features", "import", str(tmp_path / "f.parquet"), env=env).stdout
    (tmp_path / "f.jsonl").write_text(json.dumps({"id": "2", "age": 42, "score": 2.5, "city": "c"}) + "\n")
    mlapi("features", "import", str(tmp_path / "f.jsonl"), env=env)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, age, score, city FROM features ORDER BY id")).all()
        columns = {c["name"]: str(c["type"]) for c in sa.inspect(conn).get_columns("features")}
    assert [tuple(r) for r in rows] == [("1", 30, 0.5, "a"), ("2", 42, 2.5, "c")]
    assert columns["age"] == "BIGINT" and columns["score"] in ("DOUBLE", "FLOAT") and columns["city"] == "TEXT"
    refused = mlapi("features", "import", str(tmp_path / "nope.csv"), env=env, check=False)
    assert refused.returncode != 0


def test_add_to_the_source_database_then_import_into_the_store(tmp_path, make_app, trained):
    env = {"FEATURE_STORE_URL": f"sqlite:///{tmp_path}/fs.db", "SOURCE_DB_URL": f"sqlite:///{tmp_path}/app.db"}
    assert mlapi("features", "add", "test data point 1", env=env).stdout.strip() == "1"
    assert mlapi("features", "add", "the app crashes on start", env=env).stdout.strip() == "2"
    client = app_for(make_app, trained, env["FEATURE_STORE_URL"])
    assert client.get("/predict/1").status_code == 404  # not in the online store yet
    assert "synced 2 rows" in mlapi("features", "import", env=env).stdout
    body = client.get("/predict/1").get_json()
    assert body["data"] == "test data point 1" and body["prediction"]["sequence"] == "test data point 1"
    # incremental: only the new record and the one at the last high-water mark are read again
    mlapi("features", "add", "third point", env=env)
    assert "synced 2 rows" in mlapi("features", "import", env=env).stdout
    assert client.get("/predict/3").get_json()["data"] == "third point"


def test_add_without_source_goes_straight_to_the_store(tmp_path, make_app, trained):
    env = {"FEATURE_STORE_URL": f"sqlite:///{tmp_path}/fs.db"}
    assert mlapi("features", "add", "first", env=env).stdout.strip() == "1"
    assert mlapi("features", "add", "--json", '{"id": "u7", "text": "tabular-style row"}', env=env).stdout.strip() == "u7"
    assert mlapi("features", "add", "second", env=env).stdout.strip() == "2"
    assert "nothing to import" in mlapi("features", "import", env=env).stdout
    client = app_for(make_app, trained, env["FEATURE_STORE_URL"])
    assert client.get("/predict/u7").get_json()["data"] == "tabular-style row"


def test_sync_from_an_operational_database(db_url, tmp_path, make_app, trained):
    source = make_engine(db_url)
    with source.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, body TEXT, "
                             "updated_at TIMESTAMP NULL)"))
        conn.execute(sa.text("INSERT INTO customers VALUES (10, 'refund my invoice', '2026-01-01 10:00:00'), "
                             "(11, 'app crashes', '2026-01-01 11:00:00')"))
    store_url = f"sqlite:///{tmp_path}/store.db"
    env = {"FEATURE_STORE_URL": store_url}
    query = "SELECT customer_id AS id, body AS text, updated_at FROM customers"
    assert "synced 2 rows into features (incremental)" in mlapi("features", "sync", "--from", db_url, "--query", query, env=env).stdout
    with source.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET body = 'cannot log in', updated_at = '2026-01-02 09:00:00' WHERE customer_id = 10"))
    second = mlapi("features", "sync", "--from", db_url, "--query", query, env=env).stdout
    assert "synced 2 rows" in second  # the changed row and the one at the previous mark
    source.dispose()
    client = app_for(make_app, trained, store_url)
    assert client.get("/predict/10").get_json()["data"] == "cannot log in"
    assert client.get("/predict/11").get_json()["data"] == "app crashes"


def test_server_start_leaves_sqlalchemy_for_the_first_request_that_needs_it(stocked, trained, tmp_path):
    # A server answering only /predict never imports SQLAlchemy (0.17 s of a cold start);
    # the first request that needs a database imports it and works. A fresh interpreter:
    # this test process has imported SQLAlchemy long ago.
    url, texts, _ = stocked
    script = f"""
import sys
from mlapi import create_app
from mlapi.config import Settings
app = create_app(Settings.from_env({{"MODELS": "text={trained['text'][0]}", "FEATURE_STORE_URL": {url!r},
                                    "PREDICTIONS_DB_URL": "sqlite:///{tmp_path}/predictions.db"}}))
client = app.test_client()
assert client.post("/predict", json={{"instances": ["refund please"]}}).status_code == 200
print("after predict:", "sqlalchemy" in sys.modules)
print("by id:", client.get("/predict/1").get_json()["data"])
print("readyz:", client.get("/readyz").status_code)
"""
    result = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if not line.startswith("{")]  # not the JSON logs
    assert printed == ["after predict: False", f"by id: {texts['text'][0]}", "readyz: 200"]
