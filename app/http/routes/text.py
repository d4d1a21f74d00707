"""Seed 002's client routes: /model/<name>/{text_to_features,features_to_prediction,text_to_prediction}."""
from __future__ import annotations

from flask import Blueprint

from mlapi.serving.inference import ModelRef
from mlapi.protocols import text as text_protocol
from mlapi.http.routes.common import inference, json_body, json_response

blueprint = Blueprint("text", __name__, url_prefix="/model/<name>")


@blueprint.post("/text_to_features")
def text_to_features(name: str):
    request = text_protocol.decode(json_body(), "text")
    _, cached = inference().text_to_features(ModelRef(name), request.payload, request.skip_cache)
    return json_response(text_protocol.encode_features(cached.value, cached.from_cache, request))


@blueprint.post("/features_to_prediction")
def features_to_prediction(name: str):
    request = text_protocol.decode(json_body(), "features")
    _, cached = inference().features_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return json_response(text_protocol.encode_prediction(cached.value, cached.from_cache, request))


@blueprint.post("/text_to_prediction")
def text_to_prediction(name: str):
    request = text_protocol.decode(json_body(), "text")
    _, cached = inference().text_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return json_response(text_protocol.encode_prediction(cached.value, cached.from_cache, request))
