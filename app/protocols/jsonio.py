"""JSON in and out for every codec: orjson (several times the stdlib's speed on number-heavy
bodies), with the request-body rules every JSON route shares."""
from __future__ import annotations

from typing import Any

import orjson

from mlapi.errors import BadRequest

# numpy arrays and scalars as JSON numbers; non-str keys (class labels) as strings.
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=DUMP_OPTIONS)


def parse_json(raw: bytes) -> dict:
    """A request body that must be a JSON object; 400 for anything else."""
    if not raw:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
