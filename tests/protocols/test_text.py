"""The single-input routes' codec as plain functions."""
import pytest

from mlapi.errors import BadRequest
from mlapi.protocols import text
from mlapi.serving.model import PredictionResult


def test_decode_text_and_features_with_flags():
    request = text.decode({"text": "refund please", "echo_input": True}, "text")
    assert (request.payload, request.echo_input, request.skip_cache) == ("refund please", True, False)
    assert text.decode({"features": [1.0, 2.0], "skip_cache": True}, "features").skip_cache is True


@pytest.mark.parametrize("body,field,message", [
    ({"txt": "x"}, "text", 'the body needs "text"'),
    ({"text": 5}, "text", '"text" must be a string'),
    ({"features": "1,2"}, "features", '"features" must be a list of numbers'),
    ({"text": "x", "echo_input": "yes"}, "text", '"echo_input" must be true or false'),
    ({"text": "x", "skip_cache": 1}, "text", '"skip_cache" must be true or false'),
])
def test_malformed_bodies_are_400(body, field, message):
    with pytest.raises(BadRequest) as raised:
        text.decode(body, field)
    assert raised.value.status_code == 400 and raised.value.message == message


def test_encode_prediction_reports_the_models_own_label():
    # The model's predict() picked "b" although "a" scores higher (a tie-break or a
    # calibrated model): the top label is the model's choice, with its own probability.
    result = PredictionResult(["b"], [[0.6, 0.4]], ["a", "b"])
    body = text.encode_prediction(result, False, text.decode({"text": "x"}, "text"))
    assert body == {"prediction": {"a": 0.6, "b": 0.4}, "top": {"label": "b", "value": 0.4}, "from_cache": False}


def test_encode_prediction_regressor_and_echo():
    request = text.decode({"features": [1.0], "echo_input": True}, "features")
    body = text.encode_prediction(PredictionResult([3.5]), True, request)
    assert body == {"prediction": {"value": 3.5}, "top": {"label": None, "value": 3.5}, "from_cache": True,
                    "input": [1.0]}


def test_encode_features():
    request = text.decode({"text": "x"}, "text")
    assert text.encode_features([0.0, 1.0], True, request) == {"features": [0.0, 1.0], "from_cache": True}
