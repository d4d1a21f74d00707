"""POST /pubsub/push: Pub/Sub push deliveries. 2xx acknowledges; 503 asks for redelivery."""
from __future__ import annotations

from flask import Blueprint

from mlapi.protocols.pubsub import decode_push
from mlapi.http.routes.common import json_body, json_response, services

blueprint = Blueprint("pubsub", __name__)


@blueprint.post("/pubsub/push")
def push():
    # Envelope and batch request are decoded here; the batch core gets a plain BatchMessage.
    message = decode_push(json_body())
    outcome = services().batch.handle(message)
    return json_response(outcome.to_dict())
