"""Which columns feed a model, and feature-store records → model instances.

`input_columns` is the one rule for every source of records (predict by id, Pub/Sub batches,
bulk scoring of a file or of the store): a text model reads the text column; a model fitted
with feature names reads those names; a model fitted on a bare array reads the source's
feature columns in their order, when their count is the one it was fitted with.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

from mlapi.errors import InvalidInput
from mlapi.serving.model import TEXT, ServedModel


class InputColumns(NamedTuple):  # a tuple: built per record on the by-id path, it must be cheap
    names: tuple[str, ...]  # the columns that feed the model, in the order it takes them
    text: bool              # one text column, rather than numeric features
    by_name: bool           # fitted with feature names: the model takes them as named columns


def input_columns(model: ServedModel, text_column: str, source_columns: Callable[[], Sequence[str]],
                  source: str) -> InputColumns:
    """The columns that feed `model`. `source_columns()` lists the source's feature columns
    (a file's header without its id, the store's feature columns); it is called only for a
    model fitted without names. `source` names the source in the error ("the input")."""
    if model.input_kind == TEXT:
        return InputColumns((text_column,), True, False)  # (names, text, by_name)
    if model.feature_names is not None:
        return InputColumns(tuple(model.feature_names), False, True)
    names = tuple(source_columns())
    if model.n_features is not None and len(names) != model.n_features:
        raise InvalidInput(f"model {model.name} was fitted without feature names and expects {model.n_features} "
                           f"feature columns; {source} has {len(names)}: {list(names)}; give it exactly "
                           f"{model.n_features} feature columns, in the order the model was trained on")
    return InputColumns(names, False, False)


def record_to_instance(model: ServedModel, entity_id: str, record: dict, text_column: str,
                       feature_columns: Callable[[], list[str]]) -> tuple[Any, Any]:
    """(instance for the model, the `data` to show) for one store record. A NULL feature is a
    missing value, as a null in a request body is: it reaches the model (NaN), so a model that
    takes one (HistGradientBoosting, an imputing Pipeline) answers, and one that cannot answers
    422 naming the record and the column (app/serving/inference.py). A store without a column
    the model needs is a 422 naming what is missing."""
    columns = input_columns(model, text_column, feature_columns, "the store")
    if columns.text:
        text = record.get(text_column)
        if not isinstance(text, str):
            raise InvalidInput(f"record {entity_id} has no text in column {text_column!r}, which model "
                               f"{model.name} needs; store the record's text there (`mlapi features add`), or "
                               f"send the text itself to POST /models/{model.name}/predict",
                               id=entity_id, missing=[text_column])
        return text, text
    missing = [name for name in columns.names if name not in record]
    if missing:
        raise InvalidInput(f"record {entity_id} is missing features {missing} that model {model.name} needs: the "
                           f"store has no such column; store a value for each (`mlapi features add` adds the "
                           f"column), or send the instance itself to POST /models/{model.name}/predict",
                           id=entity_id, missing=missing)
    data = {name: record[name] for name in columns.names}
    return (data if columns.by_name else [record[name] for name in columns.names]), data
