"""Single-input routes of one model: /model/<name>/{text_to_features, features_to_prediction,
text_to_prediction}, answered from the prediction cache when they can be (`skip_cache` not).
Handlers of a JsonBlueprint: the fast path serves them."""
from __future__ import annotations

from mlapi.http.routes.common import JsonBlueprint
from mlapi.protocols import text as text_protocol
from mlapi.serving.inference import ModelRef

blueprint = JsonBlueprint("text", __name__, url_prefix="/model/<name>")


@blueprint.post_json("/text_to_features")
def text_to_features(services, body: dict, name: str):
    request = text_protocol.decode(body, "text")
    _, cached = services.inference.text_to_features(ModelRef(name), request.payload, request.skip_cache)
    return text_protocol.encode_features(cached.value, cached.from_cache, request)


@blueprint.post_json("/features_to_prediction")
def features_to_prediction(services, body: dict, name: str):
    request = text_protocol.decode(body, "features")
    _, cached = services.inference.features_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return text_protocol.encode_prediction(cached.value, cached.from_cache, request)


@blueprint.post_json("/text_to_prediction")
def text_to_prediction(services, body: dict, name: str):
    request = text_protocol.decode(body, "text")
    _, cached = services.inference.text_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return text_protocol.encode_prediction(cached.value, cached.from_cache, request)
