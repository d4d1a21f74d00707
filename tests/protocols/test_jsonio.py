"""JSON bodies in and out, shared by every JSON codec: NaN and infinities as Python's json
writes them are floats; anything else malformed is a 400 that says where and what to send."""
import json
import math

import numpy as np
import orjson
import pytest

from mlapi.errors import BadRequest
from mlapi.protocols.jsonio import dumps, parse_json


def test_parse_json_object():
    assert parse_json(b'{"instances": [[1.5]]}') == {"instances": [[1.5]]}


def test_nan_and_infinities_as_pythons_json_writes_them_are_floats():
    # What json.dumps writes for a DataFrame row with a missing value (requests' json= refuses it).
    raw = json.dumps({"instances": [[1.5, float("nan"), float("inf"), -float("inf")]]}).encode()
    assert b"NaN" in raw and b"-Infinity" in raw
    row = parse_json(raw)["instances"][0]
    assert row[0] == 1.5 and math.isnan(row[1]) and row[2] == math.inf and row[3] == -math.inf


def test_the_lenient_reading_keeps_orjsons_other_rules():
    # Beyond 64 bits an integer is a float, as orjson reads it; a number too large for a
    # double is an infinity, like the Infinity literal.
    body = parse_json(b'{"big": 123456789012345678901234567890, "huge": 1e400, "x": NaN}')
    assert body["big"] == orjson.loads(b"123456789012345678901234567890") and isinstance(body["big"], float)
    assert body["huge"] == math.inf


def test_requests_json_refuses_nan_so_the_lenient_reading_is_for_json_dumps_bodies():
    import requests

    with pytest.raises(requests.exceptions.InvalidJSONError):
        requests.Request("POST", "http://localhost:8080/predict", json={"instances": [[math.nan]]}).prepare()
    prepared = requests.Request("POST", "http://localhost:8080/predict",
                                data=json.dumps({"instances": [[math.nan]]})).prepare()
    assert math.isnan(parse_json(prepared.body.encode())["instances"][0][0])


def test_an_integer_of_thousands_of_digits_is_an_infinity_not_a_500():
    # int() refuses more than 4300 digits; such an integer is read as a float, as 1e400 is.
    for digits in ("9" * 5000, "-" + "9" * 5000):
        value = parse_json(b'{"x": NaN, "n": ' + digits.encode() + b"}")["n"]
        assert isinstance(value, float) and math.isinf(value) and (value < 0) == digits.startswith("-")
    assert parse_json(b'{"x": NaN, "n": -9223372036854775808, "m": 18446744073709551615}') == {
        "x": pytest.approx(math.nan, nan_ok=True), "n": -(2 ** 63), "m": 2 ** 64 - 1}



@pytest.mark.parametrize("raw,message", [
    (b"", 'the request body is empty; send one JSON object, e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}'),
    (b"[1, 2]", "the body must be a JSON object, not an array; send one JSON object"),
    (b'"text"', "the body must be a JSON object, not a string; send one JSON object"),
    (b"[NaN]", "the body must be a JSON object, not an array; send one JSON object"),
    (b"{bad", "malformed JSON at line 1, column 2: expecting property name enclosed in double quotes near 'bad'"),
    (b'{"instances": [1,', "malformed JSON at line 1, column 18: expecting value (the body ends there)"),
    (b'{"instances":\n  [[1, 2]]\n  "parameters": {}}', "malformed JSON at line 3, column 3: expecting ',' delimiter"),
    (b'{"a": "\xff"}', "malformed JSON: the body is not UTF-8 (byte 7); send UTF-8 JSON"),
    (b'{"a": "\\ud800", "b": NaN}', "malformed JSON: a \\u escape is a lone surrogate"),
    (b"[" * 3000 + b"]" * 3000, "malformed JSON: nested too deeply"),
])
def test_anything_else_is_a_400_saying_where_and_what_to_send(raw, message):
    with pytest.raises(BadRequest) as raised:
        parse_json(raw)
    assert raised.value.status_code == 400 and raised.value.message.startswith(message), raised.value.message


@pytest.mark.parametrize("word", ["nan", "NAN", "-nan", "inf", "-inf", "infinity", "None", "NA"])
def test_nan_like_words_json_does_not_know_get_the_spelling_that_works(word):
    with pytest.raises(BadRequest) as raised:
        parse_json(b'{"instances": [[1.0, ' + word.encode() + b"]]}")
    message = raised.value.message
    assert message.startswith("malformed JSON at line 1, column 22: expecting value near")
    assert f"{word!r} is not a JSON value: write a missing value as null or NaN, infinities as Infinity" in message


def test_a_nan_like_word_inside_a_string_is_just_text():
    assert parse_json(b'{"text": "nan inf None", "x": NaN}')["text"] == "nan inf None"


def test_dumps_numpy_values_and_non_string_keys():
    assert orjson.loads(dumps({"p": np.array([0.25, 0.75]), "n": np.int64(3), 1: "one"})) == {
        "p": [0.25, 0.75], "n": 3, "1": "one"}


def test_dumps_writes_nan_as_null():
    # Answers stay strict JSON whatever a model returns: any client can read them.
    assert dumps({"p": [float("nan"), 1.0]}) == b'{"p":[null,1.0]}'


def test_a_missing_value_reaches_a_model_that_handles_nan(make_app, tmp_path):
    # End to end: the body Python's json.dumps writes for a row with a missing value, through
    # the fast path, to a model that handles NaN; the answer is the model's own prediction.
    import joblib
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.array([[0.0, 1.0], [1.0, math.nan], [2.0, 0.5], [3.0, math.nan]] * 10)
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, [0, 1, 0, 1] * 10)
    joblib.dump(model, tmp_path / "hgb.joblib")
    client = make_app(MODELS=f"hgb={tmp_path / 'hgb.joblib'}").test_client()
    rows = [[1.0, math.nan], [2.5, math.inf], [0.5, -math.inf]]
    answer = client.post("/predict", data=json.dumps({"instances": rows}), content_type="application/json")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["predictions"] == model.predict(np.array(rows)).tolist()
