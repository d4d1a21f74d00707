"""Rows of JSON values → a NumPy matrix, or a DataFrame whose columns hold what the model takes.

Numbers become one float64 matrix at numpy's speed; anything else an object matrix, one value
per cell. A DataFrame for a model fitted on one keeps a string column (app/serving/columns.py)
as text, so "01234" stays "01234", turns every other column that is entirely numeric into
numbers (pandas' own conversion: ints alone int64, with a null float64), and refuses a list or
an object where one value belongs. Mixed rows are read column by column into arrays and the
DataFrame built once from them; `frameless` (a model whose compiled feature steps read the
arrays themselves) hands over the arrays, the DataFrame built only if asked (RequestColumns).
"""
from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from mlapi.errors import InvalidInput, shown
from mlapi.serving.frames import RequestColumns, column_index, frame_from_arrays
from mlapi.serving.model import ServedModel

if TYPE_CHECKING:
    import pandas as pd

# From this many rows np.fromiter beats np.asarray (below it, the row check costs more than it saves).
FROMITER_ROWS = 8


def as_floats(rows: list) -> np.ndarray | None:
    """The rows as one float64 matrix (None: a null becomes NaN), or None when a value is not
    a number: the common case, at numpy's speed."""
    if len(rows) >= FROMITER_ROWS and type(rows[0]) is list:
        # np.asarray walks nested lists at ~330 instructions a value, more than a linear model
        # costs; np.fromiter over the chained rows converts each value the same way (None, "1.5",
        # bools, big ints: checked) for ~6 % of a 100-row request. Anything else (ragged rows,
        # a value that is not a number) takes np.asarray, which then decides as before.
        width = len(rows[0])
        if all(type(row) is list and len(row) == width for row in rows):
            try:
                return np.fromiter(chain.from_iterable(rows), np.float64,
                                   count=len(rows) * width).reshape(len(rows), width)
            except (ValueError, TypeError):
                pass
    try:
        return np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        return None


def as_cells(rows: list, width: int) -> np.ndarray:
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


def frame_from_rows(model: ServedModel, rows: list, names: list[str],
                    frameless: bool = False) -> pd.DataFrame | RequestColumns:
    """Rows of values in the order of `names` (each a list of len(names) values, as
    app/serving/instances.py checks) as the DataFrame the model takes (`frameless`: its columns)."""
    matrix = None if model.string_columns else as_floats(rows)
    if matrix is not None and matrix.ndim == 2:
        return frame_from_matrix(model, matrix, names, frameless)
    # Not a matrix of numbers (a value that is not a number, or is a list of them): column by column.
    try:
        columns = list(zip(*rows, strict=True))
    except ValueError:  # rows of other lengths
        columns = None
    if columns is None or len(columns) != len(names):  # (or no rows) read as an object matrix holds them
        columns = as_cells(rows, len(names)).T.tolist()
    return frame_from_columns(model, columns, names, frameless)


def frame_from_matrix(model: ServedModel, matrix: np.ndarray, names: list[str],
                      frameless: bool = False) -> pd.DataFrame | RequestColumns:
    import pandas as pd  # here, not at the top: see app/serving/frames.py

    if matrix.dtype == object:
        return frame_from_columns(model, matrix.T.tolist(), names, frameless)
    if frameless:  # the frame below gives back exactly these columns (views of its one block)
        return RequestColumns(names, list(matrix.T), True)
    # Not copied: the matrix is this request's own. A numeric frame then holds the matrix's
    # transpose, so np.asarray(frame) is the C-ordered matrix again, the linear shortcut's
    # input (app/serving/shortcuts/linear.py); a copied frame of several rows would be Fortran-ordered.
    return pd.DataFrame(matrix, columns=column_index(tuple(names)), copy=False)


