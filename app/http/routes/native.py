"""Native JSON routes: predict, features, predict_features — for the default model, a model
(its default version) or an exact version."""
from __future__ import annotations

from flask import Blueprint

from mlapi.serving.inference import ModelRef
from mlapi.protocols import native
from mlapi.http.routes.common import inference, json_body, json_response

blueprint = Blueprint("native", __name__)


def _model_routes(rule: str, endpoint: str):
    """Register a view under /, /models/<name>/ and /models/<name>/versions/<version>/."""
    def decorator(view):
        blueprint.add_url_rule(f"/models/<name>/{rule}", endpoint, view, methods=["POST"])
        blueprint.add_url_rule(f"/models/<name>/versions/<version>/{rule}", endpoint, view, methods=["POST"])
        return view
    return decorator


@blueprint.post("/predict")
@_model_routes("predict", "predict")
def predict(name: str | None = None, version: str | None = None):
    request = native.decode_predict(json_body())
    model, result = inference().predict(ModelRef(name, version), request.instances, request.probabilities)
    return json_response(native.encode_prediction(model, result))


@_model_routes("features", "features")
def features(name: str, version: str | None = None):
    request = native.decode_predict(json_body())
    model, matrix = inference().features(ModelRef(name, version), request.instances)
    return json_response(native.encode_features(model, matrix))


@_model_routes("predict_features", "predict_features")
def predict_features(name: str, version: str | None = None):
    body = json_body()
    model, result = inference().predict_features(
        ModelRef(name, version), native.decode_features(body), native.decode_probabilities(body))
    return json_response(native.encode_prediction(model, result))
