"""Pub/Sub push: the envelope, and the batch request inside its base64 data.

Envelope: {"message": {"data": <base64>, "messageId", "attributes", "publishTime"}, "subscription"}
Data:     JSON {"id": "1"} or {"ids": ["1", "2"]}, optional "model": "name" or "name:version".

A malformed envelope is the pusher's error (400). Data that can never be processed raises
PoisonMessage: the caller records it and acknowledges, so it is not redelivered forever.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import orjson

from mlapi.errors import BadRequest

MAX_IDS = 10_000
MAX_ID_LENGTH = 255        # the predictions table's entity_id column
MAX_MESSAGE_ID_LENGTH = 128


class PoisonMessage(Exception):
    """The message's data can never be processed; retrying cannot help."""


@dataclass(frozen=True)
class PushMessage:
    message_id: str
    data: str
    attributes: dict = field(default_factory=dict)
    publish_time: str | None = None
    subscription: str | None = None


@dataclass(frozen=True)
class BatchRequest:
    ids: list[str]
    model_name: str | None
    model_version: str | None


def decode_envelope(body: dict) -> PushMessage:
    message = body.get("message")
    if not isinstance(message, dict):
        raise BadRequest('not a Pub/Sub push envelope: "message" must be an object')
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise BadRequest("not a Pub/Sub push envelope: message.messageId is missing or too long")
    data = message.get("data", "")
    if not isinstance(data, str):
        raise BadRequest("not a Pub/Sub push envelope: message.data must be a base64 string")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise BadRequest("not a Pub/Sub push envelope: message.attributes must be an object")
    return PushMessage(message_id, data, attributes, message.get("publishTime"), body.get("subscription"))


def decode_batch_request(message: PushMessage) -> BatchRequest:
    try:
        raw = base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonMessage("message data is not valid base64") from None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PoisonMessage("message data is not JSON") from None
    if not isinstance(payload, dict):
        raise PoisonMessage('message data must be a JSON object like {"id": "1"} or {"ids": [...]}')
    if "ids" in payload:
        ids = payload["ids"]
        if not isinstance(ids, list) or not ids:
            raise PoisonMessage('"ids" must be a non-empty list')
    elif "id" in payload:
        ids = [payload["id"]]
    else:
        raise PoisonMessage('message data needs "id" or "ids"')
    if len(ids) > MAX_IDS:
        raise PoisonMessage(f"a message may carry at most {MAX_IDS} ids, this one has {len(ids)}")
    if not all(isinstance(i, (str, int)) and not isinstance(i, bool) and 0 < len(str(i)) <= MAX_ID_LENGTH
               for i in ids):
        raise PoisonMessage(f"ids must be non-empty strings (or integers) of at most {MAX_ID_LENGTH} characters")
    model = payload.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise PoisonMessage('"model" must be "name" or "name:version"')
    name, _, version = (model or "").partition(":")
    return BatchRequest([str(i) for i in ids], name or None, version or None)


def encode_envelope(data: dict, message_id: str, attributes: dict | None = None) -> dict:
    """A push envelope as Pub/Sub would send it (for `mlapi publish` without a topic)."""
    return {"message": {"data": base64.b64encode(orjson.dumps(data)).decode(), "messageId": message_id,
                        "attributes": attributes or {}},
            "subscription": "projects/local/subscriptions/mlapi-publish"}
