"""The predict-by-id shape (also every stored batch prediction) as plain functions."""
from types import SimpleNamespace

from mlapi.protocols import entity
from mlapi.serving.model import TABULAR, TEXT, PredictionResult


def model(task="classification", input_kind=TABULAR):
    return SimpleNamespace(name="tickets", version="3", task=task, input_kind=input_kind)


def test_classifier_with_probabilities_ranks_labels_by_score():
    result = PredictionResult(["b", "a"], [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], ["a", "b", "c"])
    assert entity.ranked_prediction(model(), result, 0, {"x": 1}) == {
        "label": "b", "labels": ["b", "c", "a"], "scores": [0.5, 0.3, 0.2]}
    assert entity.ranked_prediction(model(), result, 1, {"x": 2})["labels"] == ["a", "b", "c"]


def test_text_model_repeats_its_text():
    result = PredictionResult(["billing"], [[0.9, 0.1]], ["billing", "bug"])
    assert entity.ranked_prediction(model(input_kind=TEXT), result, 0, "refund me")["sequence"] == "refund me"


def test_classifier_without_probabilities_and_regressor():
    assert entity.ranked_prediction(model(), PredictionResult([1]), 0, None) == {"label": 1}
    assert entity.ranked_prediction(model("regression"), PredictionResult([2.5]), 0, None) == {"value": 2.5}


def test_encode():
    assert entity.encode("7", {"x": 1}, {"value": 2.5}, model("regression")) == {
        "id": "7", "model": {"name": "tickets", "version": "3"}, "data": {"x": 1}, "prediction": {"value": 2.5}}
