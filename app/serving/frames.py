"""pandas DataFrames on the request path, without importing pandas up front.

The server imports pandas only for a model fitted on a DataFrame (app/wsgi.py): a DataFrame
can only exist once pandas is imported, so a look in sys.modules answers the question for free.
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
