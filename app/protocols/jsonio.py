"""JSON in and out for every codec: orjson (several times the stdlib's speed on number-heavy
bodies), with the request-body rules every JSON route shares.

NaN, Infinity and -Infinity are accepted as floats. They are not JSON, but Python's own
json.dumps writes them for a float NaN or infinity (the usual way a missing value leaves a
DataFrame), and so do clients built on it; `requests.post(url, json=...)` refuses them
(InvalidJSONError), `data=json.dumps(...)` sends them. orjson refuses them, so a body is
read by orjson first, at its full speed, and only a body orjson refuses is read again by the
standard library's parser, which takes those three literals (see `_lenient_loads` for what it
is kept from accepting beyond them). A body that is still malformed gets a 400 that says
where, and what to send instead.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

from mlapi.errors import BadRequest

# numpy arrays and scalars as JSON numbers; non-str keys (class labels) as strings.
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

SEND = 'send one JSON object, e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}'

# What people write for a missing or infinite value that JSON (even lenient) has no word for:
# numpy's and pandas' spellings, Python's None.
_NAN_LIKE = re.compile(r"-?(nan|inf(inity)?|none|na|n/a)\b", re.IGNORECASE)
# A \uD800-\uDFFF escape: the standard library decodes a lone one into a string orjson can't write.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_INT64_MIN, _UINT64_MAX = -(2 ** 63), 2 ** 64 - 1


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=DUMP_OPTIONS)


def parse_json(raw: bytes) -> dict:
    """A request body that must be a JSON object; 400 for anything else."""
    if not raw:
        raise BadRequest(f"the request body is empty; {SEND}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = _lenient_loads(raw)
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {_kind(body)}; {SEND}")
    return body


def _lenient_loads(raw: bytes) -> Any:
    """JSON plus NaN, Infinity and -Infinity, and nothing else orjson refuses: not another
    encoding than UTF-8, nor lone surrogates (which could not be written back), nor nesting
    deeper than orjson's limit; integers beyond 64 bits become floats, as with orjson."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"malformed JSON: the body is not UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    try:
        body = json.loads(text, parse_int=_int_like_orjson)
    except json.JSONDecodeError as exc:
        raise BadRequest(malformed_message(text, exc)) from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply; send a JSON object of at most 1024 levels") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise BadRequest("malformed JSON: a \\u escape is a lone surrogate, not a character; "
                             "send valid UTF-8 text") from None
    return body


def _int_like_orjson(digits: str) -> int | float:
    # More digits than any 64-bit integer has (20 with a sign) is a float without int(),
    # which refuses more than 4300 digits (a ValueError, not a malformed body).
    if len(digits) > 20:
        return float(digits)
    value = int(digits)
    return value if _INT64_MIN <= value <= _UINT64_MAX else float(digits)


def malformed_message(text: str, exc: json.JSONDecodeError) -> str:
    """Where the JSON breaks (line, column, the text there), and what to send instead; a
    NaN-like word there that JSON does not know gets the spelling that works."""
    near = text[exc.pos:exc.pos + 24].split("\n", 1)[0]
    message = (f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg[0].lower()}{exc.msg[1:]}"
               f"{f' near {near!r}' if near else ' (the body ends there)'}; {SEND}")
    word = _NAN_LIKE.match(text, exc.pos)
    if word:
        message += (f". {word.group(0)!r} is not a JSON value: write a missing value as null or NaN, "
                    "infinities as Infinity or -Infinity (what Python's json.dumps writes)")
    return message


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "true or false" if isinstance(value, bool) else "a number"
