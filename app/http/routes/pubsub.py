"""POST /pubsub/push: Pub/Sub push deliveries. 2xx acknowledges; 503 asks for redelivery."""
from __future__ import annotations

from flask import Blueprint, current_app

from mlapi.protocols.pubsub import decode_envelope
from mlapi.http.routes.common import json_body, json_response

blueprint = Blueprint("pubsub", __name__)


@blueprint.post("/pubsub/push")
def push():
    message = decode_envelope(json_body())
    outcome = current_app.extensions["mlapi.batch"].handle(message)
    return json_response(outcome.to_dict())
