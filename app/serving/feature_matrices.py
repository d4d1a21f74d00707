"""Feature matrices → the predictor's input (predict_features): dense rows of numbers, or the
CSR object POST /models/{name}/features returns, checked against the predictor's width.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse

from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel


def to_feature_matrix(model: ServedModel, features: Any):
    """Dense rows (list of lists) or the CSR object that /features returns."""
    if isinstance(features, dict):
        return _csr(features, model)
    if not isinstance(features, list) or not features:
        raise InvalidInput(f"no features: send a non-empty list of feature rows; {_features_hint(model)}")
    if not isinstance(features[0], list):
        features = [features]  # a single row
    try:
        matrix = np.asarray(features, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput(f"features must be rows of numbers, all of the same length; {_features_hint(model)}") from None
    if matrix.ndim != 2:
        raise InvalidInput(f"features must be a list of flat rows of numbers; {_features_hint(model)}")
    _check_feature_width(model, matrix.shape[1])
    return matrix


def _csr(payload: dict, model: ServedModel):
    if payload.get("format") != "csr":
        raise InvalidInput('sparse features must be {"format": "csr", "shape", "data", "indices", "indptr"}, '
                           f'as /models/{model.name}/features returns them')
    try:
        shape = _csr_shape(payload["shape"])
        matrix = sparse.csr_matrix(
            (np.asarray(payload["data"], dtype=np.float64), np.asarray(payload["indices"], dtype=np.int64),
             np.asarray(payload["indptr"], dtype=np.int64)), shape=shape)
        matrix.check_format(full_check=True)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid CSR features: {exc}; {_features_hint(model)}") from None
    if matrix.shape[0] == 0:
        raise InvalidInput(f"no features: the CSR matrix has no rows; {_features_hint(model)}")
    _check_feature_width(model, matrix.shape[1])
    return matrix


def _csr_shape(value: Any) -> tuple[int, ...]:
    """Two whole, finite numbers: int() of an infinity (Infinity, 1e400) raises OverflowError."""
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v == int(v) and v >= 0
            for v in value):
        raise ValueError(f'"shape" must be [rows, columns], two whole numbers, not {value!r}')
    return tuple(int(v) for v in value)


def _check_feature_width(model: ServedModel, width: int) -> None:
    expected = getattr(model.predictor, "n_features_in_", None)
    if expected is not None and width != expected:
        raise InvalidInput(f"expected {expected} features per row for the predictor, got {width}; "
                           f"{_features_hint(model)}", expected=int(expected), got=width)


def _features_hint(model: ServedModel) -> str:
    width = getattr(model.predictor, "n_features_in_", None)
    rows = f"rows of {width} numbers" if width is not None else "rows of numbers"
    return f"send {rows} as POST /models/{model.name}/features returns them (dense rows, or its CSR object)"
