"""How many rows a request holds, at every stage, without reading a value: the one count that
MAX_ROWS limits (app/serving/inference.py) and micro-batching fills batches with and slices
merged answers by (app/serving/batching.py)."""
from __future__ import annotations

from typing import Any

from mlapi.serving.instances import Columns


def row_count(rows: Any, features: bool = False) -> int:
    """The rows in decoded instances — a list's length, dataframe_split's data — or in a
    feature matrix (`features`: one flat list of numbers is one row, as to_feature_matrix takes
    it; the CSR object's indptr), or in a model's input (an array, DataFrame or sparse matrix:
    its shape; a list of texts)."""
    if isinstance(rows, list):
        return 1 if features and rows and not isinstance(rows[0], list) else len(rows)
    shape = getattr(rows, "shape", None)
    if shape is not None:
        return shape[0]
    if isinstance(rows, Columns):
        return len(rows.data) if isinstance(rows.data, list) else 0
    if isinstance(rows, dict):  # the CSR features object
        indptr = rows.get("indptr")
        return len(indptr) - 1 if isinstance(indptr, list) else 0
    return 0
