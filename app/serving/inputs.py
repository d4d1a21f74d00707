"""Instances → the model's input, checked against what the model was fitted on.

Protocol codecs hand over plain Python rows (lists, objects or strings); this module turns
them into what scikit-learn expects — a float array, a DataFrame with the fitted column
names, or a list of texts — and reports rows that cannot fit as InvalidInput (422) saying
what was expected. It also decodes feature matrices (dense or CSR) for predict_features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from scipy import sparse

from mlapi.errors import MAX_SHOWN_CHARS, InvalidInput, cut, shown
from mlapi.serving.frames import column_index
from mlapi.serving.input_faults import instance_hint
from mlapi.serving.model import TEXT, ServedModel

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Columns:
    """Rows given as lists with explicit column names (MLflow's dataframe_split)."""

    columns: list[str]
    data: list


def row_count(instances: Any, features: bool = False) -> int:
    """How many rows decoded instances (features: a feature matrix) hold, without reading a
    value: the list's length, dataframe_split's data, a CSR object's rows; one flat list of
    features is one row (to_feature_matrix)."""
    if isinstance(instances, Columns):
        instances = instances.data
    if isinstance(instances, dict):  # the CSR features object
        indptr = instances.get("indptr")
        return len(indptr) - 1 if isinstance(indptr, list) else 0
    if not isinstance(instances, list):
        return 0
    return 1 if features and instances and not isinstance(instances[0], list) else len(instances)


def to_model_input(model: ServedModel, instances: Any):
    """Build the model's input from decoded instances (a list, or Columns)."""
    if isinstance(instances, Columns):
        return _from_columns(model, instances)
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(f"no instances: send a non-empty list of instances; {instance_hint(model)}")
    if model.input_kind == TEXT:
        return _texts(model, instances)
    first = instances[0]
    if isinstance(first, dict):
        return _from_objects(model, instances)
    if isinstance(first, (list, tuple)):
        return _from_lists(model, instances)
    # A value where a row belongs: most often one row sent without its enclosing list.
    kind = "text" if isinstance(first, str) else "single values"
    raise InvalidInput(f"instance 0 is {shown(first)}, not a row: model {model.name} takes tabular input, not {kind}; "
                       f'one row still goes in a list of rows, {{"instances": [[...]]}}; {instance_hint(model)}',
                       instance=0)


def _texts(model: ServedModel, instances: list) -> list[str]:
    texts = []
    for index, item in enumerate(instances):
        if isinstance(item, list) and len(item) == 1:
            item = item[0]  # [["some text"]] is a one-column table of texts
        if not isinstance(item, str):
            raise InvalidInput(f"instance {index} is {shown(item)}, not a string: model {model.name} takes raw text; "
                               f"{instance_hint(model)}", instance=index)
        texts.append(item)
    return texts


def _from_lists(model: ServedModel, rows: list):
    matrix = None if model.string_columns else _numbers(rows)  # strings: keep them as sent
    if matrix is None:
        matrix = _object_matrix(model, rows)
    if matrix.ndim != 2:
        raise InvalidInput(f"each instance must be a flat list of values, not of lists; {instance_hint(model)}")
    _check_width(model, matrix.shape[1])
    if model.feature_names is not None:
        return _frame(model, matrix, model.feature_names)
    if matrix.dtype == object:
        _refuse_non_numeric(model, rows)
    return matrix


def _numbers(rows: list) -> np.ndarray | None:
    """The rows as one float64 matrix (None: a null becomes NaN), or None when a value is not
    a number: the common case, at numpy's speed."""
    try:
        return np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        return None


def _object_matrix(model: ServedModel, rows: list) -> np.ndarray:
    widths = {len(row) if isinstance(row, (list, tuple)) else -1 for row in rows}
    if -1 in widths:
        index = next(i for i, row in enumerate(rows) if not isinstance(row, (list, tuple)))
        raise InvalidInput(f"instance {index} is not a list like the first one: send every instance the same "
                           f"way; {instance_hint(model)}", instance=index)
    if len(widths) > 1:
        expected = model.n_features or "the same number of"
        raise InvalidInput(f"instances have different lengths {sorted(widths)}: the model expects {expected} "
                           f"features; {instance_hint(model)}")
    return _cells(rows, widths.pop())


def _cells(rows: list, width: int) -> np.ndarray:
    """Rows of any values as an object matrix, one value per cell (a list in a cell included,
    which numpy's own assignment would try to spread over cells)."""
    matrix = np.empty((len(rows), width), dtype=object)
    try:
        matrix[:] = [list(row) for row in rows]
    except ValueError:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                matrix[i, j] = value
    return matrix


def _check_width(model: ServedModel, width: int) -> None:
    if model.n_features is not None and width != model.n_features:
        raise InvalidInput(f"expected {model.n_features} features per instance, got {width}; {instance_hint(model)}",
                           expected=model.n_features, got=width)


def _from_objects(model: ServedModel, rows: list):
    names = model.feature_names
    if names is None:
        raise InvalidInput(f"model {model.name} was fitted without feature names: send each instance as a "
                           f"list of {model.n_features or 'its'} values in training order")
    wanted = set(names)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"instance {index} is not an object like the first one: send every instance the "
                               f"same way; {instance_hint(model)}", instance=index)
        if row.keys() != wanted:
            _raise_name_mismatch(names, row.keys(), index)
    return _frame_from_rows(model, [[row[name] for name in names] for row in rows], names)


