"""Request bodies checked against their declared types, with 400s that say what to send.

Each JSON route's body is declared once, as a msgspec Struct (protocols/bodies.py). That one
declaration is both the check — `msgspec.convert` validates a parsed body against it, in C —
and the OpenAPI document's request schema (`msgspec.json.schema_components`, JSON Schema
2020-12, as OpenAPI 3.1 takes it). An error message is read off the same JSON Schema the
document shows: what the field must be, and what the request had there.

What a Struct cannot say by its fields — exactly one of several keys, or the first of several
— is its `alternatives` ClassVar, checked here and written into the document as `oneOf` /
`anyOf` (protocols/openapi.py), again from the one declaration.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Generic, NamedTuple, TypeVar

import msgspec
from msgspec import UNSET

from mlapi.errors import BadRequest

T = TypeVar("T", bound=msgspec.Struct)
R = TypeVar("R")


class Alternatives(NamedTuple):
    """Keys of a body of which exactly one (or, when not `exactly_one`, at least one: the
    first present wins) must be given, and the message that says so when they are not."""

    keys: tuple[str, ...]
    exactly_one: bool
    message: str


def alternatives_of(schema: type) -> Alternatives | None:
    return getattr(schema, "alternatives", None)


def given(struct: msgspec.Struct, keys: tuple[str, ...]) -> list[str]:
    """Which of `keys` the body had (a field left at UNSET was not sent)."""
    return [key for key in keys if getattr(struct, key) is not UNSET]


def first_given(struct: msgspec.Struct, keys: tuple[str, ...]) -> tuple[str, Any]:
    """The first of `keys` the body had, and its value (the decoder checked there is one)."""
    for key in keys:
        value = getattr(struct, key)
        if value is not UNSET:
            return key, value
    raise LookupError(f"none of {keys} was given")


def read(body: Any, schema: type[T], prefix: str = "") -> T:
    """`body` (parsed JSON) as `schema`, or a BadRequest saying what to send instead."""
    return _checked(body, schema, alternatives_of(schema), prefix)


def _checked(body: Any, schema: type[T], rule: Alternatives | None, prefix: str) -> T:
    """`read`, with the schema's alternatives rule looked up once by the caller (BodyDecoder
    does it once per route, not per request)."""
    try:
        struct = msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        raise BadRequest(prefix + explain(str(exc), body, schema)) from None
    if rule is not None:
        _check_alternatives(struct, rule)
    return struct


def _check_alternatives(struct: msgspec.Struct, rule: Alternatives) -> None:
    present = given(struct, rule.keys)
    if not present or (rule.exactly_one and len(present) > 1):
        # A whole sentence of its own: no prefix.
        raise BadRequest(rule.message.replace("{found}", str(present or "none")))


class BodyDecoder(Generic[T, R]):
    """A codec's decoder of one request body: `schema` declares the body (the check and the
    OpenAPI schema of every route that decodes with it), `finish` turns the checked body into
    the codec's request value. Called with the parsed JSON, on every request."""

    def __init__(self, schema: type[T], finish: Callable[[T], R], prefix: str = ""):
        self.schema = schema
        self.finish = finish
        self.prefix = prefix
        self.rule = alternatives_of(schema)
        functools.update_wrapper(self, finish)

    def __call__(self, body: Any) -> R:
        return self.finish(_checked(body, self.schema, self.rule, self.prefix))


def decodes(schema: type[T], prefix: str = "") -> Callable[[Callable[[T], R]], BodyDecoder[T, R]]:
    """Decorator: `finish(checked body)` becomes a BodyDecoder of `schema`."""
    return lambda finish: BodyDecoder(schema, finish, prefix)


