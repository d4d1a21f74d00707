"""The request body of every JSON route, declared once.

Each Struct is both the check (protocols/validation.py: msgspec validates a parsed body
against it) and the request schema of the OpenAPI document (protocols/openapi.py); a field's
description and examples are what the document shows and what a 400 quotes. Rows and feature
values are any JSON here: what fits depends on the model, so serving/instances.py checks them
(422, naming instance and feature) and the document shows each served model's own row schema
(protocols/model_schema.py).
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, Struct, UnsetType

from mlapi.protocols.validation import Alternatives

# ---- native predict, features and predict_features -----------------------------------------
INSTANCE_KEYS = ("instances", "inputs", "dataframe_split", "dataframe_records")
# One row of the demo iris model (`mlapi demo`, served by `make run`): the examples a newcomer
# can send as they are.
EXAMPLE_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
EXAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]

Rows = Annotated[list[Any] | UnsetType, Meta(
    description="One instance per item: a list of feature values in training order, an object keyed by "
                "feature name, or a string for a text model. A missing value is null or NaN.",
    examples=[[EXAMPLE_ROW]])]


class Parameters(Struct):
    """Options of a predict call."""

    probabilities: Annotated[bool | None, Meta(
        description="Also return each class's probability (classifiers with predict_proba). "
                    "Default: true when the model has predict_proba.")] = None


# The example a 400 about `parameters` quotes, and the document shows.
OptionalParameters = Annotated[Parameters | None, Meta(examples=[{"probabilities": False}])]


class DataframeSplit(Struct):
    """pandas' `DataFrame.to_dict(orient="split")` (MLflow's dataframe_split); `index` is ignored."""

    data: Annotated[list[Any], Meta(description="The rows, each a list of values in `columns` order.",
                                    examples=[[EXAMPLE_ROW]])]
    columns: Annotated[list[str] | None, Meta(
        description="The feature names, in the order of each row's values; omitted: training order.",
        examples=[EXAMPLE_COLUMNS])] = None
    index: Annotated[Any, Meta(description="Row labels; ignored.")] = None


class PredictBody(Struct):
    """Instances to predict (or to turn into features): exactly one of `instances`, `inputs`,
    `dataframe_split`, `dataframe_records`."""

    alternatives: ClassVar[Alternatives] = Alternatives(
        INSTANCE_KEYS, True, f"the body needs exactly one of {list(INSTANCE_KEYS)}, e.g. "
                             f'{{"instances": [{EXAMPLE_ROW}]}}; found {{found}}')
    example: ClassVar[dict] = {"instances": [EXAMPLE_ROW]}

    instances: Rows = UNSET
    inputs: Annotated[list[Any] | UnsetType, Meta(description="Another name for `instances`.")] = UNSET
    dataframe_split: Annotated[DataframeSplit | UnsetType, Meta(
        examples=[{"columns": EXAMPLE_COLUMNS, "data": [EXAMPLE_ROW]}])] = UNSET
    dataframe_records: Annotated[list[Any] | UnsetType, Meta(
        description='pandas\' `DataFrame.to_dict(orient="records")`: one object per row, keyed by feature name.',
        examples=[[dict(zip(EXAMPLE_COLUMNS, EXAMPLE_ROW))]])] = UNSET
    parameters: OptionalParameters = None


class CsrMatrix(Struct):
    """A sparse feature matrix in CSR form (scipy.sparse.csr_matrix's own arrays), as
    /features returns it for a sparse feature step (TF-IDF)."""

    format: Annotated[str, Meta(description='Always "csr".', examples=["csr"])]
    shape: Annotated[list[int], Meta(description="[rows, columns]", examples=[[1, 3]])]
    data: list[float]
    indices: list[int]
    indptr: list[int]


FEATURE_KEYS = ("features", "instances", "inputs")
FeatureMatrix = Annotated[Any, Meta(
    description="Rows of the model's features as /features returns them: dense (a list of lists of numbers, "
                "or one flat list for one row) or the CSR object.",
    extra_json_schema={"anyOf": [{"type": "array"}, {"$ref": "#/components/schemas/CsrMatrix"}]})]


class FeatureMatrixBody(Struct):
    """Features (what /features returns) to predict with the model's last step alone:
    `features` (or `instances` / `inputs`)."""

    alternatives: ClassVar[Alternatives] = Alternatives(
        FEATURE_KEYS, False, 'the body needs "features": dense rows or the CSR object /features returns')
    example: ClassVar[dict] = {"features": [EXAMPLE_ROW]}

    features: FeatureMatrix = UNSET
    instances: Annotated[Any, Meta(description="Another name for `features`.")] = UNSET
    inputs: Annotated[Any, Meta(description="Another name for `features`.")] = UNSET
    parameters: OptionalParameters = None


# ---- the single-input routes (/model/<name>/...) ----------------------------------------------
class SingleInputOptions(Struct, kw_only=True):
    echo_input: Annotated[bool, Meta(description="Repeat the input in the answer.")] = False
    skip_cache: Annotated[bool, Meta(description="Compute again rather than answer from the prediction cache.")] = False


class TextBody(SingleInputOptions, kw_only=True):
    """One text, for a text model."""

    example: ClassVar[dict] = {"text": "I was charged twice for my plan"}

    text: Annotated[str, Meta(description="The text.", examples=["I was charged twice for my plan"])]


class FeatureListBody(SingleInputOptions, kw_only=True):
    """One instance's features (what text_to_features returns), for the model's last step."""

    example: ClassVar[dict] = {"features": EXAMPLE_ROW}

    features: Annotated[list[Any], Meta(description="A flat list of numbers.", examples=[EXAMPLE_ROW])]


# ---- Pub/Sub push ---------------------------------------------------------------------------
MAX_IDS = 10_000
MAX_ID_LENGTH = 255        # the predictions table's entity_id column
MAX_MESSAGE_ID_LENGTH = 128

EntityId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)] | int


class BatchData(Struct):
    """The batch request inside a push message's base64 `data`: ids of feature-store records to
    score, and optionally the model."""

    alternatives: ClassVar[Alternatives] = Alternatives(("ids", "id"), False, 'message data needs "id" or "ids"')

    ids: Annotated[list[EntityId], Meta(min_length=1, max_length=MAX_IDS, examples=[["1", "2"]])] | UnsetType = UNSET
    id: Annotated[EntityId, Meta(description="One id (instead of `ids`).")] | UnsetType = UNSET
    model: Annotated[str, Meta(min_length=1, description="The model: a name, or name:version; default: the default model.",
                               examples=["tickets", "tickets:2"])] | None = None


class PushMessage(Struct):
    """A Pub/Sub message as push delivers it."""

    alternatives: ClassVar[Alternatives] = Alternatives(
        ("messageId", "message_id"), False, f"message.messageId is missing (a string of at most "
                                            f"{MAX_MESSAGE_ID_LENGTH} characters)")

    data: Annotated[str, Meta(
        description="Base64 of the JSON batch request (BatchData).",
        extra_json_schema={"contentEncoding": "base64", "contentMediaType": "application/json",
                           "contentSchema": {"$ref": "#/components/schemas/BatchData"}})] = ""
    messageId: Annotated[str, Meta(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)] | UnsetType = UNSET
    message_id: Annotated[str, Meta(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH,
                                    description="Another name for messageId.")] | UnsetType = UNSET
    attributes: dict[str, Any] | None = None
    publishTime: Any = None


class PushEnvelope(Struct):
    """A Pub/Sub push delivery."""

    example: ClassVar[dict] = {"message": {"data": "eyJpZHMiOiBbIjEiLCAiMiJdfQ==", "messageId": "1"},
                               "subscription": "projects/p/subscriptions/s"}

    message: PushMessage
    subscription: Any = None
