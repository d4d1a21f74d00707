"""The native JSON protocol: request bodies → instances, results → response bodies.

Accepted instance shapes (see README, "Request formats"):
  {"instances": [...]} or {"inputs": [...]}    rows as lists, objects or strings
  {"dataframe_split": {"columns": [...], "data": [[...]]}}   MLflow's split orientation
  {"dataframe_records": [{...}, ...]}                       MLflow's records orientation
plus optional {"parameters": {"probabilities": bool}}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mlapi.errors import BadRequest
from mlapi.serving.frames import is_dataframe
from mlapi.serving.inputs import Columns
from mlapi.serving.model import PredictionResult, ServedModel

INSTANCE_KEYS = ("instances", "inputs", "dataframe_split", "dataframe_records")


@dataclass(frozen=True)
class PredictRequest:
    instances: Any
    probabilities: bool | None


def decode_predict(body: dict) -> PredictRequest:
    present = [key for key in INSTANCE_KEYS if key in body]
    if len(present) != 1:
        raise BadRequest(f"the body needs exactly one of {list(INSTANCE_KEYS)}; found {present or 'none'}")
    key = present[0]
    value = body[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadRequest('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        columns = value.get("columns")
        if columns is None:
            instances: Any = value["data"]
        elif isinstance(columns, list) and all(isinstance(c, str) for c in columns):
            instances = Columns(columns, value["data"])
        else:
            raise BadRequest("dataframe_split.columns must be a list of strings")
    else:
        if not isinstance(value, list):
            raise BadRequest(f"{key!r} must be a list")
        instances = value
    return PredictRequest(instances, decode_probabilities(body))


def decode_probabilities(body: dict) -> bool | None:
    parameters = body.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):  # also [] or "": falsy, but not an object
        raise BadRequest("parameters must be an object")
    value = parameters.get("probabilities")
    if value is not None and not isinstance(value, bool):
        raise BadRequest("parameters.probabilities must be true or false")
    return value


def decode_features(body: dict) -> Any:
    for key in ("features", "instances", "inputs"):
        if key in body:
            return body[key]
    raise BadRequest('the body needs "features": dense rows or the CSR object /features returns')


def encode_prediction(model: ServedModel, result: PredictionResult) -> dict:
    body: dict[str, Any] = {"model": {"name": model.name, "version": model.version},
                            "predictions": result.predictions}
    if result.probabilities is not None:
        body["probabilities"] = result.probabilities
        body["classes"] = result.classes
    return body


def encode_features(model: ServedModel, matrix) -> dict:
    """Dense rows, or CSR for sparse output (TF-IDF); either posts back to predict_features."""
    if sparse.issparse(matrix):
        csr = sparse.csr_matrix(matrix)
        csr.sort_indices()
        features: Any = {"format": "csr", "shape": list(csr.shape), "data": csr.data.tolist(),
                         "indices": csr.indices.tolist(), "indptr": csr.indptr.tolist()}
    else:
        if is_dataframe(matrix):
            matrix = matrix.to_numpy()
        features = np.asarray(matrix).tolist()
    return {"model": {"name": model.name, "version": model.version}, "features": features}
