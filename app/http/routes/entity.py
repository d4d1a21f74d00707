"""Predict by id (features from the online store) and the stored batch predictions."""
from __future__ import annotations

from flask import Blueprint

from mlapi.http.cache_headers import with_cache_headers
from mlapi.serving.inference import ModelRef
from mlapi.protocols import entity
from mlapi.http.routes.common import call_logged, documented, json_response, services
from mlapi.protocols.response_bodies import EntityPrediction, StoredPredictions

blueprint = Blueprint("entity", __name__)


@blueprint.get("/predict/<entity_id>")
@blueprint.get("/models/<name>/predict/<entity_id>")
@blueprint.get("/models/<name>/versions/<version>/predict/<entity_id>")
@documented(EntityPrediction, errors=(404, 422, 503), tag="by id")
@call_logged("entity_id")
def predict_by_id(entity_id: str, name: str | None = None, version: str | None = None):
    """Predict a feature-store record by its id

    The record's features (or text) are read from the online feature store (FEATURE_STORE_URL)."""
    scored = services().inference.predict_id(ModelRef(name, version), entity_id)
    prediction = entity.ranked_prediction(scored.model, scored.result, 0, scored.data[0])
    return json_response(with_cache_headers(entity.encode(entity_id, scored.data[0], prediction, scored.model),
                                            scored.cached))


@blueprint.get("/predictions/<entity_id>")
@documented(StoredPredictions, errors=(503,), tag="batch")
def stored_predictions(entity_id: str):
    """The batch (Pub/Sub, bulk) predictions stored for an id"""
    rows = services().predictions.for_entity(entity_id)
    return json_response({"id": entity_id, "predictions": rows})
