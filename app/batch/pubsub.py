"""Batch inference over Pub/Sub push: a decoded message → records → one predict → predictions table.

The route decodes the push envelope and its batch request (protocols/pubsub.py); this core
sees only the decoded BatchMessage. Outcomes, by what a retry could change:
- stored: predictions (and per-id failures) are written; answer 2xx, which acknowledges.
- poison: data that can never work (not base64/JSON, unknown model, no ids): recorded in the
  failures table and acknowledged, so Pub/Sub does not redeliver it forever.
- transient: a database is down or the model is not loaded here: StoreUnavailable /
  ModelNotReady propagate as 503, Pub/Sub redelivers, and the unique (message, entity) key
  makes the retry write nothing twice.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from mlapi.batch.recording import record_scored
from mlapi.errors import ModelNotFound, cut
from mlapi.protocols.pubsub import BatchMessage
from mlapi.serving.inference import InferenceService, ModelRef
from mlapi.store.predictions import REASON_LIMIT, PredictionStore

log = logging.getLogger(__name__)


# Failures an answer lists: the answer goes back to Pub/Sub (which ignores it) or to whoever
# posted the push; all of them are in the failures table. 9,999 unknown ids answered 730 KB.
SHOWN_FAILURES = 20


@dataclass
class PushOutcome:
    message_id: str
    status: str                 # "stored" or "failed"
    stored: int = 0             # new prediction rows (0 on a redelivery)
    scored: int = 0             # ids predicted in this delivery
    failed: dict | None = None  # entity id ("" = whole message) → reason

    def to_dict(self) -> dict:
        failed = self.failed or {}
        listed = itertools.islice(failed.items(), SHOWN_FAILURES)
        return {"message_id": self.message_id, "status": self.status, "stored": self.stored, "scored": self.scored,
                "failed": {entity_id: cut(reason, REASON_LIMIT) for entity_id, reason in listed},
                "failed_count": len(failed)}


class BatchInference:
    def __init__(self, inference: InferenceService, predictions: PredictionStore):
        self.inference = inference
        self.predictions = predictions

    def handle(self, message: BatchMessage) -> PushOutcome:
        request = message.request
        if request is None:
            return self._poison(message, message.poison or "message data cannot be processed")
        try:
            scored = self.inference.predict_ids(ModelRef(request.model_name, request.model_version), request.ids)
        except ModelNotFound as exc:
            return self._poison(message, exc.message)
        stored = record_scored(self.predictions, message.message_id, scored.model, scored.ids, scored.result,
                               scored.data, scored.failures, message.payload)
        status = "stored" if scored.ids else "failed"
        return PushOutcome(message.message_id, status, stored, len(scored.ids), scored.failures)

    def _poison(self, message: BatchMessage, reason: str) -> PushOutcome:
        reason = cut(reason, REASON_LIMIT)  # it may quote the message (a model name of 1 MB)
        log.warning("message %s is poison, recorded and acknowledged: %s", message.message_id, reason)
        self.predictions.record_failures(message.message_id, [("", reason)], message.payload)
        return PushOutcome(message.message_id, "failed", failed={"": reason})
