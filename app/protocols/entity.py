"""The predict-by-id shape (GET /predict/<id>), also the prediction stored for each batch
(Pub/Sub and bulk) row of the predictions table:

    {"id": "1", "data": <text | {feature: value}>,
     "prediction": {"label": top, "labels": [...], "scores": [...], "sequence"?: text}}

labels and scores in descending score order; regressors give {"value": x}.
"""
from __future__ import annotations

from typing import Any

from mlapi.serving.model import TEXT, PredictionResult, ServedModel


def ranked_prediction(model: ServedModel, result: PredictionResult, index: int, data: Any) -> dict:
    label = result.predictions[index]
    if result.probabilities is not None:
        scores = result.probabilities[index]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        prediction: dict = {"label": label, "labels": [result.classes[i] for i in order],
                            "scores": [scores[i] for i in order]}
    elif model.task == "classification":
        prediction = {"label": label}
    else:
        prediction = {"value": label}
    if model.input_kind == TEXT:
        prediction["sequence"] = data
    return prediction


def encode(entity_id: str, data: Any, prediction: dict, model: ServedModel) -> dict:
    return {"id": entity_id, "model": {"name": model.name, "version": model.version},
            "data": data, "prediction": prediction}
