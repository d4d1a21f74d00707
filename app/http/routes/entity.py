"""Predict by id (features from the online store) and the stored batch predictions."""
from __future__ import annotations

from flask import Blueprint

from mlapi.serving.inference import ModelRef
from mlapi.protocols import entity
from mlapi.http.routes.common import json_response, services

blueprint = Blueprint("entity", __name__)


@blueprint.get("/predict/<entity_id>")
@blueprint.get("/models/<name>/predict/<entity_id>")
@blueprint.get("/models/<name>/versions/<version>/predict/<entity_id>")
def predict_by_id(entity_id: str, name: str | None = None, version: str | None = None):
    scored = services().inference.predict_id(ModelRef(name, version), entity_id)
    prediction = entity.ranked_prediction(scored.model, scored.result, 0, scored.data[0])
    return json_response(entity.encode(entity_id, scored.data[0], prediction, scored.model))


@blueprint.get("/predictions/<entity_id>")
def stored_predictions(entity_id: str):
    rows = services().predictions.for_entity(entity_id)
    return json_response({"id": entity_id, "predictions": rows})