def _from_columns(model: ServedModel, table: Columns):
    if not isinstance(table.data, list) or not table.data:
        raise InvalidInput('no instances: dataframe_split.data is empty; send one row per instance, e.g. '
                           '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}')
    if model.input_kind == TEXT:
        return _texts(model, table.data)
    if model.feature_names is None:
        return _from_lists(model, table.data)
    if set(table.columns) != set(model.feature_names) or len(table.columns) != len(model.feature_names):
        _raise_name_mismatch(model.feature_names, table.columns, None)
    order = [table.columns.index(name) for name in model.feature_names]
    rows = []
    for index, row in enumerate(table.data):
        if not isinstance(row, list) or len(row) != len(order):
            raise InvalidInput(f"row {index} of dataframe_split.data is not a list of {len(order)} values: send "
                               f"one value per column, in the order of dataframe_split.columns", instance=index)
        rows.append([row[i] for i in order])
    return _frame_from_rows(model, rows, model.feature_names)


def _raise_name_mismatch(names: Sequence[str], given, index: int | None) -> None:
    missing = [n for n in names if n not in given]
    unknown = sorted(str(k) for k in given if k not in set(names))
    where = f"instance {index}: " if index is not None else ""
    parts = []
    if missing:
        parts.append(f"missing features {_some(missing)}")
    if unknown:
        parts.append(f"unknown features {_some(unknown)}")
    if not parts:
        parts.append("duplicate feature names")
    raise InvalidInput(f"{where}{'; '.join(parts)}; send exactly the features the model expects: {_some(list(names))}",
                       missing=missing, unknown=unknown, expected=list(names))


def _some(names: list, limit: int = 20) -> str:
    """Names as a message lists them: the first `limit`, each bounded, and how many in all
    (10,000 unknown keys must not make a 168 KB message)."""
    listed = str([cut(str(name), MAX_SHOWN_CHARS) for name in names[:limit]])
    return listed if len(names) <= limit else f"{listed[:-1]}, …] ({len(names)} in all)"


def _frame_from_rows(model: ServedModel, rows: list, names: list[str]) -> pd.DataFrame:
    matrix = None if model.string_columns else _numbers(rows)
    if matrix is None or matrix.ndim != 2:  # a value that is not a number (or is a list of them)
        matrix = _cells(rows, len(names))
    return _frame(model, matrix, names)


def _frame(model: ServedModel, matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: see app/serving/frames.py

    # Not copied: the matrix is this request's own. A numeric frame then holds the matrix's
    # transpose, so np.asarray(frame) is the C-ordered matrix again, the linear shortcut's
    # input (app/serving/shortcuts/linear.py); a copied frame of several rows would be Fortran-ordered.
    frame = pd.DataFrame(matrix, columns=column_index(tuple(names)), copy=matrix.dtype == object)
    if matrix.dtype == object:
        # Mixed input: a column the model's encoder takes as strings stays text (a zip code
        # "01234" is not 1234); any other column that is entirely numeric (nulls included)
        # becomes numeric, as it was when the model was fitted. What is left is the model's to
        # refuse, and app/serving/input_faults.py's to explain.
        strings = model.string_columns
        for position, column in enumerate(names):
            if column in strings:
                frame[column] = _as_text(matrix[:, position], position, column)
                continue
            try:
                converted = pd.to_numeric(frame[column], errors="coerce")
            except TypeError:  # a list or an object among the values
                converted = None
            if converted is not None and converted.notna().sum() == frame[column].notna().sum():
                frame[column] = converted
            else:
                _refuse_nested(matrix[:, position], column)
    return frame


def _as_text(values: np.ndarray, position: int, column: str) -> np.ndarray:
    """A string column's values: strings kept, a number sent for a category (3) as its text
    ("3"), a null (None) as NaN, the missing value scikit-learn's encoders and imputers know."""
    text = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        if type(value) is str:
            text[row] = value
        elif value is None or value != value:
            text[row] = np.nan
        elif isinstance(value, (list, dict)):
            _refuse_nested(values, column)
        else:
            text[row] = str(value)
    return text


def _refuse_nested(values: np.ndarray, column: str) -> None:
    """A list or an object where one value belongs: never what a column takes."""
    for row, value in enumerate(values):
        if isinstance(value, (list, dict)):
            kind = "a list" if isinstance(value, list) else "an object"
            raise InvalidInput(f"instance {row}, column {column!r}: {shown(value)} is {kind}; send a single value "
                               f"(a number, or a string for a categorical column)",
                               instance=row, column=column, value=value)


def _refuse_non_numeric(model: ServedModel, rows: list) -> None:
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None and not isinstance(value, (int, float, bool)):
                raise InvalidInput(f"instance {r}, feature {c}: {shown(value)} is not a number; model {model.name} was "
                                   f"fitted on numbers only: {instance_hint(model)}", instance=r, column=c)
    raise InvalidInput(f"instances must hold numbers: {instance_hint(model)}")


# ---- feature matrices (predict_features) -------------------------------------------------
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
