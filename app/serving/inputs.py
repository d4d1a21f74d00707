"""Instances → the model's input, checked against what the model was fitted on.

Protocol codecs hand over plain Python rows (lists, objects or strings); this module turns
them into what scikit-learn expects — a float array, a DataFrame with the fitted column
names, or a list of texts — and reports rows that cannot fit as InvalidInput (422) saying
what was expected. It also decodes feature matrices (dense or CSR) for predict_features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from scipy import sparse

from mlapi.errors import InvalidInput
from mlapi.serving.frames import column_index
from mlapi.serving.model import TEXT, ServedModel

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Columns:
    """Rows given as lists with explicit column names (MLflow's dataframe_split)."""

    columns: list[str]
    data: list


def to_model_input(model: ServedModel, instances: Any):
    """Build the model's input from decoded instances (a list, or Columns)."""
    if isinstance(instances, Columns):
        return _from_columns(model, instances)
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("no instances: send a non-empty list of instances")
    if model.input_kind == TEXT:
        return _texts(instances)
    first = instances[0]
    if isinstance(first, dict):
        return _from_objects(model, instances)
    if isinstance(first, (list, tuple)):
        return _from_lists(model, instances)
    if isinstance(first, str):
        raise InvalidInput(f"model {model.name} takes tabular input, not text: send each instance as a list "
                           f"of {model.n_features or 'its'} feature values or an object keyed by feature name")
    raise InvalidInput("each instance must be a list of feature values or an object keyed by feature name")


def _texts(instances: list) -> list[str]:
    texts = []
    for index, item in enumerate(instances):
        if isinstance(item, list) and len(item) == 1:
            item = item[0]  # [["some text"]] is a one-column table of texts
        if not isinstance(item, str):
            raise InvalidInput(f"instance {index} is not a string: this model takes raw text", instance=index)
        texts.append(item)
    return texts


def _from_lists(model: ServedModel, rows: list):
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        matrix = _object_matrix(model, rows)
    if matrix.ndim != 2:
        raise InvalidInput("each instance must be a flat list of feature values")
    _check_width(model, matrix.shape[1])
    if model.feature_names is not None:
        return _frame(matrix, model.feature_names)
    if matrix.dtype == object:
        raise InvalidInput(_non_numeric_message(rows))
    return matrix


def _object_matrix(model: ServedModel, rows: list) -> np.ndarray:
    widths = {len(row) if isinstance(row, (list, tuple)) else -1 for row in rows}
    if -1 in widths:
        raise InvalidInput("instances must all be lists, or all objects keyed by feature name")
    if len(widths) > 1:
        expected = model.n_features or "the same number of"
        raise InvalidInput(f"instances have different lengths {sorted(widths)}: the model expects {expected} features")
    matrix = np.empty((len(rows), widths.pop()), dtype=object)
    matrix[:] = [list(row) for row in rows]
    return matrix


def _check_width(model: ServedModel, width: int) -> None:
    if model.n_features is not None and width != model.n_features:
        names = f" ({', '.join(model.feature_names)})" if model.feature_names else ""
        raise InvalidInput(f"expected {model.n_features} features per instance{names}, got {width}",
                           expected=model.n_features, got=width)


def _from_objects(model: ServedModel, rows: list):
    names = model.feature_names
    if names is None:
        raise InvalidInput(f"model {model.name} was fitted without feature names: send each instance as a "
                           f"list of {model.n_features or 'its'} values in training order")
    wanted = set(names)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput("instances must all be lists, or all objects keyed by feature name")
        if row.keys() != wanted:
            _raise_name_mismatch(names, row.keys(), index)
    return _frame_from_rows([[row[name] for name in names] for row in rows], names)


def _from_columns(model: ServedModel, table: Columns):
    if not isinstance(table.data, list) or not table.data:
        raise InvalidInput("no instances: dataframe_split.data is empty")
    if model.input_kind == TEXT:
        return _texts(table.data)
    if model.feature_names is None:
        return _from_lists(model, table.data)
    if set(table.columns) != set(model.feature_names) or len(table.columns) != len(model.feature_names):
        _raise_name_mismatch(model.feature_names, table.columns, None)
    order = [table.columns.index(name) for name in model.feature_names]
    rows = []
    for row in table.data:
        if not isinstance(row, list) or len(row) != len(order):
            raise InvalidInput(f"each row of dataframe_split.data must be a list of {len(order)} values")
        rows.append([row[i] for i in order])
    return _frame_from_rows(rows, model.feature_names)


def _raise_name_mismatch(names: Sequence[str], given, index: int | None) -> None:
    missing = [n for n in names if n not in given]
    unknown = sorted(str(k) for k in given if k not in set(names))
    where = f"instance {index}: " if index is not None else ""
    parts = []
    if missing:
        parts.append(f"missing features {missing}")
    if unknown:
        parts.append(f"unknown features {unknown}")
    if not parts:
        parts.append("duplicate feature names")
    raise InvalidInput(f"{where}{'; '.join(parts)}; the model expects {list(names)}",
                       missing=missing, unknown=unknown, expected=list(names))


def _frame_from_rows(rows: list, names: list[str]) -> pd.DataFrame:
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        matrix = np.empty((len(rows), len(names)), dtype=object)
        matrix[:] = rows
    return _frame(matrix, names)


def _frame(matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: see app/serving/frames.py

    # Not copied: the matrix is this request's own. A numeric frame then holds the matrix's
    # transpose, so np.asarray(frame) is the C-ordered matrix again, the linear shortcut's
    # input (app/serving/shortcuts/linear.py); a copied frame of several rows would be Fortran-ordered.
    frame = pd.DataFrame(matrix, columns=column_index(tuple(names)), copy=matrix.dtype == object)
    if matrix.dtype == object:
        # Mixed input (e.g. categorical columns): keep strings as they are and make every
        # column that is entirely numeric numeric, as it was when the model was fitted.
        for column in frame.columns:
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == frame[column].notna().sum():
                frame[column] = converted
    return frame


def _non_numeric_message(rows: list) -> str:
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None and not isinstance(value, (int, float, bool)):
                return (f"instance {r}, feature {c}: {value!r} is not a number; "
                        f"this model takes numeric features")
    return "instances must hold numbers"


# ---- feature matrices (predict_features) -------------------------------------------------
def to_feature_matrix(model: ServedModel, features: Any):
    """Dense rows (list of lists) or the CSR object that /features returns."""
    if isinstance(features, dict):
        return _csr(features, model)
    if not isinstance(features, list) or not features:
        raise InvalidInput("no features: send a non-empty list of feature rows")
    if not isinstance(features[0], list):
        features = [features]  # a single row
    try:
        matrix = np.asarray(features, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput("features must be rows of numbers, all of the same length") from None
    if matrix.ndim != 2:
        raise InvalidInput("features must be a list of flat rows of numbers")
    _check_feature_width(model, matrix.shape[1])
    return matrix


def _csr(payload: dict, model: ServedModel):
    if payload.get("format") != "csr":
        raise InvalidInput('sparse features must be {"format": "csr", "shape", "data", "indices", "indptr"}')
    try:
        shape = tuple(int(v) for v in payload["shape"])
        matrix = sparse.csr_matrix(
            (np.asarray(payload["data"], dtype=np.float64), np.asarray(payload["indices"], dtype=np.int64),
             np.asarray(payload["indptr"], dtype=np.int64)), shape=shape)
        matrix.check_format(full_check=True)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid CSR features: {exc}") from None
    if matrix.shape[0] == 0:
        raise InvalidInput("no features: the CSR matrix has no rows")
    _check_feature_width(model, matrix.shape[1])
    return matrix


def _check_feature_width(model: ServedModel, width: int) -> None:
    expected = getattr(model.predictor, "n_features_in_", None)
    if expected is not None and width != expected:
        raise InvalidInput(f"expected {expected} features per row for the predictor, got {width}",
                           expected=int(expected), got=width)
