"""A served model's own request schema for the OpenAPI document: its rows (feature names and
types, categories) and an example, from its card (serving/card.py).

The generic PredictBody leaves rows open (any JSON); for a model that knows its features, the
document shows /models/<name>/predict with rows of exactly those features, so Swagger UI's
"Try it out" starts from a request that model answers.
"""
from __future__ import annotations

import copy
from typing import Any

ROW_KEYS = ("instances", "inputs")

MISSING = "A missing value: null (or NaN)."


def instance_schema(card: dict) -> dict:
    """One instance as the model takes it: a text; an object keyed by feature name or a list in
    training order; a list of numbers when the model has no feature names."""
    if card.get("input_kind") == "text":
        return {"type": "string", "description": "One text."}
    features = card.get("features")
    if features:
        values = [_value_schema(feature) for feature in features]
        names = [feature["name"] for feature in features]
        by_name = {"type": "object", "properties": dict(zip(names, values)), "required": names,
                   "additionalProperties": False, "description": f"Keyed by feature name. {MISSING}"}
        return {"anyOf": [by_name, _list_of(values)]}
    n = card.get("n_features")
    row: dict[str, Any] = {"type": "array", "items": {"type": "number"},
                           "description": f"The feature values in training order. {MISSING}"}
    if n:
        row.update(minItems=n, maxItems=n)
    return row


def _value_schema(feature: dict) -> dict:
    schema: dict[str, Any] = {"type": feature.get("type") or "number"}
    if feature.get("categories"):
        schema["enum"] = list(feature["categories"])
    return schema


def _list_of(values: list[dict]) -> dict:
    return {"type": "array", "prefixItems": values, "minItems": len(values), "maxItems": len(values),
            "description": f"The feature values in training order. {MISSING}"}


def _split_of(names: list[str], n: int | None) -> dict:
    """dataframe_split with this model's columns: its feature names in any order, each row as
    many values; a model without feature names takes rows in training order and no columns."""
    width = len(names) or n
    row: dict[str, Any] = {"type": "array"}
    if width:
        row.update(minItems=width, maxItems=width)
    columns: dict[str, Any] = {"type": "null"}
    if names:
        columns = {"type": "array", "items": {"enum": names}, "minItems": len(names), "maxItems": len(names),
                   "uniqueItems": True, "examples": [names]}
    return {"type": "object", "description": 'pandas\' `DataFrame.to_dict(orient="split")`; `index` is ignored.',
            "properties": {"columns": columns, "data": {"type": "array", "minItems": 1, "items": row}},
            "required": ["columns", "data"] if names else ["data"]}


def predict_body(generic: dict, card: dict) -> tuple[dict, dict | None]:
    """(request schema, example body) of the model's predict routes: the generic PredictBody
    schema (the one the server validates with) with this model's rows in it."""
    schema = copy.deepcopy(generic)
    schema.pop("title", None)
    row = instance_schema(card)
    example = card.get("example")
    properties = schema.get("properties", {})
    for key in ROW_KEYS:
        if key in properties:
            described = {k: v for k, v in properties[key].items() if k not in ("examples", "items")}
            properties[key] = {**described, "type": "array", "minItems": 1, "items": row}
            if example is not None:
                properties[key]["examples"] = [[example]]
    names = [feature["name"] for feature in card.get("features") or ()]
    if names and "dataframe_records" in properties:
        by_name = next(member for member in row["anyOf"] if member["type"] == "object")
        properties["dataframe_records"] = {**properties["dataframe_records"], "items": by_name,
                                           "examples": [[example]]}
    if "dataframe_split" in properties and card.get("input_kind") != "text":
        properties["dataframe_split"] = _split_of(names, card.get("n_features"))
    schema["description"] = (f"Instances for model {card.get('name')}:{card.get('version')}. "
                             + (schema.get("description") or ""))
    return schema, (None if example is None else {"instances": [example]})
