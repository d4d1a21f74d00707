"""Which missing value a model refuses, asked of the model itself: the rejected request's gaps
one at a time (app/serving/input_faults.py calls this only on a rejection, for the 422's
instance and column).

Which steps impute which columns is the model's to say, not ours to guess: a ColumnTransformer
may impute `income` and pass `visits` straight to a booster that refuses NaN. So each gap is
tried on its own, in a one-row copy of its row whose other gaps are filled with values the
model takes, and scikit-learn's own `predict` says whether that gap alone is refused.
"""
from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mlapi.errors import RequestTimeout
from mlapi.serving.columns import STRING, column_types
from mlapi.serving.frames import as_frame, is_dataframe

if TYPE_CHECKING:
    from mlapi.serving.model import ServedModel

# At most this many one-row model calls to find which missing value the model refuses, however
# many columns have gaps (a rejected request stays cheap); past them, the first gap is named.
PROBED_GAPS = 32


def says_missing(said: str) -> bool:
    """Whether scikit-learn's words (lower case) are about a missing value: an encoder's
    "unknown categories [nan]", a vectorizer's "np.nan is an invalid document", a numeric
    step's "Input X contains NaN"."""
    return any(words in said for words in ("unknown categor", "contains nan", "missing value", "invalid document"))


def missing_mask(values: np.ndarray) -> np.ndarray:
    import pandas as pd  # imported already: pandas ships with scikit-learn's DataFrame support

    return np.asarray(pd.isna(values), dtype=bool)


def first_refused_alone(model: ServedModel, model_input, table: tuple[list, list[np.ndarray]],
                        gaps_in_order: Sequence):
    """The first of `gaps_in_order` (each a row and a column position, as input_faults' Fault)
    that the model still refuses with the other gaps of its row filled, one one-row call each,
    at most PROBED_GAPS calls. None when none is refused on its own: each such row passed, or
    failed for something else. `table` is the input's (labels, columns)."""
    labels, columns = table
    model_input = as_frame(model_input)
    gaps = [missing_mask(values) for values in columns]
    fillers = _fillers(model, labels)
    for fault in gaps_in_order[:PROBED_GAPS]:
        others = {j: fillers[j] for j in range(len(columns)) if j != fault.column and gaps[j][fault.row]}
        if _refuses_a_missing_value(model, _row_filled(model_input, fault.row, others)):
            return fault
    return None


def _fillers(model, labels) -> list:
    """Per column, a value the model takes: an encoded column's first known category (a number
    column's too: 0.0 could be an unknown category), "" for free text, else 0.0."""
    kinds = {kind["name"]: kind for kind in column_types(model.estimator) or ()}
    fillers = []
    for label in labels:
        kind = kinds.get(label, {})
        categories = kind.get("categories")
        fillers.append(categories[0] if categories else "" if kind.get("type") == STRING else 0.0)
    return fillers


def _row_filled(model_input, row: int, fills: dict[int, Any]):
    """Row `row` of the input as a one-row input of the same kind and types, the cells at the
    column positions in `fills` given those values."""
    if not is_dataframe(model_input):  # a 2-D array (_columns_of took nothing else)
        probe = model_input[[row]]
        for j, value in fills.items():
            probe[0, j] = value
        return probe
    probe = model_input.iloc[[row]]
    for j, value in fills.items():
        probe.isetitem(j, _column_of(value, probe.dtypes.iloc[j], probe.index))
    return probe


def _column_of(value, dtype, index):
    """`value` as a one-row column in `dtype` where that dtype holds it (a float column stays
    float), else as an object column (a category in a column the request left all NaN)."""
    import pandas as pd

    with suppress(TypeError, ValueError):
        column = pd.Series([value], index=index, dtype=dtype)
        if column.notna().iloc[0]:  # a categorical dtype turns a value it lacks into NaN
            return column
    return pd.Series([value], index=index, dtype=object)


def _refuses_a_missing_value(model, probe) -> bool:
    """Whether scikit-learn's own predict refuses `probe` for a missing value; refusing it for
    anything else (an infinity beside the gap) shows nothing."""
    try:
        model.estimator.predict(probe)
    except RequestTimeout:  # the request's time is up: explain_rejection answers the 504
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure is the model's words to read
        return says_missing(" ".join(str(exc).split()).lower())
    return False
