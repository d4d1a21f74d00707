"""Batch inference over Pub/Sub push: message → records → one predict → predictions table.

Outcomes, by what a retry could change:
- stored: predictions (and per-id failures) are written; answer 2xx, which acknowledges.
- poison: data that can never work (not base64/JSON, unknown model, no ids): recorded in the
  failures table and acknowledged, so Pub/Sub does not redeliver it forever.
- transient: a database is down or the model is not loaded here: StoreUnavailable /
  ModelNotReady propagate as 503, Pub/Sub redelivers, and the unique (message, entity) key
  makes the retry write nothing twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from mlapi.errors import ModelNotFound
from mlapi.serving.inference import InferenceService, ModelRef
from mlapi.store.predictions import PredictionStore
from mlapi.protocols import entity
from mlapi.protocols.pubsub import PoisonMessage, PushMessage, decode_batch_request

log = logging.getLogger(__name__)


@dataclass
class PushOutcome:
    message_id: str
    status: str                 # "stored" or "failed"
    stored: int = 0             # new prediction rows (0 on a redelivery)
    scored: int = 0             # ids predicted in this delivery
    failed: dict | None = None  # entity id ("" = whole message) → reason

    def to_dict(self) -> dict:
        return {"message_id": self.message_id, "status": self.status, "stored": self.stored,
                "scored": self.scored, "failed": self.failed or {}}


class BatchInference:
    def __init__(self, inference: InferenceService, predictions: PredictionStore):
        self.inference = inference
        self.predictions = predictions

    def handle(self, message: PushMessage) -> PushOutcome:
        try:
            request = decode_batch_request(message)
            scored = self.inference.predict_ids(ModelRef(request.model_name, request.model_version), request.ids)
        except (PoisonMessage, ModelNotFound) as exc:
            reason = exc.message if isinstance(exc, ModelNotFound) else str(exc)
            log.warning("message %s is poison, recorded and acknowledged: %s", message.message_id, reason)
            self.predictions.record_failures(message.message_id, [("", reason)], message.data)
            return PushOutcome(message.message_id, "failed", failed={"": reason})
        model = scored.model
        rows = []
        for index, entity_id in enumerate(scored.ids):
            rows.append((entity_id, entity.ranked_prediction(model, scored.result, index, scored.data[index])))
        stored = self.predictions.record_predictions(message.message_id, model.name, model.version, rows)
        if scored.failures:
            self.predictions.record_failures(message.message_id, list(scored.failures.items()), message.data)
        return PushOutcome(message.message_id, "stored" if rows else "failed", stored, len(rows), scored.failures)
