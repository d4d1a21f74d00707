"""Seed 002's client routes: /model/<name>/{text_to_features,features_to_prediction,text_to_prediction}."""
from __future__ import annotations

from flask import Blueprint

from app.inference import ModelRef
from app.protocols import speedrun
from app.routes.common import inference, json_body, json_response

blueprint = Blueprint("speedrun", __name__, url_prefix="/model/<name>")


@blueprint.post("/text_to_features")
def text_to_features(name: str):
    request = speedrun.decode(json_body(), "text")
    _, cached = inference().text_to_features(ModelRef(name), request.payload, request.skip_cache)
    return json_response(speedrun.encode_features(cached.value, cached.from_cache, request))


@blueprint.post("/features_to_prediction")
def features_to_prediction(name: str):
    request = speedrun.decode(json_body(), "features")
    _, cached = inference().features_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return json_response(speedrun.encode_prediction(cached.value, cached.from_cache, request))


@blueprint.post("/text_to_prediction")
def text_to_prediction(name: str):
    request = speedrun.decode(json_body(), "text")
    _, cached = inference().text_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return json_response(speedrun.encode_prediction(cached.value, cached.from_cache, request))
