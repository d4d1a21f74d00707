"""The native JSON protocol: request bodies → instances, results → response bodies.

Accepted instance shapes (declared in protocols/request_bodies.py, PredictBody):
  {"instances": [...]} or {"inputs": [...]}    rows as lists, objects or strings
  {"dataframe_split": {"columns": [...], "data": [[...]]}}   pandas' / MLflow's split orientation
  {"dataframe_records": [{...}, ...]}                       pandas' / MLflow's records orientation
plus optional {"parameters": {"probabilities": bool}}.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

from mlapi.protocols.request_bodies import INSTANCE_KEYS, FeatureMatrixBody, PredictBody
from mlapi.protocols.validation import decodes, first_given
from mlapi.serving.frames import is_dataframe
from mlapi.serving.instances import Columns
from mlapi.serving.model import PredictionResult, ServedModel


class PredictRequest(NamedTuple):  # a tuple: built on every request, it must be cheap
    instances: Any         # rows (a list), or Columns; for predict_features, the feature matrix
    probabilities: bool | None


@decodes(PredictBody)
def decode_predict(body: PredictBody) -> PredictRequest:
    """The one instance key present (the decoder checked there is exactly one)."""
    key, value = first_given(body, INSTANCE_KEYS)
    if key == "dataframe_split":
        value = value.data if value.columns is None else Columns(value.columns, value.data)
    parameters = body.parameters
    return PredictRequest(value, None if parameters is None else parameters.probabilities)


@decodes(FeatureMatrixBody)
def decode_feature_matrix(body: FeatureMatrixBody) -> PredictRequest:
    """The first of features / instances / inputs present: dense rows or the CSR object."""
    parameters = body.parameters
    return PredictRequest(first_given(body, FeatureMatrixBody.alternatives.keys)[1],
                          None if parameters is None else parameters.probabilities)


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
