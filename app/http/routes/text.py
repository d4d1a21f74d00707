"""Single-input routes of one model: /model/<name>/{text_to_features, features_to_prediction,
text_to_prediction}, answered from the prediction cache when CACHE_ROUTES names `text` (the
default) and the request does not say `skip_cache`; X-Cache says how (http/cache_headers.py).
Handlers of a JsonBlueprint: the fast path serves them."""
from __future__ import annotations

from mlapi.http.cache_headers import with_cache_headers
from mlapi.http.routes.common import JsonBlueprint
from mlapi.http.routes.native import MODEL_ERRORS
from mlapi.protocols import text as text_protocol
from mlapi.protocols.response_bodies import SingleFeatures, SinglePrediction
from mlapi.serving.inference import ModelRef

blueprint = JsonBlueprint("text", __name__, url_prefix="/model/<name>")
TAG = "single input"


@blueprint.post_json("/text_to_features", decode=text_protocol.decode_text, answer=SingleFeatures,
                     errors=MODEL_ERRORS, tag=TAG)
def text_to_features(services, request: text_protocol.SingleInputRequest, name: str):
    """A text model's features for one text"""
    _, cached = services.inference.text_to_features(ModelRef(name), request.payload, request.skip_cache)
    return with_cache_headers(text_protocol.encode_features(cached.value, cached.from_cache, request), cached)


@blueprint.post_json("/features_to_prediction", decode=text_protocol.decode_feature_list,
                     answer=SinglePrediction, errors=MODEL_ERRORS, tag=TAG)
def features_to_prediction(services, request: text_protocol.SingleInputRequest, name: str):
    """Predict one instance from its features, with the model's last step alone"""
    _, cached = services.inference.features_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return with_cache_headers(text_protocol.encode_prediction(cached.value, cached.from_cache, request), cached)


@blueprint.post_json("/text_to_prediction", decode=text_protocol.decode_text, answer=SinglePrediction,
                     errors=MODEL_ERRORS, tag=TAG)
def text_to_prediction(services, request: text_protocol.SingleInputRequest, name: str):
    """Predict one text: {label: probability} and the top label"""
    _, cached = services.inference.text_to_prediction(ModelRef(name), request.payload, request.skip_cache)
    return with_cache_headers(text_protocol.encode_prediction(cached.value, cached.from_cache, request), cached)
