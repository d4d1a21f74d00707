"""One fitted transformer as plain numpy code over a request's columns: the compiled path's steps.

Each supported step becomes a `Step`: a function from a list of 1-D column arrays (one per
input column, as the step would see them) to a 2-D array, computed from the step's fitted
attributes exactly as its own transform() computes after validation. Input that validation
would convert, warn about or refuse (infinity, a string where a number belongs, an unknown
category under handle_unknown="error", a NaN an indicator never saw) raises Defer: the whole
request then goes to scikit-learn, which refuses or converts it in its own words.

Encoders are tables the encoder filled itself: at compile time every learned category (and
one unseen value) goes through the encoder's own transform, and each category's output is
read back. drop=, infrequent categories and handle_unknown are then what the encoder did,
not a re-implementation of them.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import numpy as np

from mlapi.serving.shortcuts.linear import scaler_transform
from mlapi.serving.shortcuts.sklearn_code import owner_mismatch

# The step classes compiled here, by module path; a subclass that overrides transform is not.
STANDARD_SCALER = "sklearn.preprocessing._data.StandardScaler"
MIN_MAX_SCALER = "sklearn.preprocessing._data.MinMaxScaler"
ONE_HOT = "sklearn.preprocessing._encoders.OneHotEncoder"
ORDINAL = "sklearn.preprocessing._encoders.OrdinalEncoder"
SIMPLE_IMPUTER = "sklearn.impute._base.SimpleImputer"
FUNCTION_TRANSFORMER = "sklearn.preprocessing._function_transformer.FunctionTransformer"


class Defer(Exception):
    """This input is scikit-learn's to handle (convert, warn about or refuse)."""


class Step(NamedTuple):
    """A compiled transformer: `transform(columns) -> 2-D array`; `numeric`: its output is float64."""

    transform: Callable[[list], np.ndarray]
    numeric: bool = True


def is_missing(value) -> bool:
    """scikit-learn's is_scalar_nan, or None: what its encoders and imputers count as missing."""
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value))


def float_matrix(columns: list, finite: bool = True) -> np.ndarray:
    """The columns as one new C-ordered float64 matrix, what check_array(dtype=float64,
    allow-nan) makes of numeric columns; Defer for anything else (text, an infinity when
    `finite`), which validation converts or refuses."""
    rows = len(columns[0]) if columns else 0
    matrix = np.empty((rows, len(columns)), dtype=FLOAT64)
    for j, column in enumerate(columns):
        # `is` first: numpy's own float64 dtype, the request's; an equal one (a column joblib
        # loaded from the model's fitted attributes holds a dtype object of its own) is as good.
        dtype = column.dtype
        if dtype is not FLOAT64 and dtype != FLOAT64 and dtype.kind not in "iu":
            raise Defer
        matrix[:, j] = column
    # (Not a sum's finiteness first: a sum of finite values may overflow, with numpy's
    # RuntimeWarning on the request's path, and np.errstate costs what the sum saved.)
    if finite and np.isinf(matrix).any():
        raise Defer
    return matrix


FLOAT64 = np.dtype(np.float64)


def wraps_output(step) -> bool:
    """set_output(transform="pandas" / "polars"): the output is a DataFrame, not our matrix.
    ("default", which ColumnTransformer sets on the passthrough it makes, changes nothing.)"""
    config = getattr(step, "_sklearn_output_config", None) or {}
    return config.get("transform", "default") != "default"


def compile_step(step) -> Step | str:
    """The compiled form of one fitted transformer, or why it has none."""
    if isinstance(step, str) and step == "passthrough":
        return Step(lambda columns: float_matrix(columns, finite=False))
    if wraps_output(step):
        return "set_output is configured: scikit-learn wraps the output"
    for owner, compile_kind in _COMPILERS:
        if owner_mismatch(step, "transform", owner) is None:
            return compile_kind(step)
    return f"no compiled form for {type(step).__name__}"


def _standard_scaler(scaler) -> Step | str:
    compute = scaler_transform(scaler)
    if isinstance(compute, str):
        return compute
    # float_matrix's new matrix is validation's copy: the scaler may work in it.
    return Step(lambda columns: compute(float_matrix(columns), copy=False))


def _min_max_scaler(scaler) -> Step | str:
    if getattr(scaler, "copy", True) is not True:
        return "copy=False transforms the caller's array in place: left to scikit-learn"
    scale, low = scaler.scale_, scaler.min_
    clip = tuple(np.float64(bound) for bound in scaler.feature_range) if scaler.clip else None

    def transform(columns):
        X = float_matrix(columns)
        X *= scale
        X += low
        if clip is not None:
            np.clip(X, clip[0], clip[1], out=X)
        return X
    return Step(transform)


