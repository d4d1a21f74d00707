"""Instances → the model's input, checked against what the model was fitted on.

Protocol codecs hand over plain Python rows (lists, objects or strings, or Columns); this module
checks their shape against the model — a list of texts, rows of its width, objects with its
feature names — and reports rows that cannot fit as InvalidInput (422) saying what was
expected. app/serving/typed_rows.py builds the float array or DataFrame from the rows, or
(`frameless`, for a model whose compiled feature steps read them) the DataFrame's columns alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mlapi.errors import MAX_SHOWN_CHARS, InvalidInput, cut, shown
from mlapi.serving.input_faults import instance_hint
from mlapi.serving.model import TEXT, ServedModel
from mlapi.serving.shortcuts.compiled_pipeline import reads_request_columns
from mlapi.serving.typed_rows import as_cells, as_floats, frame_from_columns, frame_from_matrix, frame_from_rows


@dataclass(frozen=True)
class Columns:
    """Rows given as lists with explicit column names (MLflow's dataframe_split)."""

    columns: list[str]
    data: list


def to_model_input(model: ServedModel, instances: Any, frameless: bool = False):
    """Build the model's input from decoded instances (a list, or Columns). `frameless`: the
    caller hands the input to the model alone (not merged with others' by micro-batching), so
    a model whose compiled feature steps read a request's columns gets RequestColumns
    (app/serving/frames.py) where it would get a DataFrame."""
    frameless = frameless and reads_request_columns(model)
    if isinstance(instances, Columns):
        return _from_columns(model, instances, frameless)
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(f"no instances: send a non-empty list of instances; {instance_hint(model)}")
    if model.input_kind == TEXT:
        return _texts(model, instances)
    first = instances[0]
    if isinstance(first, dict):
        return _from_objects(model, instances, frameless)
    if isinstance(first, (list, tuple)):
        return _from_lists(model, instances, frameless)
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


def _from_lists(model: ServedModel, rows: list, frameless: bool = False):
    matrix = None if model.string_columns else as_floats(rows)  # strings: keep them as sent
    if matrix is None:
        matrix = _object_matrix(model, rows)
    if matrix.ndim != 2:
        raise InvalidInput(f"each instance must be a flat list of values, not of lists; {instance_hint(model)}")
    _check_width(model, matrix.shape[1])
    if model.feature_names is not None:
        return frame_from_matrix(model, matrix, model.feature_names, frameless)
    if matrix.dtype == object:
        _refuse_non_numeric(model, rows)
    return matrix


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
    return as_cells(rows, widths.pop())


def _check_width(model: ServedModel, width: int) -> None:
    if model.n_features is not None and width != model.n_features:
        raise InvalidInput(f"expected {model.n_features} features per instance, got {width}; {instance_hint(model)}",
                           expected=model.n_features, got=width)


def _from_objects(model: ServedModel, rows: list, frameless: bool):
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
    if model.string_columns:  # read column by column whatever the values (frame_from_rows): read so at once
        # (100 rows: 14 µs, where rows of values and their transpose took 40)
        return frame_from_columns(model, [[row[name] for row in rows] for name in names], names, frameless)
    return frame_from_rows(model, [[row[name] for name in names] for row in rows], names, frameless)


def _from_columns(model: ServedModel, table: Columns, frameless: bool):
    if not isinstance(table.data, list) or not table.data:
        raise InvalidInput('no instances: dataframe_split.data is empty; send one row per instance, e.g. '
                           '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}')
    if model.input_kind == TEXT:
        return _texts(model, table.data)
    if model.feature_names is None:
        return _from_lists(model, table.data, frameless)
    if set(table.columns) != set(model.feature_names) or len(table.columns) != len(model.feature_names):
        _raise_name_mismatch(model.feature_names, table.columns, None)
    order = [table.columns.index(name) for name in model.feature_names]
    rows = []
    for index, row in enumerate(table.data):
        if not isinstance(row, list) or len(row) != len(order):
            raise InvalidInput(f"row {index} of dataframe_split.data is not a list of {len(order)} values: send "
                               f"one value per column, in the order of dataframe_split.columns", instance=index)
        rows.append([row[i] for i in order])
    return frame_from_rows(model, rows, model.feature_names, frameless)


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


def _refuse_non_numeric(model: ServedModel, rows: list) -> None:
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None and not isinstance(value, (int, float, bool)):
                raise InvalidInput(f"instance {r}, feature {c}: {shown(value)} is not a number; model {model.name} was "
                                   f"fitted on numbers only: {instance_hint(model)}", instance=r, column=c)
    raise InvalidInput(f"instances must hold numbers: {instance_hint(model)}")
