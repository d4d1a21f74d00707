"""Data files that bulk scoring reads and writes and `mlapi features import` reads: which
format a file is in (by its extension, one mapping for both), and JSON lines parsed row by row.

    .csv               CSV with a header row
    .parquet, .pq      Parquet
    .jsonl, .ndjson,   JSON lines: one JSON object per line. A `.json` file is read the same
    .json              way (one object per line), not as one JSON array: a stream of lines
                       can be read in bounded memory, an array cannot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import orjson

from mlapi.errors import InvalidInput

CSV, PARQUET, JSONL = "csv", "parquet", "jsonl"
FORMATS = {".csv": CSV, ".parquet": PARQUET, ".pq": PARQUET, ".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL}


def file_format(path) -> str:
    """"csv", "parquet" or "jsonl", by the file's extension; 422 for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .parquet (.pq) "
                           f"or .jsonl (.ndjson, .json: one JSON object per line)")
    return FORMATS[suffix]


def json_lines(path) -> Iterator[tuple[int, dict | str]]:
    """(line number, object) per non-blank line; a str instead of the object says why that
    line is not one (callers either stop there or report it and go on)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, f"not JSON: {exc}"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"
