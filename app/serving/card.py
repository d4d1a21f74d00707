"""A served model's card: what it is, what it takes and which code computes it, as one dict.

`mlapi card` prints it and the OpenAPI document builds each model's input schema from it, so
its keys are an interface:

    name, version, sha256, source, format ("joblib" or "skops"; None in memory),
    task ("classification", "regression", "other"), input_kind ("tabular" or "text"),
    features: [{"name", "type": "number"|"integer"|"string"|"boolean", "categories"?,
                "accepts_unknown"? (true: its encoder takes other values too)}] or None,
    n_features, classes, compute_path (one line: which code computes each output),
    example: one instance the native protocol accepts, or None.

What a column takes comes from app/serving/columns.py, the rule requests are built with too.
"""
from __future__ import annotations

from mlapi.serving.columns import STRING, column_types
from mlapi.serving.loading import describe_compute_path
from mlapi.serving.model import TEXT, ServedModel

# The example instance of a text model.
EXAMPLE_TEXT = "example text"


def model_card(model: ServedModel) -> dict:
    """The card of a loaded model (see the module docstring for its keys)."""
    text = model.input_kind == TEXT
    features = None if text else column_types(model.estimator)
    return {
        "name": model.name,
        "version": model.version,
        "sha256": model.metadata.get("sha256"),
        # A model built in memory (tests, embedding) has no artifact to name.
        "source": model.metadata.get("uri") or "(in memory)",
        "format": model.metadata.get("format"),
        "task": model.task,
        "input_kind": model.input_kind,
        "features": features,
        "n_features": None if text else model.n_features,
        "classes": model.classes,
        "compute_path": describe_compute_path(model.compute_path),
        "example": _example(model, features),
    }


def _example(model: ServedModel, features: list[dict] | None):
    """One instance the native protocol accepts: an object keyed by feature name, a list in
    training order for a model fitted without names, a text for a text model; None when the
    model does not say how many features it takes."""
    if model.input_kind == TEXT:
        return EXAMPLE_TEXT
    if features is not None:
        return {column["name"]: _example_value(column) for column in features}
    return None if model.n_features is None else [0.0] * model.n_features


def _example_value(column: dict):
    if column.get("categories"):  # a category the encoder learnt is accepted whatever its handle_unknown says
        return column["categories"][0]
    return EXAMPLE_TEXT if column["type"] == STRING else 0.0  # free text, read by a vectorizer
