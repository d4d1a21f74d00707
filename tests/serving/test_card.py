"""A model's card (app/serving/card.py): its facts are the model's own, and its example instance is
accepted by the model through the served path."""
import hashlib

import joblib
import numpy as np
import pandas as pd
import pytest

from churn_model import PLANS, churn_frame, train_churn
from conftest import models_env
from mlapi.serving.card import EXAMPLE_TEXT, model_card

KEYS = {"name", "version", "sha256", "source", "format", "task", "input_kind", "features", "n_features",
        "classes", "compute_path", "example"}


@pytest.fixture
def served(make_app, trained, tmp_path):
    """An app serving a ColumnTransformer pipeline with a string category (churn), a bare
    estimator fitted on arrays (tree), a text pipeline (text) and a regressor (ridge)."""
    churn_path = tmp_path / "churn.joblib"
    joblib.dump(train_churn(), churn_path)
    app = make_app(MODELS=f"churn={churn_path},{models_env(trained, 'tree', 'text', 'ridge')}")
    registry = app.extensions["mlapi.services"].registry
    return app.test_client(), {name: model_card(registry.get(name)) for name in ("churn", "tree", "text", "ridge")}


def predict_example(client, card) -> list:
    response = client.post(f"/models/{card['name']}/predict", json={"instances": [card["example"]]})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def test_a_column_transformer_card_lists_the_string_category_and_its_example_is_served(served, tmp_path):
    client, cards = served
    card = cards["churn"]
    assert set(card) == KEYS
    model = joblib.load(tmp_path / "churn.joblib")
    assert card["features"] == [{"name": "plan", "type": "string", "categories": PLANS, "accepts_unknown": True},
                                {"name": "tenure_months", "type": "number"},
                                {"name": "monthly_spend", "type": "number"}]
    assert card["n_features"] == 3 and card["input_kind"] == "tabular" and card["task"] == "classification"
    assert card["classes"] == model.classes_.tolist() == ["no", "yes"]
    assert card["name"] == "churn" and card["version"] == "1" and card["source"] == str(tmp_path / "churn.joblib")
    assert card["sha256"] == hashlib.sha256((tmp_path / "churn.joblib").read_bytes()).hexdigest()
    assert card["example"] == {"plan": "basic", "tenure_months": 0.0, "monthly_spend": 0.0}
    frame = pd.DataFrame([card["example"]])
    assert predict_example(client, card) == model.predict(frame).tolist()
    # every category the card lists is one the model takes
    rows, _ = churn_frame(rows=3)
    for plan in card["features"][0]["categories"]:
        rows["plan"] = plan
        body = client.post("/models/churn/predict", json={"instances": rows.to_dict(orient="records")}).get_json()
        assert body["predictions"] == model.predict(rows).tolist()


def test_a_bare_estimator_fitted_on_arrays_has_a_width_but_no_named_features(served, trained):
    client, cards = served
    card = cards["tree"]
    _, estimator, _ = trained["tree"]
    assert card["features"] is None and card["n_features"] == estimator.n_features_in_ == 30
    assert card["classes"] == estimator.classes_.tolist() and card["task"] == "classification"
    assert card["example"] == [0.0] * 30
    assert predict_example(client, card) == estimator.predict(np.zeros((1, 30))).tolist()
    # the compute path the card names is the one the model reports
    assert "predict_proba=" in card["compute_path"] and "labels=" in card["compute_path"]


def test_a_text_pipeline_takes_one_text(served, trained):
    client, cards = served
    card = cards["text"]
    _, estimator, _ = trained["text"]
    assert card["input_kind"] == "text" and card["features"] is None and card["n_features"] is None
    assert card["classes"] == estimator.classes_.tolist()
    assert card["example"] == EXAMPLE_TEXT
    assert predict_example(client, card) == estimator.predict([EXAMPLE_TEXT]).tolist()


def test_a_regressor_has_numbers_for_its_named_features_and_no_classes(served, trained):
    client, cards = served
    card = cards["ridge"]
    _, estimator, _ = trained["ridge"]
    names = estimator.feature_names_in_.tolist()
    assert card["task"] == "regression" and card["classes"] is None
    assert card["features"] == [{"name": name, "type": "number"} for name in names]
    assert card["example"] == dict.fromkeys(names, 0.0)
    assert predict_example(client, card) == pytest.approx(
        estimator.predict(pd.DataFrame([card["example"]])).tolist(), rel=1e-12)
    assert "predict=" in card["compute_path"]
