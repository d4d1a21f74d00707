"""The peer benchmark's M3: trained the same way every time, served by the minimal handler as
DataFrame records, and every answer checked against the model's own predict_proba."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from conftest import ROOT

PEERS = ROOT / "bench" / "peers"


def load(name: str, module: str):
    if str(PEERS) not in sys.path:  # the benchmark's modules import each other (systems, measure)
        sys.path.append(str(PEERS))
    spec = importlib.util.spec_from_file_location(module, PEERS / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


m3 = load("m3", "peer_m3")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    with threadpool_limits(1):  # one native thread, as the servers run (OpenMP on 2 busy cores)
        model = m3.train()
    path = tmp_path_factory.mktemp("m3") / "m3.joblib"
    joblib.dump(model, path)
    return path


def test_m3_is_trained_the_same_every_time_with_a_hundred_iterations(model_file):
    first = joblib.load(model_file)
    with threadpool_limits(1):
        again = m3.train()
    rows = pd.DataFrame(m3.request_records(100))
    assert first[-1].n_iter_ == 100
    assert np.array_equal(first.predict_proba(rows), again.predict_proba(rows))
    assert set(first.predict(rows)) == {0, 1}  # the 100-row body exercises both classes


def test_request_records_are_plain_json_with_the_training_columns():
    records = m3.request_records(3)
    assert json.loads(json.dumps(records)) == records
    assert all(list(record) == list(m3.COLUMNS) and record["plan"] in m3.PLANS for record in records)


def test_the_minimal_handler_predicts_dataframe_records_as_the_model_does(model_file, monkeypatch):
    monkeypatch.setenv("MODEL_PATH", str(model_file))
    handler = load("flask_app", "peer_flask_app")
    records = m3.request_records(20)
    with threadpool_limits(1):
        answer = handler.app.test_client().post("/predict", json={"instances": records})
        expected = joblib.load(model_file).predict(pd.DataFrame(records)).tolist()
    assert answer.status_code == 200 and answer.get_json() == {"predictions": expected}


def test_probabilities_are_checked_within_the_documented_tolerance_only():
    bench = load("measure", "peer_measure")
    want = [[0.25, 0.75], [0.5, 0.5]]
    assert bench.proba_mismatch([[0.25, 0.75], [0.5, 0.5]], want) is None
    assert bench.proba_mismatch([[0.25 + 1e-12, 0.75], [0.5, 0.5]], want) is None  # sums in another order
    assert "off by up to 1e-06" in bench.proba_mismatch([[0.25, 0.75 + 1e-6], [0.5, 0.5]], want)
    assert "shape" in bench.proba_mismatch([[0.25, 0.75]], want)


def test_m3_has_its_own_bodies_and_m1_m2_share_theirs():
    bench = load("measure", "peer_measure")
    assert bench.body_file("mlflow", "batch", "m3").endswith("/bodies/mlflow_m3_batch.json")
    assert bench.body_file("mlflow", "batch", "m1") == bench.body_file("mlflow", "batch", "m2")


def test_prepare_writes_every_systems_m3_request_and_the_answers_to_expect(tmp_path):
    done = subprocess.run([sys.executable, str(PEERS / "prepare.py"), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    bodies = {path.name: json.loads(path.read_text()) for path in (tmp_path / "bodies").glob("*_m3_*.json")}
    assert {name.split("_m3_")[0] for name in bodies} == {"flask", "mlflow", "mlflow_df", "mlserver", "bentoml"}
    records = bodies["flask_m3_batch.json"]["instances"]
    assert records == m3.request_records(100)
    assert bodies["mlflow_m3_batch.json"] == {"dataframe_records": records}
    assert bodies["bentoml_m3_batch.json"] == {"records": records}
    v2 = bodies["mlserver_m3_batch.json"]
    assert v2["parameters"] == {"content_type": "pd"}
    assert [(i["name"], i["datatype"], i["shape"]) for i in v2["inputs"]] == \
        [("plan", "BYTES", [100, 1]), ("a", "FP64", [100, 1]), ("b", "FP64", [100, 1]), ("c", "FP64", [100, 1])]
    assert v2["inputs"][1]["data"] == [r["a"] for r in records]
    expected = json.loads((tmp_path / "expected.json").read_text())
    model = joblib.load(tmp_path / "models" / "m3.joblib")
    with threadpool_limits(1):
        assert expected["expected"]["m3"]["batch"] == model.predict(pd.DataFrame(records)).tolist()
        assert expected["expected_proba"]["m3"]["batch"] == model.predict_proba(pd.DataFrame(records)).tolist()