def _function_transformer(function) -> Step | str:
    if function.func is not None or function.kw_args:
        return "a FunctionTransformer with a function of its own"
    # validate=True checks the input as check_array does by default: numbers, all finite.
    strict = bool(function.validate)

    def identity(columns):
        X = float_matrix(columns, finite=strict)
        if strict and np.isnan(X).any():
            raise Defer
        return X
    return Step(identity)


def _simple_imputer(imputer) -> Step | str:
    if not is_missing(imputer.missing_values) or imputer.missing_values is None:
        return f"missing_values={imputer.missing_values!r}: only NaN is compiled"
    statistics = imputer.statistics_
    fill_dtype = getattr(imputer, "_fill_dtype", statistics.dtype)
    if imputer.keep_empty_features:
        kept, fills = None, statistics.astype(fill_dtype, copy=False)
    else:  # a feature without any observed value at fit (NaN statistic) is left out
        valid = ~np.array([is_missing(value) for value in statistics], dtype=bool)
        kept = None if valid.all() else np.flatnonzero(valid)
        fills = statistics[valid].astype(fill_dtype, copy=False)
    indicator = _indicator(imputer)
    if isinstance(indicator, str):
        return indicator
    text = np.dtype(fill_dtype).kind == "O"

    def transform(columns):
        if text:  # fitted on text: an object matrix, missing where a value is not itself (NaN)
            if any(column.dtype.kind != "O" for column in columns):
                raise Defer
            X = np.empty((len(columns[0]), len(columns)), dtype=object)
            for j, column in enumerate(columns):
                X[:, j] = column
            try:
                missing = np.asarray(X != X, dtype=bool)
            except TypeError:  # a value that cannot say whether it equals itself (pd.NA)
                raise Defer from None
        else:
            X = float_matrix(columns)
            missing = np.isnan(X)
        marks = None if indicator is None else indicator(missing)
        if kept is not None:
            X, held = X[:, kept], missing[:, kept]
        else:
            held = missing
        if held.any():
            X = np.where(held, fills, X) if not text else _fill_objects(X, held, fills)
        return X if marks is None else np.hstack((X, marks))
    return Step(transform, numeric=not text)


def _fill_objects(X: np.ndarray, missing: np.ndarray, fills: np.ndarray) -> np.ndarray:
    X = X.copy()
    rows, columns = np.nonzero(missing)
    X[rows, columns] = fills[columns]
    return X


def _indicator(imputer):
    """add_indicator's columns from the missing mask, or None without it."""
    indicator = getattr(imputer, "indicator_", None)
    if not imputer.add_indicator or indicator is None:
        return None
    if indicator.sparse is True:
        return "add_indicator with a sparse indicator"
    if indicator.features == "all":
        return lambda missing: missing
    features = np.asarray(indicator.features_)
    others = np.setdiff1d(np.arange(imputer.n_features_in_), features)
    refuse_new = bool(indicator.error_on_new)

    def marks(missing):
        if refuse_new and missing[:, others].any():  # scikit-learn refuses NaN it never saw there
            raise Defer
        return missing[:, features]
    return marks


def _compile_encoder(encoder) -> Step | str:
    from mlapi.serving.shortcuts.compiled_encoders import encoder_tables

    tables = encoder_tables(encoder)
    if isinstance(tables, str):
        return tables
    lookups, outputs, width, one_hot = tables
    if one_hot:
        # A category with no column of its own (-1: dropped, or unknown and ignored) gets a
        # spare column past the encoder's, cut off at the end: no mask to build a request.
        outputs = [np.where(table == -1, width, table) for table in outputs]
    # Whether a table holds a refusal at all, known once (checking each request's rows cost ~2 µs).
    refusable = [bool((table == REFUSED).any() if one_hot else np.isinf(table).any()) for table in outputs]

    def transform(columns):
        n = len(columns[0])
        out = np.zeros((n, width + 1 if one_hot else width), dtype=np.float64)
        for j, (lookup, table, column) in enumerate(zip(lookups, outputs, columns)):
            found = table[lookup(column)]
            if refusable[j] and (found == REFUSED if one_hot else np.isinf(found)).any():
                raise Defer  # (+inf is REFUSED in the ordinal tables)
            if one_hot:
                out[np.arange(n), found] = 1.0
            else:
                out[:, j] = found
        return out[:, :width] if one_hot else out
    return Step(transform)


# A table entry for input the encoder refuses (handle_unknown="error"): the request is deferred.
REFUSED = -2

_COMPILERS = (
    (STANDARD_SCALER, _standard_scaler),
    (MIN_MAX_SCALER, _min_max_scaler),
    (ONE_HOT, _compile_encoder),
    (ORDINAL, _compile_encoder),
    (SIMPLE_IMPUTER, _simple_imputer),
    (FUNCTION_TRANSFORMER, _function_transformer),
)
