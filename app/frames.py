"""Recognising a pandas DataFrame without importing pandas.

The server imports pandas only for a model fitted on a DataFrame (app/wsgi.py): a DataFrame
can only exist once pandas is imported, so a look in sys.modules answers the question for free.
"""
from __future__ import annotations

import sys


def is_dataframe(value) -> bool:
    """isinstance(value, pandas.DataFrame), without importing pandas."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)
