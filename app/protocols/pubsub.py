"""Pub/Sub push: the envelope, and the batch request inside its base64 data.

Envelope: {"message": {"data": <base64>, "messageId", "attributes", "publishTime"}, "subscription"}
Data:     JSON {"id": "1"} or {"ids": ["1", "2"]}, optional "model": "name" or "name:version".

`decode_push` turns a delivery into a BatchMessage, the plain value the batch core takes. A
malformed envelope is the pusher's error (400). Data that can never be processed is not an
error here: the BatchMessage carries the reason (`poison`), and the core records it and
acknowledges, so it is not redelivered forever.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from mlapi.errors import BadRequest
from mlapi.naming import split_model_ref

MAX_IDS = 10_000
MAX_ID_LENGTH = 255        # the predictions table's entity_id column
MAX_MESSAGE_ID_LENGTH = 128


class PoisonMessage(Exception):
    """The message's data can never be processed; retrying cannot help."""


@dataclass(frozen=True)
class PushMessage:
    message_id: str
    data: str                  # base64, as delivered


@dataclass(frozen=True)
class BatchRequest:
    ids: list[str]
    model_name: str | None     # None: the default model
    model_version: str | None  # None: its default version


@dataclass(frozen=True)
class BatchMessage:
    """A push delivery, decoded: the request, or why its data can never be processed."""

    message_id: str
    payload: str                       # the data as delivered, stored with failures to diagnose them
    request: BatchRequest | None       # None for a poison message...
    poison: str | None = None          # ...and this says why


def decode_push(body: dict) -> BatchMessage:
    message = decode_envelope(body)
    try:
        request = decode_batch_request(message.data)
    except PoisonMessage as exc:
        return BatchMessage(message.message_id, message.data, None, str(exc))
    return BatchMessage(message.message_id, message.data, request)


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
    if not isinstance(message.get("attributes") or {}, dict):
        raise BadRequest("not a Pub/Sub push envelope: message.attributes must be an object")
    return PushMessage(message_id, data)


def decode_batch_request(data: str) -> BatchRequest:
    """The request in a message's base64 data; PoisonMessage says why it can never be one."""
    try:
        raw = base64.b64decode(data, validate=True)
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
    name, version = split_model_ref(model)
    return BatchRequest([str(i) for i in ids], name, version)


def encode_envelope(data: dict, message_id: str, attributes: dict | None = None) -> dict:
    """A push envelope as Pub/Sub would send it (for `mlapi publish` without a topic)."""
    return {"message": {"data": base64.b64encode(orjson.dumps(data)).decode(), "messageId": message_id,
                        "attributes": attributes or {}},
            "subscription": "projects/local/subscriptions/mlapi-publish"}
