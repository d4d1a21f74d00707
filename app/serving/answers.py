"""What InferenceService (app/serving/inference.py) answers besides a model's PredictionResult:
an answer with how the cache served it, records fetched by id with the reasons others could not
be scored, and one row of features as the features routes send it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mlapi.errors import InvalidInput
from mlapi.serving.input_faults import name_rows
from mlapi.serving.model import PredictionResult, ServedModel


@dataclass
class Cached:
    """An answer, and how the cache served it: `hits` of its `looked_up` instances came from
    the cache; none looked up: the route does not consult it (or was asked to skip it)."""

    value: Any
    hits: int = 0
    looked_up: int = 0

    @property
    def from_cache(self) -> bool:
        return self.looked_up > 0 and self.hits == self.looked_up


@dataclass
class RecordPredictions:
    """Predictions for the records that could be scored; the others with their reasons."""

    model: ServedModel
    ids: list[str]
    data: list[Any]
    result: PredictionResult | None
    failures: dict[str, str]     # entity id → why it cannot be scored (permanent)
    cached: Cached | None = None  # how the cache served a single record (predict_id)


def as_record(model: ServedModel, exc: InvalidInput, entity_id: str, data: Any) -> InvalidInput:
    """The model's rejection of a record fetched by id: named by that id ("record c-12, column
    ...", details["id"]) rather than as "instance 0" of a request nobody sent, and with the
    features it holds NULL for (details["missing"]), most often what the model refused."""
    named = name_rows(exc, "record", lambda _: entity_id, "id")
    nulls = [name for name, value in data.items() if value is None] if isinstance(data, dict) else []
    if not nulls:
        return named
    return InvalidInput(f"{named.message}; record {entity_id} has NULL for {nulls}: store values there "
                        f"(`mlapi features add`), or send the instance itself to POST /models/{model.name}/predict",
                        **{**named.details, "missing": nulls})


def dense_row(matrix) -> list[float]:
    """The first row of a (possibly sparse) feature matrix as a plain list."""
    if sparse.issparse(matrix):
        matrix = matrix[:1].toarray()
    return np.asarray(matrix, dtype=np.float64)[0].tolist()
