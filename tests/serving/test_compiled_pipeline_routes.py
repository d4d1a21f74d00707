"""A compiled model (ColumnTransformer + HistGradientBoostingClassifier) answers through the one
predict path: every request form, micro-batching, the prediction cache and bulk scoring give
the model's own predict_proba; /models and the card say which path it takes."""
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

from mlapi.cli import main

NUMBERS = ["monthly_spend", "tenure_months", "support_tickets"]


def churn_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"plan": rng.choice(["basic", "pro", "enterprise", "free"], n),
                          "monthly_spend": np.round(rng.gamma(2.0, 30.0, n), 2),
                          "tenure_months": rng.integers(0, 60, n).astype(float),
                          "support_tickets": rng.poisson(2.0, n).astype(float)})
    frame.loc[rng.uniform(size=n) < 0.1, "monthly_spend"] = np.nan
    return frame


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    train = churn_frame(600, 0)
    churned = np.where(train.monthly_spend.fillna(60) / 50 + train.support_tickets * 0.3
                       - train.tenure_months / 30 > 1, "yes", "no")
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                (make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS)),
        HistGradientBoostingClassifier(max_iter=20, random_state=0)).fit(train, churned)
    path = tmp_path_factory.mktemp("churn") / "churn.joblib"
    joblib.dump(model, path)
    test = churn_frame(40, 1)
    test.loc[3, "plan"] = "platinum"  # unseen: ignored by the encoder
    return path, model, test


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def bodies(frame: pd.DataFrame) -> dict:
    rows = records(frame)
    lists = [list(row.values()) for row in rows]
    return {"instances as objects": {"instances": rows}, "instances as lists": {"instances": lists},
            "inputs": {"inputs": rows},
            "dataframe_split": {"dataframe_split": {"columns": list(frame.columns), "data": lists}},
            "dataframe_records": {"dataframe_records": rows}}


@pytest.mark.parametrize("settings", [{}, {"MAX_BATCH_SIZE": "16", "MAX_BATCH_WAIT_MS": "1"},
                                      {"CACHE_ROUTES": "all"}], ids=["plain", "micro-batching", "cache"])
def test_every_request_form_answers_the_models_own_predict_proba(make_app, churn, settings):
    path, model, test = churn
    client = make_app(MODELS=f"churn={path}", **settings).test_client()
    described = client.get("/models/churn/versions/1").get_json()
    assert described["compute_path"]["features"] == {"path": "compiled"}
    expected = model.predict_proba(test).tolist()
    for form, body in bodies(test).items():
        for _ in range(2):  # with the cache on, the second answer is the cached one
            answer = client.post("/models/churn/predict", json=body)
            assert answer.status_code == 200, (form, answer.get_json())
            assert answer.get_json()["probabilities"] == expected, form
            assert answer.get_json()["predictions"] == model.predict(test).tolist(), form
    refused = client.post("/models/churn/predict", json={"instances": [{**records(test)[0], "tenure_months": "x"}]})
    assert refused.status_code == 422 and refused.get_json()["error"]["message"].startswith(
        "instance 0, column 'tenure_months'"), refused.get_json()


def test_bulk_scoring_answers_the_models_own_predict_proba(churn, tmp_path, monkeypatch, capsys):
    path, model, test = churn
    monkeypatch.setenv("MODELS", f"churn={path}")
    monkeypatch.setenv("FEATURE_STORE_URL", f"sqlite:///{tmp_path}/features.db")
    monkeypatch.setenv("PREDICTIONS_DB_URL", f"sqlite:///{tmp_path}/predictions.db")
    frame = test.copy()
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "in.csv", index=False, float_format="%.17g")
    code = main(["batch-predict", "--model", "churn", "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv"), "--chunk-size", "7"])
    assert code == 0, capsys.readouterr().err
    # round_trip: pandas 2's default float parser can miss the written value by an ulp
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str}, float_precision="round_trip")
    expected = model.predict_proba(test)
    assert out["prediction"].tolist() == model.predict(test).tolist()
    for i, label in enumerate(model.classes_):
        assert out[f"proba_{label}"].tolist() == expected[:, i].tolist()


def test_compiled_path_off_is_shown_in_models_and_the_card(make_app, churn, capsys, monkeypatch):
    path, model, test = churn
    client = make_app(MODELS=f"churn={path}", COMPILED_PATH="0").test_client()
    routes = client.get("/models/churn/versions/1").get_json()["compute_path"]
    assert routes == {"columntransformer.transform": {"path": "scikit-learn", "reason": "COMPILED_PATH=off"},
                      "predict_proba": {"path": "scikit-learn", "reason": "COMPILED_PATH=off"},
                      "labels": {"path": "scikit-learn", "reason": "COMPILED_PATH=off"}}
    answer = client.post("/models/churn/predict", json={"instances": records(test)})
    assert answer.get_json()["probabilities"] == model.predict_proba(test).tolist()
    capsys.readouterr()
    assert main(["card", str(path)]) == 0
    assert "compute path features=compiled, predict_proba=" in capsys.readouterr().out
    monkeypatch.setenv("COMPILED_PATH", "0")
    assert main(["card", str(path)]) == 0
    assert "columntransformer.transform=scikit-learn (COMPILED_PATH=off)" in capsys.readouterr().out


def test_predict_by_id_reads_the_store_and_answers_the_models_own(make_app, churn, tmp_path):
    from mlapi.store.database import make_engine
    from mlapi.store.ingest import import_rows, read_rows

    path, model, test = churn
    stored = test.head(6).copy()
    stored.insert(0, "id", [f"c{i}" for i in range(len(stored))])
    stored.to_csv(tmp_path / "customers.csv", index=False, float_format="%.17g")
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    import_rows(engine, "features", "id", read_rows(tmp_path / "customers.csv"))
    engine.dispose()
    client = make_app(MODELS=f"churn={path}", FEATURE_STORE_URL=f"sqlite:///{tmp_path}/store.db").test_client()
    expected = model.predict_proba(test.head(6))
    for i in range(len(stored)):
        answer = client.get(f"/models/churn/predict/c{i}")
        assert answer.status_code == 200, answer.get_json()
        prediction = answer.get_json()["prediction"]
        assert dict(zip(prediction["labels"], prediction["scores"])) == dict(zip(model.classes_, expected[i]))
