"""Feature-store records → model instances: what a model takes from a stored row.

Text models take the text column; tabular models take their fitted feature names from the
record's columns (a model fitted without names takes the store's feature columns in table
order, when their count matches). A record missing something the model needs is a 422.
"""
from __future__ import annotations

from typing import Any, Callable

from mlapi.errors import InvalidInput
from mlapi.serving.model import TEXT, ServedModel


def record_to_instance(model: ServedModel, entity_id: str, record: dict, text_column: str,
                       feature_columns: Callable[[], list[str]]) -> tuple[Any, Any]:
    """(instance for the model, the `data` to show) for one record."""
    if model.input_kind == TEXT:
        text = record.get(text_column)
        if not isinstance(text, str):
            raise InvalidInput(f"record {entity_id} has no text in column {text_column!r}, which model "
                               f"{model.name} needs", id=entity_id, missing=[text_column])
        return text, text
    names = model.feature_names
    if names is None:
        names = feature_columns()
        if model.n_features is not None and len(names) != model.n_features:
            raise InvalidInput(f"model {model.name} was fitted without feature names and expects "
                               f"{model.n_features} features; the store has {len(names)} feature columns {names}")
    missing = [name for name in names if record.get(name) is None]
    if missing:
        raise InvalidInput(f"record {entity_id} is missing features {missing} that model {model.name} needs",
                           id=entity_id, missing=missing)
    data = {name: record[name] for name in names}
    return (data if model.feature_names is not None else [record[name] for name in names]), data
