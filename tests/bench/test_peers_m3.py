"""The peer benchmark's M3: trained the same way every time, served by the minimal handler as
DataFrame records, and every answer checked against the model's own predict_proba."""
from __future__ import annotations

import importlib.util
import json

import joblib
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from conftest import ROOT

PEERS = ROOT / "bench" / "peers"


def load(name: str, module: str):
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
    bench = load("bench", "peer_bench")
    want = [[0.25, 0.75], [0.5, 0.5]]
    assert bench.proba_mismatch([[0.25, 0.75], [0.5, 0.5]], want) is None
    assert bench.proba_mismatch([[0.25 + 1e-12, 0.75], [0.5, 0.5]], want) is None  # sums in another order
    assert "off by up to 1e-06" in bench.proba_mismatch([[0.25, 0.75 + 1e-6], [0.5, 0.5]], want)
    assert "shape" in bench.proba_mismatch([[0.25, 0.75]], want)


def test_m3_has_its_own_bodies_and_m1_m2_share_theirs():
    bench = load("bench", "peer_bench")
    assert bench.body_file("mlflow", "batch", "m3").endswith("/bodies/mlflow_m3_batch.json")
    assert bench.body_file("mlflow", "batch", "m1") == bench.body_file("mlflow", "batch", "m2")
