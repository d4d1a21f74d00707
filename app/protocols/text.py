"""The single-input routes (/model/<name>/text_to_features, features_to_prediction,
text_to_prediction): one input per call, answers served from the prediction cache when
`skip_cache` is false; the prediction is a {label: probability} map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlapi.protocols.request_bodies import FeatureListBody, TextBody
from mlapi.protocols.validation import decodes
from mlapi.serving.model import PredictionResult


@dataclass(frozen=True)
class SingleInputRequest:
    payload: Any          # the text, or the flat feature list
    echo_input: bool
    skip_cache: bool


@decodes(TextBody)
def decode_text(body: TextBody) -> SingleInputRequest:
    return SingleInputRequest(body.text, body.echo_input, body.skip_cache)


@decodes(FeatureListBody)
def decode_feature_list(body: FeatureListBody) -> SingleInputRequest:
    return SingleInputRequest(body.features, body.echo_input, body.skip_cache)


def encode_features(features: list, from_cache: bool, request: SingleInputRequest) -> dict:
    return _with_input({"features": features, "from_cache": from_cache}, request)


def encode_prediction(result: PredictionResult, from_cache: bool, request: SingleInputRequest) -> dict:
    if result.probabilities is not None:
        scores = dict(zip((str(c) for c in result.classes), result.probabilities[0]))
        top_index = max(range(len(result.classes)), key=result.probabilities[0].__getitem__)
        # The top label is the model's own predict(), which ties or calibrated models may
        # pick differently from the highest probability; report the model's choice.
        label = result.predictions[0]
        top = {"label": label, "value": scores.get(str(label), result.probabilities[0][top_index])}
        prediction: dict = scores
    else:
        value = result.predictions[0]
        prediction = {"value": value}
        top = {"label": None, "value": value}
    return _with_input({"prediction": prediction, "top": top, "from_cache": from_cache}, request)


def _with_input(body: dict, request: SingleInputRequest) -> dict:
    if request.echo_input:
        body["input"] = request.payload
    return body
