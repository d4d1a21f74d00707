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

import msgspec
import orjson

from mlapi.errors import BadRequest
from mlapi.naming import split_model_ref
from mlapi.protocols.request_bodies import BatchData, PushEnvelope
from mlapi.protocols.validation import decodes, given, read

NOT_AN_ENVELOPE = "not a Pub/Sub push envelope: "


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


@decodes(PushEnvelope, prefix=NOT_AN_ENVELOPE)
def decode_push(envelope: PushEnvelope) -> BatchMessage:
    message = _message(envelope)
    try:
        request = decode_batch_request(message.data)
    except PoisonMessage as exc:
        return BatchMessage(message.message_id, message.data, None, str(exc))
    return BatchMessage(message.message_id, message.data, request)


@decodes(PushEnvelope, prefix=NOT_AN_ENVELOPE)
def decode_envelope(envelope: PushEnvelope) -> PushMessage:
    return _message(envelope)


def _message(envelope: PushEnvelope) -> PushMessage:
    message = envelope.message
    rule = type(message).alternatives
    present = given(message, rule.keys)
    if not present:
        raise BadRequest(NOT_AN_ENVELOPE + rule.message)
    return PushMessage(getattr(message, present[0]), message.data)


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
    try:
        batch = read(payload, BatchData, "message data: ")
    except BadRequest as exc:
        raise PoisonMessage(exc.message) from None
    ids = batch.ids if batch.ids is not msgspec.UNSET else [batch.id]
    name, version = split_model_ref(batch.model)
    return BatchRequest([str(i) for i in ids], name, version)


def encode_envelope(data: dict, message_id: str, attributes: dict | None = None) -> dict:
    """A push envelope as Pub/Sub would send it (for `mlapi publish` without a topic)."""
    return {"message": {"data": base64.b64encode(orjson.dumps(data)).decode(), "messageId": message_id,
                        "attributes": attributes or {}},
            "subscription": "projects/local/subscriptions/mlapi-publish"}
