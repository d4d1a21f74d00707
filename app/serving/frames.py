"""pandas DataFrames on the request path, without importing pandas up front, or at all.

The server imports pandas only for a model fitted on a DataFrame (app/wsgi.py): a DataFrame
can only exist once pandas is imported, so a look in sys.modules answers the question for free.
A request for a model whose feature steps are compiled need not build one: RequestColumns
holds its columns and builds the DataFrame only for whoever asks for it.
"""
from __future__ import annotations

import functools
import sys


def is_dataframe(value) -> bool:
    """isinstance(value, pandas.DataFrame), without importing pandas."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def is_plain_numeric_frame(value, names: list[str]) -> bool:
    """A pandas.DataFrame itself (no subclass, which could convert differently) whose columns
    are exactly `names` as str objects, in order, each a NumPy column (no extension dtype such
    as Sparse, which scikit-learn's validation turns into a sparse matrix)."""
    pandas = sys.modules.get("pandas")
    if pandas is None or type(value) is not pandas.DataFrame:
        return False
    columns = value.columns
    if columns is not column_index(tuple(names)):  # a frame app/serving/typed_rows.py built: known columns
        listed = columns.tolist()
        # scikit-learn takes only str column names as feature names (np.str_ would warn).
        if listed != names or not all(type(name) is str for name in listed):
            return False
    try:
        return not value._mgr.any_extension_types  # pandas' own flag: 0.3 µs, `.dtypes` 20 µs
    except AttributeError:  # a pandas without that internal
        import numpy as np

        return all(isinstance(dtype, np.dtype) for dtype in value.dtypes)


@functools.lru_cache(maxsize=256)
def column_index(names: tuple[str, ...]):
    """One pandas Index per column list: a DataFrame built on a ready Index costs ~8 µs, one
    built from a list of names ~50 µs (pandas infers and checks the list every time)."""
    import pandas as pd  # imported already by whoever builds a DataFrame

    # Shared by every frame built on these columns: never rename it in place (.name = ...).
    return pd.Index(names)


class RequestColumns:
    """A request's columns for a model fitted on a DataFrame: one 1-D array per name, typed as
    app/serving/typed_rows.py types them, and the DataFrame built from them only when asked
    (frame(): the same DataFrame as before, for scikit-learn, micro-batching, explanations).

    The compiled feature steps read `arrays` themselves when `plain` (every array one the
    DataFrame would hold and give back unchanged: float64, int64, a text column's strings and
    NaN): building the DataFrame and reading it back cost one M3 row ~2/3 of the features' own cost."""

    __slots__ = ("names", "arrays", "plain", "shape", "_frame")

    def __init__(self, names: list[str], arrays: list, plain: bool):
        self.names, self.arrays, self.plain = names, arrays, plain
        self.shape = (len(arrays[0]) if arrays else 0, len(names))  # row_count reads it
        self._frame = None

    def frame(self):
        """The DataFrame of these columns, built once."""
        if self._frame is None:
            self._frame = frame_from_arrays(self.arrays, self.names)
        return self._frame


def as_frame(model_input):
    """RequestColumns as its DataFrame; any other input as it is."""
    return model_input.frame() if type(model_input) is RequestColumns else model_input


def frame_from_arrays(arrays: list, names: list[str]):
    """Column arrays (as typed_rows builds them) under `names` as one DataFrame."""
    import pandas as pd

    index, row_index = column_index(tuple(names)), pd.RangeIndex(len(arrays[0]) if arrays else 0)
    try:
        # pandas' own constructor from column arrays (what DataFrame.from_records uses): half
        # the cost of pd.DataFrame(dict, columns=...), which also looks each name up
        return pd.DataFrame._from_arrays(arrays, columns=index, index=row_index, verify_integrity=True)
    except (AttributeError, TypeError):  # a pandas without it, or with another signature
        return pd.DataFrame(dict(zip(names, arrays)), columns=index, copy=False)
