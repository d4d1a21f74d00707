"""The single-input routes' codec as plain functions."""
import pytest

from mlapi.errors import BadRequest
from mlapi.protocols import text
from mlapi.serving.model import PredictionResult


def test_decode_text_and_features_with_flags():
    request = text.decode_text({"text": "refund please", "echo_input": True})
    assert (request.payload, request.echo_input, request.skip_cache) == ("refund please", True, False)
    assert text.decode_feature_list({"features": [1.0, 2.0], "skip_cache": True}).skip_cache is True


@pytest.mark.parametrize("decode,body,message", [
    (text.decode_text, {"txt": "x"}, 'the body needs "text", e.g. {"text":"I was charged twice for my plan"}'),
    (text.decode_text, {"text": 5}, '"text" must be a string such as "I was charged twice for my plan", got 5'),
    (text.decode_feature_list, {"features": "1,2"}, '"features" must be a list such as [5.1,3.5,1.4,0.2], got "1,2"'),
    (text.decode_text, {"text": "x", "echo_input": "yes"}, '"echo_input" must be true or false, got "yes"'),
    (text.decode_text, {"text": "x", "skip_cache": 1}, '"skip_cache" must be true or false, got 1'),
    (text.decode_text, {"text": "x", "skip_cache": None}, '"skip_cache" must be true or false, got null'),
])
def test_malformed_bodies_are_400(decode, body, message):
    with pytest.raises(BadRequest) as raised:
        decode(body)
    assert raised.value.status_code == 400 and raised.value.message == message


def test_encode_prediction_reports_the_models_own_label():
    # The model's predict() picked "b" although "a" scores higher (a tie-break or a
    # calibrated model): the top label is the model's choice, with its own probability.
    result = PredictionResult(["b"], [[0.6, 0.4]], ["a", "b"])
    body = text.encode_prediction(result, False, text.decode_text({"text": "x"}))
    assert body == {"prediction": {"a": 0.6, "b": 0.4}, "top": {"label": "b", "value": 0.4}, "from_cache": False}


def test_encode_prediction_regressor_and_echo():
    request = text.decode_feature_list({"features": [1.0], "echo_input": True})
    body = text.encode_prediction(PredictionResult([3.5]), True, request)
    assert body == {"prediction": {"value": 3.5}, "top": {"label": None, "value": 3.5}, "from_cache": True,
                    "input": [1.0]}


def test_encode_features():
    request = text.decode_text({"text": "x"})
    assert text.encode_features([0.0, 1.0], True, request) == {"features": [0.0, 1.0], "from_cache": True}
