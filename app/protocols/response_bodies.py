"""The answers of every route, declared for the OpenAPI document (protocols/openapi.py).

The codecs build plain dicts (cheaper than Structs on the hot path); these Structs say what
those dicts hold. The schemathesis test (tests/http/test_openapi_schemathesis.py) checks every
answer a real server gives against them, so an encoder that drifts from its declaration fails.
"""
from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType

from mlapi.protocols.request_bodies import CsrMatrix


class ModelId(Struct):
    name: str
    version: str


class Prediction(Struct):
    """Predictions in request order; with probabilities for a classifier that has predict_proba."""

    model: ModelId
    predictions: Annotated[list[Any], Meta(description="One label (classifier) or value (regressor) per instance.")]
    probabilities: Annotated[list[list[float | None]] | UnsetType, Meta(
        description="Per instance, one probability per class, in `classes` order.")] = UNSET
    classes: list[Any] | UnsetType = UNSET


class Features(Struct):
    """The model's features for each instance: what its leading steps make of them."""

    model: ModelId
    features: Annotated[list[Any] | CsrMatrix, Meta(description="Dense rows, or CSR for a sparse feature step.")]


class SingleFeatures(Struct):
    features: Annotated[list[Any], Meta(description="The features of the one input.")]
    from_cache: bool
    input: Any = None


class TopLabel(Struct):
    label: Any
    value: float | None


class SinglePrediction(Struct):
    prediction: Annotated[dict[str, Any], Meta(
        description="{label: probability} for a classifier with predict_proba, else {\"value\": prediction}.")]
    top: TopLabel
    from_cache: bool
    input: Any = None


class RecentCall(Struct):
    called_at: Annotated[float, Meta(description="When the call was answered: seconds since the Unix epoch.")]
    endpoint: Annotated[str, Meta(description="The path that was called.")]
    version: Annotated[str, Meta(description="The model version that answered.")]
    input: Annotated[Any, Meta(description="The request body; its JSON text cut short (a string) when longer "
                                           "than CALL_LOG_INPUT_CHARS characters.")]


class RecentCalls(Struct):
    """The caller's own recent calls of a model, newest first."""

    model: str
    calls: list[RecentCall]


class EntityPrediction(Struct):
    """A prediction for one feature-store record; also the shape of each stored batch prediction."""

    id: str
    model: ModelId
    data: Annotated[Any, Meta(description="The record's features (or text) the model was given.")]
    prediction: Annotated[dict[str, Any], Meta(
        description='{"label", "labels", "scores"} (labels by descending score), {"label"}, or {"value"} '
                    'for a regressor; "sequence" repeats a text model\'s text.')]


class StoredPredictions(Struct):
    id: str
    predictions: Annotated[list[dict[str, Any]], Meta(description="Batch predictions stored for this id, oldest first.")]


class PushOutcome(Struct):
    """2xx acknowledges the message (also a poison one, recorded as failed); 503 asks for redelivery."""

    message_id: str
    status: Annotated[str, Meta(description='"stored" or "failed"')]
    stored: int
    scored: int
    failed: Annotated[dict[str, str], Meta(description='entity id ("" for the whole message) → reason; the first 20 '
                                                       '(all are in the prediction_failures table)')]
    failed_count: Annotated[int, Meta(description="how many ids failed (1 when the whole message did)")]


class Health(Struct):
    status: str


class Readiness(Struct):
    """Which models are loaded and whether the stores answer; 503 (same shape, with `failures`) if not."""

    status: str
    ready: list[str]
    stores: dict[str, str]
    failures: list[dict[str, Any]] | UnsetType = UNSET


class ModelDescription(Struct):
    """One served model version: what it takes and gives, and how it computes (a version that
    failed to load has `ready: false` and `error`)."""

    name: str
    version: str
    ready: bool
    task: str | UnsetType = UNSET
    input_kind: str | UnsetType = UNSET
    classes: list[Any] | None | UnsetType = UNSET
    n_features_in: int | None | UnsetType = UNSET
    feature_names_in: list[str] | None | UnsetType = UNSET
    format: Annotated[str, Meta(description="joblib or skops: how the artifact was read.")] | UnsetType = UNSET
    error: str | UnsetType = UNSET


class ModelList(Struct):
    default: str | None
    models: list[ModelDescription]
    generation: Annotated[int, Meta(description="How many reloads (POST /admin/reload) the models have seen: "
                                                "0 as loaded at start. Each model's loaded_at says when it was read.")]


class ModelVersions(Struct):
    name: str
    default_version: str
    versions: list[ModelDescription]


class ErrorDetail(Struct):
    message: Annotated[str, Meta(description="What went wrong, and what to send instead.")]
    status: int


class ErrorBody(Struct):
    """Every error answer: `error.message` and `error.status`, with details where useful
    (`missing`, `unknown`, `expected`, `instance`, `allowed_methods`, ...)."""

    error: ErrorDetail