# ---- messages, read off the JSON Schema ---------------------------------------------------
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_STEP = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def explain(error: str, body: Any, schema: type) -> str:
    """msgspec's "Expected `bool | null`, got `str` - at `$.parameters.probabilities`" →
    '"parameters.probabilities" must be true or false, got "yes"'."""
    at = _AT.search(error)
    steps = [int(m["index"]) if m["index"] else m["key"] for m in _STEP.finditer(at["path"])] if at else []
    missing = _MISSING.search(error)
    if missing:
        where = f'"{_dotted(steps)}"' if steps else "the body"
        field = missing["field"]
        examples = _node_at(json_schema(schema), [*steps, field]).get("examples")
        example = f", e.g. {_encode({field: examples[0]})}" if examples else ""
        return f'{where} needs "{field}"{example}'
    # Report the named field (not the list item inside it) with what it must be, and the value
    # that broke the rule, where it was.
    named = len(steps)
    while named and isinstance(steps[named - 1], int):
        named -= 1
    node = _node_at(json_schema(schema), steps[:named])
    value, found = _value_at(body, steps)
    shown = _show(value) if found else "something else"
    where = f" at {_dotted(steps)}" if named < len(steps) else ""
    field = f'"{_dotted(steps[:named])}"' if named else "the body"
    return f"{field} must be {phrase(node)}, got {shown}{where}"


@functools.cache
def json_schema(schema: type) -> dict:
    """The type's JSON Schema with its own definitions (what the OpenAPI document holds too)."""
    return msgspec.json.schema(schema)


def _node_at(root: dict, steps: list) -> dict:
    node = root
    for step in steps:
        node = _resolve(root, node)
        if "anyOf" in node:  # Parameters | None and the like: follow the member that can hold a key
            node = next((_resolve(root, n) for n in node["anyOf"] if n.get("type") != "null"), node)
        properties = node.get("properties", {})
        node = properties.get(step, {}) if isinstance(step, str) else node.get("items", {})
    resolved = _resolve(root, node)
    return {**resolved, "$defs": root.get("$defs", {})}


def _resolve(root: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref:  # the definition, with what the field adds beside the reference (its examples)
        beside = {key: value for key, value in node.items() if key != "$ref"}
        return {**root.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {}), **beside}
    return node


def phrase(node: dict) -> str:
    """What a JSON Schema node accepts, in words: "a non-empty list of strings"."""
    root = {"$defs": node.get("$defs", {})}
    node = _resolve(root, node)
    if isinstance(node.get("type"), list):  # {"type": ["boolean", "null"]}: the same as anyOf
        node = {**{k: v for k, v in node.items() if k != "type"}, "anyOf": [{"type": t} for t in node["type"]]}
    if "anyOf" in node:
        members = [_resolve(root, n) for n in node["anyOf"]]
        words = [phrase({**m, **root}) for m in members if m.get("type") != "null"]
        text = " or ".join(words) + (" or null" if len(words) < len(members) else "")
    elif (kind := node.get("type")) == "array":
        items = _resolve(root, node.get("items", {}))
        text = "a non-empty list" if node.get("minItems") == 1 else "a list"
        of = _plural({**items, **root})
        text += f" of {of}" if of else ""
        text += _bounds(node.get("minItems"), node.get("maxItems"), "items")
    elif kind == "string":
        text = "a non-empty string" if node.get("minLength") == 1 else "a string"
        text += _bounds(node.get("minLength"), node.get("maxLength"), "characters")
    else:
        text = _WORDS.get(kind, "a JSON value")
    examples = node.get("examples")
    if examples:
        text += " such as " + " or ".join(_encode(e) for e in examples[:2])
    return text


_WORDS = {"boolean": "true or false", "integer": "an integer", "number": "a number", "object": "an object"}


def _bounds(low: int | None, high: int | None, unit: str) -> str:
    if low and low > 1:
        return f" of at least {low} {unit}" + (f" and at most {high}" if high is not None else "")
    return f" (at most {high} {unit})" if high is not None else ""


_PLURALS = {"boolean": "true/false values", "string": "strings", "integer": "integers", "number": "numbers",
            "object": "objects", "array": "lists"}


def _plural(node: dict) -> str:
    if "anyOf" in node:
        root = {"$defs": node.get("$defs", {})}
        return " or ".join(filter(None, (_plural({**_resolve(root, n), **root}) for n in node["anyOf"])))
    return _PLURALS.get(node.get("type"), "")


def _value_at(body: Any, steps: list) -> tuple[Any, bool]:
    for step in steps:
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return None, False
    return body, True


def _show(value: Any) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"a list of {len(value)} items"
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _dotted(steps: list) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text
