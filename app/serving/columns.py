"""What each input column of a DataFrame-fitted model takes: a number, or a string category.

scikit-learn keeps no dtypes of the frame a model was fitted on, but an encoder keeps what it
learned: a OneHotEncoder / OrdinalEncoder / TargetEncoder (alone, inside a ColumnTransformer,
or inside a Pipeline there) has `categories_`, one array per column it encodes. A column whose
categories are strings takes strings, and only those. A column a text vectorizer reads (TF-IDF
on a `description` column) takes free text: a string, with no categories. Every other column
takes a number.

This is the one rule: request rows are built with it (app/serving/typed_rows.py keeps a string
column as text, so "01234" stays "01234"), rejected input is explained with it
(app/serving/input_faults.py), and a model's card and schema can list it.
"""
from __future__ import annotations

from typing import Any

from mlapi.serving.shortcuts.sklearn_code import fitted_names

NUMBER, INTEGER, STRING, BOOLEAN = "number", "integer", "string", "boolean"
NOT_ENCODED = object()  # a column no encoder or vectorizer reads: a number
FREE_TEXT = None        # what _categories gives a column a text vectorizer reads: no categories


class _Open(list):
    """Categories of an encoder that also takes other values (handle_unknown="ignore",
    "infrequent_if_exist", "use_encoded_value"; a TargetEncoder): known, not the only ones."""


def column_types(estimator) -> list[dict[str, Any]] | None:
    """[{"name", "type", "categories"?}] per fitted column in order, or None for a model fitted
    on a bare array. "categories" (what an encoder learned, missing values left out) is given
    for every encoded column; "type" is "string" when those categories are strings, and for a
    column of free text (no categories)."""
    names = fitted_names(estimator)
    if names is None:
        return None
    learned = _categories(estimator, names)
    types = []
    for name in names:
        categories = learned.get(name, NOT_ENCODED)
        if categories is NOT_ENCODED:
            types.append({"name": name, "type": NUMBER})
        elif categories is FREE_TEXT:
            types.append({"name": name, "type": STRING})
        else:
            column = {"name": name, "type": _kind(categories), "categories": list(categories)}
            if isinstance(categories, _Open):
                column["accepts_unknown"] = True
            types.append(column)
    return types


def string_columns(estimator) -> dict[str, list | None]:
    """{column name: its known string categories, or None for free text} for the columns that
    take strings."""
    return {column["name"]: column.get("categories") for column in column_types(estimator) or ()
            if column["type"] == STRING}


def _kind(categories: list) -> str:
    if any(isinstance(value, str) for value in categories):
        return STRING
    if categories and all(isinstance(value, bool) for value in categories):
        return BOOLEAN
    if categories and all(isinstance(value, int) for value in categories):
        return INTEGER
    return NUMBER


def _categories(step, names: list[str]) -> dict[str, list | None]:
    """{input column name: learned categories, or FREE_TEXT} for the columns `step` (fed
    `names`) encodes or reads as text."""
    if step is None or isinstance(step, str):  # "drop" / "passthrough"
        return {}
    if hasattr(step, "build_analyzer") and len(names) == 1:  # Count/Tfidf/Hashing vectorizer: one text column
        return {names[0]: FREE_TEXT}
    learned = getattr(step, "categories_", None)
    if isinstance(learned, list) and len(learned) == len(names):
        kind = _Open if _accepts_unknown(step) else list
        return {name: kind(_plain(values)) for name, values in zip(names, learned)}
    if hasattr(step, "transformers_"):  # ColumnTransformer: each transformer sees some columns
        found: dict[str, list] = {}
        for name, transformer, columns in step.transformers_:
            indices = _input_indices(step, name, columns, names)
            if indices:
                found.update(_categories(transformer, [names[i] for i in indices]))
        return found
    steps = getattr(step, "steps", None)
    if steps:  # a Pipeline: its first steps pass the columns on (an imputer) until one encodes
        for _, inner in steps:
            found = _categories(inner, names)
            if found or hasattr(inner, "transformers_") or hasattr(inner, "categories_"):
                return found
    return {}


def _accepts_unknown(encoder) -> bool:
    if hasattr(encoder, "target_mean_"):  # TargetEncoder: an unseen category gets the target's mean
        return True
    return getattr(encoder, "handle_unknown", "error") in ("ignore", "infrequent_if_exist", "use_encoded_value")


def _input_indices(transformer, name: str, columns, names: list[str]) -> list[int]:
    """The positions of the input columns a fitted ColumnTransformer gave to transformer `name`."""
    resolved = getattr(transformer, "_transformer_to_input_indices", None)  # scikit-learn >= 1.2
    if isinstance(resolved, dict) and name in resolved:
        return [int(i) for i in resolved[name]]
    if isinstance(columns, str):
        columns = [columns]
    try:
        return [names.index(c) if isinstance(c, str) else int(c) for c in columns]
    except (TypeError, ValueError):  # a slice, a mask, a callable: not worth guessing
        return []


def _plain(values) -> list:
    """An encoder's categories as plain Python values, missing values (None, NaN) left out."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [value for value in items if value is not None and value == value]
