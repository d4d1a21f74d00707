"""JSON bodies in and out, shared by every JSON codec."""
import numpy as np
import orjson
import pytest

from mlapi.errors import BadRequest
from mlapi.protocols.jsonio import dumps, parse_json


def test_parse_json_object():
    assert parse_json(b'{"instances": [[1.5]]}') == {"instances": [[1.5]]}


@pytest.mark.parametrize("raw,message", [
    (b"", "the request body is empty; send a JSON object"),
    (b"[1, 2]", "the body must be a JSON object"),
    (b'"text"', "the body must be a JSON object"),
    (b"{bad", "malformed JSON: "),
])
def test_parse_json_refuses_anything_else_with_400(raw, message):
    with pytest.raises(BadRequest) as raised:
        parse_json(raw)
    assert raised.value.status_code == 400 and raised.value.message.startswith(message)


def test_dumps_numpy_values_and_non_string_keys():
    assert orjson.loads(dumps({"p": np.array([0.25, 0.75]), "n": np.int64(3), 1: "one"})) == {
        "p": [0.25, 0.75], "n": 3, "1": "one"}
