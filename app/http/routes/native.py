"""Native JSON routes: predict, features, predict_features — for the default model, a model
(its default version) or an exact version. Handlers of a JsonBlueprint: the fast path serves them."""
from __future__ import annotations

from mlapi.http.cache_headers import with_cache_headers
from mlapi.http.routes.common import JsonBlueprint
from mlapi.protocols import native
from mlapi.protocols.response_bodies import Features, Prediction
from mlapi.serving.inference import ModelRef

blueprint = JsonBlueprint("native", __name__)

# A model's routes: unknown model or version (404), rows that do not fit it (422), not loaded (503).
MODEL_ERRORS = (404, 422, 503)


def _model_rules(action: str) -> tuple[str, str]:
    """An action under /models/<name>/ and /models/<name>/versions/<version>/."""
    return f"/models/<name>/{action}", f"/models/<name>/versions/<version>/{action}"


@blueprint.post_json("/predict", *_model_rules("predict"), decode=native.decode_predict, answer=Prediction,
                     errors=MODEL_ERRORS, per_model=True, tag="predict", call_logged=True)
def predict(services, request: native.PredictRequest, name: str | None = None, version: str | None = None):
    """Predict: labels or values, with class probabilities for a classifier

    `/predict` serves the default model (the first in MODELS). Rows may be lists in training order,
    objects keyed by feature name, or texts for a text model; a missing value is null or NaN."""
    model, cached = services.inference.predict(ModelRef(name, version), request.instances, request.probabilities)
    return with_cache_headers(native.encode_prediction(model, cached.value), cached)


@blueprint.post_json(*_model_rules("features"), decode=native.decode_predict, answer=Features,
                     errors=MODEL_ERRORS, tag="features")
def features(services, request: native.PredictRequest, name: str, version: str | None = None):
    """The model's features: what its leading Pipeline steps make of the instances"""
    model, matrix = services.inference.features(ModelRef(name, version), request.instances)
    return native.encode_features(model, matrix)


@blueprint.post_json(*_model_rules("predict_features"), decode=native.decode_feature_matrix, answer=Prediction,
                     errors=MODEL_ERRORS, tag="features", call_logged=True)
def predict_features(services, request: native.PredictRequest, name: str, version: str | None = None):
    """Predict from features (what /features returns) with the model's last step alone"""
    model, cached = services.inference.predict_features(ModelRef(name, version), request.instances,
                                                        request.probabilities)
    return with_cache_headers(native.encode_prediction(model, cached.value), cached)
