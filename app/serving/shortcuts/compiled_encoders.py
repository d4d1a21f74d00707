"""OneHotEncoder / OrdinalEncoder as lookup tables the encoder filled itself.

A request's value is found among the learned categories the way the encoders find it
(_check_unknown, _encode): a column of text (dtype object) by hashing, as a Python set and dict
do, with None and NaN matched as missing values; a column of numbers by np.searchsorted, with
np.isin deciding what is known. Each category's output (and one unseen value's) is read off
the encoder's own transform at compile time, so drop=, infrequent categories (min_frequency,
max_categories), encoded_missing_value and handle_unknown are the encoder's own doing.
"""
from __future__ import annotations

import warnings

import numpy as np

from mlapi.serving.shortcuts.compiled_steps import REFUSED, Defer, is_missing
from mlapi.serving.shortcuts.sklearn_code import fitted_names

UNSEEN_TEXT = "\x00mlapi: a category no encoder learned"


def encoder_tables(encoder):
    """(lookups, outputs, width, one_hot) for a fitted OneHotEncoder / OrdinalEncoder, or why
    not. lookups[i](column) gives each value's category index (len(categories) for an unknown
    one); outputs[i][index] is that category's output column (one-hot: -1 for none, REFUSED for
    a refusal) or value (ordinal: +inf for a refusal)."""
    categories = getattr(encoder, "categories_", None)
    if categories is None:
        return "not fitted"
    one_hot = hasattr(encoder, "drop_idx_")
    offsets = None
    if one_hot:
        widths = getattr(encoder, "_n_features_outs", None)
        if widths is None:
            return "scikit-learn's private attribute OneHotEncoder._n_features_outs is gone"
        offsets = np.cumsum([0, *widths])
    for values in categories:
        if values.dtype.kind not in "Ofiu":
            return f"categories of dtype {values.dtype}"
        if values.dtype.kind == "O" and not all(isinstance(v, str) or is_missing(v) for v in values):
            return "categories that are neither all text nor all numbers"
    lookups = [_lookup(values) for values in categories]
    outputs = []
    for i, values in enumerate(categories):
        table = _own_outputs(encoder, i, offsets)
        if isinstance(table, str):
            return table
        outputs.append(table)
    width = int(offsets[-1]) if one_hot else len(categories)
    return lookups, outputs, width, one_hot


def _lookup(categories: np.ndarray):
    """A column's values → category indices (len(categories): unknown), as the encoders match them."""
    unknown = len(categories)
    index, none_at, nan_at = {}, unknown, unknown
    for k, value in enumerate(categories.tolist()):
        if value is None:
            none_at = k
        elif is_missing(value):
            nan_at = k
        else:
            index[value] = k
    hashed = _hashed(index, none_at, nan_at, unknown)
    if categories.dtype.kind == "O":
        def text_codes(column: np.ndarray) -> np.ndarray:
            if column.dtype.kind != "O":  # numbers for text categories: scikit-learn decides
                raise Defer
            return hashed(column)
        return text_codes
    nan_known = nan_at != unknown

    def number_codes(column: np.ndarray) -> np.ndarray:
        if column.dtype.kind == "O":  # a text column is looked up by hash whatever the categories
            return hashed(column)
        if column.dtype.kind not in "fiu":
            raise Defer
        if column.dtype.kind == "f" and np.isinf(column).any():  # check_array(allow-nan) refuses
            raise Defer
        found = np.searchsorted(categories, column)  # NaN sorts last, where a learned NaN is
        known = np.isin(column, categories)
        if nan_known:
            known |= np.isnan(column)
        found[~known] = unknown
        return found
    return number_codes


def _hashed(index: dict, none_at: int, nan_at: int, unknown: int):
    """_check_unknown / _map_to_integer for a column of objects: a set's and a dict's matching
    (hash and ==), None and NaN matched as missing values."""
    find = index.get

    def codes(column: np.ndarray) -> np.ndarray:
        out = np.empty(len(column), dtype=np.intp)
        try:
            for row, value in enumerate(column.tolist()):
                k = find(value)
                if k is None:
                    k = none_at if value is None else nan_at if is_missing(value) else unknown
                out[row] = k
        except TypeError:  # unhashable: validation's to refuse
            raise Defer from None
        return out
    return codes


def _own_outputs(encoder, feature: int, offsets):
    """What the encoder outputs for each category of `feature` and for an unseen value."""
    categories = encoder.categories_
    known = _input_rows(encoder, feature, list(categories[feature]))
    outputs = _transformed(encoder, known)
    if isinstance(outputs, str):
        return outputs
    unseen = _transformed(encoder, _input_rows(encoder, feature, [_unseen(categories[feature])]))
    refused = isinstance(unseen, str)
    if offsets is None:  # ordinal: the feature's own output column
        table = np.append(outputs[:, feature], np.inf if refused else unseen[0, feature])
        return table.astype(np.float64)
    start, stop = offsets[feature], offsets[feature + 1]
    rows = outputs if refused else np.vstack([outputs, unseen])
    table = []
    for row in rows[:, start:stop]:
        hot = np.flatnonzero(row)
        if len(hot) > 1 or (len(hot) == 1 and row[hot[0]] != 1):
            return "an encoding with more than a single one per category"
        table.append(start + hot[0] if len(hot) else -1)
    if refused:
        table.append(REFUSED)
    return np.asarray(table, dtype=np.intp)


def _unseen(categories: np.ndarray):
    if categories.dtype.kind == "O":
        return UNSEEN_TEXT
    finite = categories[np.isfinite(categories)] if categories.dtype.kind == "f" else categories
    return (finite.max() + 1) if len(finite) else 0


def _input_rows(encoder, feature: int, values: list):
    """Rows as the encoder was fitted on them (a DataFrame with its columns, or an array) where
    `feature` takes each of `values` and every other feature its first category."""
    categories = encoder.categories_
    columns = []
    for j, learned in enumerate(categories):
        column = values if j == feature else [learned[0]] * len(values)
        columns.append(np.asarray(column, dtype=object if learned.dtype.kind == "O" else learned.dtype))
    names = fitted_names(encoder)
    if names is None:
        kind = object if any(column.dtype.kind == "O" for column in columns) else np.float64
        return np.column_stack([column.astype(kind) for column in columns])
    import pandas as pd

    return pd.DataFrame({name: pd.Series(column, dtype=column.dtype) for name, column in zip(names, columns)})


def _transformed(encoder, rows):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown categories encoded as zeros, as asked
        try:
            out = encoder.transform(rows)
        except ValueError as exc:
            return f"{type(exc).__name__}: {exc}"
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    return out.astype(np.float64)