def frame_from_columns(model: ServedModel, columns: list, names: list[str],
                       frameless: bool = False) -> pd.DataFrame | RequestColumns:
    """Mixed input (a model with a string column; rows holding a value that is not a number),
    one sequence of values per column of `names` (records can be read a column at a time), as
    the DataFrame the model takes: a column the model's encoder takes as strings stays text (a
    zip code "01234" is not 1234); any other column that is entirely numeric (nulls included)
    becomes numeric, as it was when the model was fitted. What is left is the model's to refuse,
    and app/serving/input_faults.py's to explain. (Rows of numbers alone for a model without a
    string column are frame_from_rows' one float64 matrix, not this: ints stay int64 here.)

    Each column is built once as an array and the DataFrame once from them: a DataFrame of
    objects converted column by column inside pandas (to_numeric, notna counts, setitem) cost
    3.8 M instructions for one row of plan + 3 numbers, this 0.39 M (callgrind).

    `frameless`: the arrays themselves (RequestColumns), plain when the DataFrame would give
    each back as it is: a text column's strings and NaN (pandas 3 stores them as its str dtype,
    whose objects read back are equal strings and NaN), float64 and int64 arrays; an array of
    objects in another column (text where a number belongs, bools, mixed kinds) may be inferred
    anew by pandas (None read back as NaN), so such a request's columns are read off its DataFrame."""
    strings = model.string_columns
    arrays = []
    plain = True
    for column, values in zip(names, columns):
        if column in strings:
            arrays.append(_as_text(values, column))
            continue
        numbers = _plain_numbers(values)
        if numbers is None:
            numbers = _as_numbers_if_all(values, column)
            plain = plain and (numbers.dtype == np.float64 or numbers.dtype == np.int64)
        arrays.append(numbers)
    if frameless:
        return RequestColumns(names, arrays, plain)
    return frame_from_arrays(arrays, names)


def _plain_numbers(values) -> np.ndarray | None:
    """What pandas' conversion (below) makes of a column of one JSON kind, at numpy's speed:
    ints alone as int64; floats and nulls as float64 (a null as NaN). None for anything else:
    pandas decides (ints beside floats: int64 when the first value is an int and every float is
    whole, float64 otherwise; big ints: uint64 or float64; bools; numeric text)."""
    kinds = set(map(type, values))
    if kinds == _FLOATS and len(values) >= FROMITER_ROWS:  # as in as_floats: each float as it is, faster
        return np.fromiter(values, np.float64, count=len(values))
    if kinds == _INTS:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return None
    if kinds and kinds <= _FLOATS_OR_NULLS:
        return np.array(values, dtype=np.float64)
    return None


_INTS, _FLOATS, _FLOATS_OR_NULLS = frozenset((int,)), frozenset((float,)), frozenset((float, type(None)))


def _as_numbers_if_all(values, column: str) -> np.ndarray:
    """A column converted by pandas itself (pd.to_numeric) when every value that is not null
    is a number or numeric text; the values as sent otherwise (as objects: the DataFrame's
    constructor reads them as pandas reads objects, text alone as pandas 3's str dtype), for
    the model to refuse or take."""
    import pandas as pd

    cells = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):  # one by one: a list in a cell stays one value
        cells[row] = value
    try:
        converted = pd.to_numeric(cells, errors="coerce")
    except TypeError:  # a list or an object among the values
        converted = None
    if converted is not None and np.count_nonzero(pd.isna(converted)) == np.count_nonzero(pd.isna(cells)):
        return converted
    _refuse_nested(values, column)
    return cells


def _as_text(values, column: str) -> np.ndarray:
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


def _refuse_nested(values, column: str) -> None:
    """A list or an object where one value belongs: never what a column takes."""
    for row, value in enumerate(values):
        if isinstance(value, (list, dict)):
            kind = "a list" if isinstance(value, list) else "an object"
            raise InvalidInput(f"instance {row}, column {column!r}: {shown(value)} is {kind}; send a single value "
                               f"(a number, or a string for a categorical column)",
                               instance=row, column=column, value=value)
