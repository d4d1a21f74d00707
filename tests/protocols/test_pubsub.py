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


IDS = '"ids" must be a non-empty list of strings or integers (at most 10000 items) such as ["1","2"]'


@pytest.mark.parametrize("data,raw,reason", [
    (None, "%%% not base64 %%%", "message data is not valid base64"),
    (None, base64.b64encode(b"{not json").decode(), "message data is not JSON"),
    (["1"], None, 'message data must be a JSON object like {"id": "1"} or {"ids": [...]}'),
    ({"user": "1"}, None, 'message data needs "id" or "ids"'),
    ({"ids": []}, None, f"message data: {IDS}, got []"),
    ({"ids": "1"}, None, f'message data: {IDS}, got "1"'),
    ({"ids": ["1"] * 10_001}, None, f"message data: {IDS}, got a list of 10001 items"),
    ({"ids": ["1", True]}, None, f"message data: {IDS}, got true at ids[1]"),
    ({"ids": [""]}, None, f'message data: {IDS}, got "" at ids[0]'),
    ({"id": "x" * 256}, None, 'message data: "id" must be a non-empty string (at most 255 characters) or an integer, got '
                              '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'),
    ({"id": "1", "model": ""}, None, 'message data: "model" must be a non-empty string such as "tickets" or '
                                     '"tickets:2" or null, got ""'),
    ({"id": "1", "model": 3}, None, 'message data: "model" must be a non-empty string such as "tickets" or '
                                    '"tickets:2" or null, got 3'),
])
def test_poison_data_is_a_message_with_its_reason(data, raw, reason):
    body = envelope(data, raw=raw, message_id="poison-1")
    message = pubsub.decode_push(body)
    assert message == BatchMessage("poison-1", body["message"]["data"], None, reason)


@pytest.mark.parametrize("body,what", [
    ({"nomessage": 1}, 'the body needs "message"'),
    ({"message": "x"}, '"message" must be an object, got "x"'),
    ({"message": {"data": "e30="}}, "message.messageId is missing (a string of at most 128 characters)"),
    ({"message": {"data": "e30=", "messageId": ""}},
     '"message.messageId" must be a non-empty string (at most 128 characters), got ""'),
    ({"message": {"data": "e30=", "messageId": "m" * 129}},
     '"message.messageId" must be a non-empty string (at most 128 characters), got "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm...'),
    ({"message": {"messageId": "1", "data": 5}}, '"message.data" must be a string, got 5'),
    ({"message": {"messageId": "1", "data": "e30=", "attributes": [1]}},
     '"message.attributes" must be an object or null, got [1]'),
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
