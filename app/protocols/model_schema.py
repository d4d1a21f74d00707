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
# A longer list of categories is not an enum (a schema of thousands of values helps no one);
# the description says so, and `mlapi card` lists them all.
ENUM_LIMIT = 50


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
    row: dict[str, Any] = {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                           "description": f"The feature values in training order. {MISSING}"}
    if n:
        row.update(minItems=n, maxItems=n)
    return row


def _value_schema(feature: dict) -> dict:
    """A value of the column, or null (a missing value, which the server takes). Its categories
    are an enum only when they are the only values the model takes and there are few enough."""
    value: dict[str, Any] = {"type": feature.get("type") or "number"}
    categories = feature.get("categories")
    if categories:
        shown = ", ".join(repr(c) for c in categories[:ENUM_LIMIT])
        if feature.get("accepts_unknown"):
            value["description"] = f"Known categories: {shown}; other values are taken too."
        elif len(categories) > ENUM_LIMIT:
            value["description"] = (f"One of {len(categories)} categories (too many to list here; "
                                    f"`mlapi card` lists them), e.g. {shown}.")
        else:
            value["enum"] = list(categories)
        value["examples"] = [categories[0]]
    return {"anyOf": [value, {"type": "null"}]}


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
