"""The Pub/Sub push codec as plain functions: a malformed envelope is a 400; data that can
never be processed decodes to a BatchMessage carrying the reason (poison), not an error."""
import base64

import orjson
import pytest

from mlapi.errors import BadRequest
from mlapi.naming import split_model_ref
from mlapi.protocols import pubsub
from mlapi.protocols.pubsub import BatchMessage, BatchRequest


def envelope(data=None, raw=None, message_id="m-1", **message):
    encoded = raw if raw is not None else base64.b64encode(orjson.dumps(data)).decode()
    return {"message": {"data": encoded, "messageId": message_id, **message}, "subscription": "s"}


def test_a_request_decodes_to_a_plain_batch_message():
    body = envelope({"ids": ["1", 2], "model": "tickets:3"}, attributes={"k": "v"}, publishTime="t")
    message = pubsub.decode_push(body)
    assert message == BatchMessage("m-1", body["message"]["data"], BatchRequest(["1", "2"], "tickets", "3"))


@pytest.mark.parametrize("data,expected", [
    ({"id": "1"}, BatchRequest(["1"], None, None)),
    ({"id": 7, "model": "tickets"}, BatchRequest(["7"], "tickets", None)),
    ({"ids": ["1", "1"], "model": "tickets:2"}, BatchRequest(["1", "1"], "tickets", "2")),
])
def test_batch_requests(data, expected):
    assert pubsub.decode_batch_request(base64.b64encode(orjson.dumps(data)).decode()) == expected


@pytest.mark.parametrize("data,raw,reason", [
    (None, "%%% not base64 %%%", "message data is not valid base64"),
    (None, base64.b64encode(b"{not json").decode(), "message data is not JSON"),
    (["1"], None, 'message data must be a JSON object like {"id": "1"} or {"ids": [...]}'),
    ({"user": "1"}, None, 'message data needs "id" or "ids"'),
    ({"ids": []}, None, '"ids" must be a non-empty list'),
    ({"ids": "1"}, None, '"ids" must be a non-empty list'),
    ({"ids": ["1"] * 10_001}, None, "a message may carry at most 10000 ids, this one has 10001"),
    ({"ids": ["1", True]}, None, "ids must be non-empty strings (or integers) of at most 255 characters"),
    ({"ids": [""]}, None, "ids must be non-empty strings (or integers) of at most 255 characters"),
    ({"id": "x" * 256}, None, "ids must be non-empty strings (or integers) of at most 255 characters"),
    ({"id": "1", "model": ""}, None, '"model" must be "name" or "name:version"'),
    ({"id": "1", "model": 3}, None, '"model" must be "name" or "name:version"'),
])
def test_poison_data_is_a_message_with_its_reason(data, raw, reason):
    body = envelope(data, raw=raw, message_id="poison-1")
    message = pubsub.decode_push(body)
    assert message == BatchMessage("poison-1", body["message"]["data"], None, reason)


@pytest.mark.parametrize("body,what", [
    ({"nomessage": 1}, '"message" must be an object'),
    ({"message": "x"}, '"message" must be an object'),
    ({"message": {"data": "e30="}}, "message.messageId is missing or too long"),
    ({"message": {"data": "e30=", "messageId": ""}}, "message.messageId is missing or too long"),
    ({"message": {"data": "e30=", "messageId": "m" * 129}}, "message.messageId is missing or too long"),
    ({"message": {"messageId": "1", "data": 5}}, "message.data must be a base64 string"),
    ({"message": {"messageId": "1", "data": "e30=", "attributes": [1]}}, "message.attributes must be an object"),
])
def test_malformed_envelopes_are_400(body, what):
    with pytest.raises(BadRequest) as raised:
        pubsub.decode_push(body)
    assert raised.value.status_code == 400
    assert raised.value.message == f"not a Pub/Sub push envelope: {what}"


def test_message_id_may_be_snake_case_and_data_may_be_absent():
    message = pubsub.decode_envelope({"message": {"message_id": "m-9"}})
    assert (message.message_id, message.data) == ("m-9", "")
    assert pubsub.decode_push({"message": {"message_id": "m-9"}}).poison == "message data is not JSON"


def test_encode_envelope_round_trips():
    body = pubsub.encode_envelope({"ids": ["4"], "model": "tickets"}, "local-1")
    assert pubsub.decode_push(body).request == BatchRequest(["4"], "tickets", None)


@pytest.mark.parametrize("text,expected", [
    (None, (None, None)), ("", (None, None)), ("tickets", ("tickets", None)), ("tickets:", ("tickets", None)),
    ("tickets:2", ("tickets", "2")), (":2", (None, "2")), ("a:b:c", ("a", "b:c")),
])
def test_name_version_split(text, expected):
    """The one `name[:version]` rule (MODELS, this "model" field, `batch-predict --model`)."""
    assert split_model_ref(text) == expected
