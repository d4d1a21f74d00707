"""Bulk scoring, values: a column as a file holds it → the Arrow type of its kind (what
serving/columns.py says the column takes), and a value that does not convert → an error
that names its row and column.

A conversion either takes the whole column at once (Arrow's cast, the fast path) or fails;
only then is the first value that does not convert looked for, by bisection over prefixes of
the column with the same conversion, so the error names exactly what the conversion refused.
"""
from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from mlapi.errors import InvalidInput
from mlapi.serving.columns import BOOLEAN, INTEGER, NUMBER, STRING

ARROW = {NUMBER: pa.float64(), STRING: pa.string(), INTEGER: pa.int64(), BOOLEAN: pa.bool_()}
PLURAL = {NUMBER: "numbers", STRING: "text", INTEGER: "integers", BOOLEAN: "true/false values"}
_SINGULAR = {NUMBER: "a number", STRING: "text", INTEGER: "an integer", BOOLEAN: "true or false"}
# What a conversion raises for a value it refuses (ArrowNotImplementedError, a type that does
# not convert at all, is handled apart: no one value is to blame).
_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)


def arrow_cast(values: pa.Array | pa.ChunkedArray, kind: str):
    """An Arrow column (Parquet, CSV) → the kind's type."""
    target = ARROW[kind]
    return values if values.type == target else pc.cast(values, target)


def arrow_column(values: list, kind: str) -> pa.Array:
    """Python values (JSON lines) → the kind's type. In a string column a number or a boolean
    reads as pandas writes it in a CSV (1234, 1.5, True); objects and lists are refused."""
    if kind == STRING:
        values = [value if value is None or isinstance(value, (str, dict, list)) else str(value) for value in values]
    return pa.array(values, ARROW[kind])


def converted(values, kind: str, name: str, first_row: int,
              convert: Callable[[object, str], pa.Array] = arrow_cast):
    """convert(values, kind), or InvalidInput naming the first row (`first_row` is the row
    number of values[0]) and the column whose value does not convert."""
    try:
        return convert(values, kind)
    except pa.ArrowNotImplementedError as exc:
        raise InvalidInput(f"column {name!r} must hold {PLURAL[kind]}: {exc}", column=name) from None
    except _REFUSED:
        bad = _first_refused(values, kind, convert)
    if bad is None:  # not one value alone: say what the column must hold
        raise InvalidInput(f"column {name!r} must hold {PLURAL[kind]}", column=name)
    value = values[bad]
    value = value.as_py() if isinstance(value, pa.Scalar) else value
    row = first_row + bad
    raise InvalidInput(f"row {row}, column {name!r}: {value!r} is not {_SINGULAR[kind]}; the model needs "
                       f"{PLURAL[kind]} there (rows count from 0, as pandas numbers them)", row=row, column=name)


def _first_refused(values, kind: str, convert) -> int | None:
    def converts(count: int) -> bool:
        try:
            convert(values[:count], kind)
            return True
        except _REFUSED:
            return False

    if converts(len(values)):
        return None
    good, bad = 0, len(values)  # the first `good` values convert; the first `bad` do not
    while bad - good > 1:
        middle = (good + bad) // 2
        if converts(middle):
            good = middle
        else:
            bad = middle
    return bad - 1
