"""Native JSON routes: predict, features, predict_features — for the default model, a model
(its default version) or an exact version. Handlers of a JsonBlueprint: the fast path serves them."""
from __future__ import annotations

from mlapi.http.routes.common import JsonBlueprint
from mlapi.protocols import native
from mlapi.serving.inference import ModelRef

blueprint = JsonBlueprint("native", __name__)


def _model_rules(action: str) -> tuple[str, str]:
    """An action under /models/<name>/ and /models/<name>/versions/<version>/."""
    return f"/models/<name>/{action}", f"/models/<name>/versions/<version>/{action}"


@blueprint.post_json("/predict", *_model_rules("predict"))
def predict(services, body: dict, name: str | None = None, version: str | None = None):
    request = native.decode_predict(body)
    model, result = services.inference.predict(ModelRef(name, version), request.instances, request.probabilities)
    return native.encode_prediction(model, result)


@blueprint.post_json(*_model_rules("features"))
def features(services, body: dict, name: str, version: str | None = None):
    request = native.decode_predict(body)
    model, matrix = services.inference.features(ModelRef(name, version), request.instances)
    return native.encode_features(model, matrix)


@blueprint.post_json(*_model_rules("predict_features"))
def predict_features(services, body: dict, name: str, version: str | None = None):
    model, result = services.inference.predict_features(
        ModelRef(name, version), native.decode_features(body), native.decode_probabilities(body))
    return native.encode_prediction(model, result)
