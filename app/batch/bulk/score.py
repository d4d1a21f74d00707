"""Bulk scoring, scoring: an Arrow chunk → the model's input (built on the reader's thread:
a float64 matrix for numeric columns, a DataFrame of typed columns for mixed ones, texts) →
labels and class probabilities as numpy arrays, without ServedModel.predict's per-row
conversion to Python lists; and the store's RecordPredictions in the same shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlapi.batch.bulk.read import Layout
from mlapi.errors import InvalidInput
from mlapi.serving.input_faults import name_rows
from mlapi.serving.model import PredictionResult, ServedModel


@dataclass
class Scored:
    index: int                      # the chunk's number in the whole input
    ids: list | pa.ChunkedArray     # the rows' ids, or their row numbers (an input without ids)
    labels: np.ndarray
    proba: np.ndarray | None
    data: list | None = None        # per row, what a stored text prediction shows (its text)
    failures: dict[str, str] = field(default_factory=dict)  # store ids that could not be scored

    def id_list(self) -> list[str]:
        ids = self.ids if isinstance(self.ids, list) else self.ids.to_pylist()
        return [value if isinstance(value, str) else str(value) for value in ids]

    def result(self, model: ServedModel) -> PredictionResult:
        """As ServedModel.predict returns it: plain Python values."""
        return PredictionResult(self.labels.tolist(), None if self.proba is None else self.proba.tolist(),
                                model.classes)


@dataclass
class Chunk:
    """A chunk ready for the model: built on the reader's thread, to keep the scorers' short."""

    index: int
    rows: str                       # "rows 20000-29999" (from 0, as the output's row numbers), for errors
    ids: pa.ChunkedArray
    model_input: Any
    columns: tuple[str, ...]
    first_row: int                  # the number of the chunk's first row in the whole input


def to_chunk(layout: Layout, index: int, table: pa.Table, first_row: int) -> Chunk:
    rows = f"rows {first_row}-{first_row + table.num_rows - 1}"
    if layout.id_column is None:  # keyed by row number
        ids = pa.chunked_array([pa.array(np.arange(first_row, first_row + table.num_rows))])
    else:
        ids = table.column(layout.id_column)
        if ids.null_count:
            raise InvalidInput(f"{rows}: {ids.null_count} row(s) have no {layout.id_column!r}")
    if layout.text:
        texts = table.column(layout.columns[0])
        if texts.null_count:
            raise InvalidInput(f"{rows}: {texts.null_count} row(s) have no text in {layout.columns[0]!r}")
        return Chunk(index, rows, ids, texts.to_pylist(), layout.columns, first_row)
    if not layout.numeric:
        # Strings, integers or booleans among the columns (only a model fitted on a DataFrame
        # says so): typed columns, as pandas reads the file (str columns, NaN where missing).
        return Chunk(index, rows, ids, table.select(list(layout.columns)).to_pandas(), layout.columns, first_row)
    # float64 columns → one row-major matrix: a copy per column, no per-row Python.
    matrix = np.column_stack([table.column(name).to_numpy() for name in layout.columns])
    if layout.by_name:
        matrix = pd.DataFrame(matrix, columns=list(layout.columns), copy=False)
    return Chunk(index, rows, ids, matrix, layout.columns, first_row)


def score_chunk(model: ServedModel, chunk: Chunk) -> Scored:
    try:
        labels, proba = model.predict_input_arrays(chunk.model_input)
    except InvalidInput as exc:
        # Explained as a request's rows are (the row and column at fault), numbered as in the file.
        named = name_rows(exc, "row", lambda position: chunk.first_row + position, "row")
        if "row" in named.details:
            raise named from exc
        raise InvalidInput(f"{chunk.rows}{_empty_hint(chunk)}: {exc.message}") from exc
    texts = chunk.model_input if isinstance(chunk.model_input, list) else None
    return Scored(chunk.index, chunk.ids, labels, proba, texts)


def _empty_hint(chunk: Chunk) -> str:
    if isinstance(chunk.model_input, list):
        return ""
    missing = np.asarray(pd.isna(chunk.model_input)).any(axis=0)  # a float matrix or a DataFrame
    empty = [name for name, bad in zip(chunk.columns, missing) if bad]
    return f" have empty values in {empty}" if empty else ""


def records_to_scored(index: int, records) -> Scored:
    """InferenceService.predict_ids' RecordPredictions (--from-store) as a Scored chunk."""
    result = records.result
    labels = np.asarray(result.predictions if result else [])
    proba = None if result is None or result.probabilities is None else np.asarray(result.probabilities, dtype=float)
    return Scored(index, records.ids, labels, proba, records.data, records.failures)
