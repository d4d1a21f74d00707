"""X-Cache and X-Cache-Hits: how the prediction cache served an answer, on the routes that
consult it (CACHE_ROUTES).

`X-Cache: HIT` when every instance came from the cache, else `MISS` (a partial hit included:
the model ran); `X-Cache-Hits: <hits>/<instances>` says how many. A route that does not
consult the cache sends neither. A route's handler returns its answer with them
(`with_cache_headers`); the fast path and Flask send an answer's `headers`.
"""
from __future__ import annotations

from typing import Any


class AnswerWithHeaders(dict):
    """A JSON answer (encoded, and call-logged, as the dict it is) and headers of its own."""

    __slots__ = ("headers",)


def with_cache_headers(body: dict, cached: Any) -> dict:
    """`body`, with the headers when the cache was consulted (`cached`: inference.Cached)."""
    if not cached.looked_up:
        return body
    answer = AnswerWithHeaders(body)
    answer.headers = [("X-Cache", "HIT" if cached.from_cache else "MISS"),
                      ("X-Cache-Hits", f"{cached.hits}/{cached.looked_up}")]
    return answer
