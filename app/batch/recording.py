"""Scored records → the predictions table: how a stored prediction row is built, once, for
Pub/Sub messages and bulk runs alike.

A row holds the predict-by-id prediction (protocols/entity.py's `ranked_prediction`) for one
entity under one message id; ids that could not be scored go to the failures table under the
same message id. Both tables are unique on (message id, entity id), so a redelivered message
or a retried bulk chunk stores nothing twice.
"""
from __future__ import annotations

from typing import Any, Sequence

from mlapi.protocols.entity import ranked_prediction
from mlapi.serving.model import PredictionResult, ServedModel
from mlapi.store.predictions import PredictionStore


def record_scored(predictions: PredictionStore, message_id: str, model: ServedModel, ids: Sequence[str],
                  result: PredictionResult | None, data: Sequence[Any] | None, failures: dict[str, str],
                  payload: str | None = None) -> int:
    """Store row i's prediction for ids[i] (`data[i]`: what the record showed the model, the
    text a text model's row repeats), then the failures; returns how many rows were new."""
    rows = [(entity_id, ranked_prediction(model, result, i, data[i] if data else None))
            for i, entity_id in enumerate(ids)]
    stored = predictions.record_predictions(message_id, model.name, model.version, rows)
    if failures:
        predictions.record_failures(message_id, list(failures.items()), payload)
    return stored
