"""Bulk scoring, reading: a file's header → the columns that feed the model (the rule is
serving/records.py's `input_columns`); the file → Arrow tables of exactly `chunk_size` rows,
the id as a string and the model's columns as float64 (or strings, for a text model).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from mlapi.serving.records import input_columns
from mlapi.store.files import CSV, PARQUET, json_lines


@dataclass(frozen=True)
class Layout:
    id_column: str
    columns: tuple[str, ...]  # the model's input columns, in the order it takes them
    text: bool                # one text column rather than numeric features
    by_name: bool             # the model was fitted with these names: it takes a DataFrame


def read_header(path: Path, fmt: str) -> list[str]:
    if fmt == PARQUET:
        return pq.ParquetFile(path).schema_arrow.names
    if fmt == CSV:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    for number, row in json_lines(path):
        return list(_json_row(number, row))
    return []


def layout_for(model: ServedModel, header: list[str], id_column: str, text_column: str) -> Layout:
    if not header:
        raise InvalidInput("the input is empty: no header, no rows")
    if id_column not in header:
        raise InvalidInput(f"the input has no {id_column!r} column (name it with --id-column); it has {header}")
    # Fitted on a bare array: the features are the other columns, in file order.
    columns = input_columns(model, text_column, lambda: [c for c in header if c != id_column], "the input")
    missing = [name for name in columns.names if name not in header]
    if missing and columns.text:
        raise InvalidInput(f"the input has no {text_column!r} column, which text model {model.name} reads "
                           f"(FEATURE_TEXT_COLUMN)")
    if missing:
        raise InvalidInput(f"the input lacks feature column(s) {missing} that model {model.name} needs")
    return Layout(id_column, columns.names, columns.text, columns.by_name)


def read_chunks(path: Path, fmt: str, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    names = [layout.id_column, *layout.columns]
    if fmt == CSV:
        batches = _csv_batches(path, layout, chunk_size)
    elif fmt == PARQUET:
        batches = (_conform(b, layout) for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=names))
    else:
        batches = _jsonl_batches(path, layout, chunk_size)
    return _rechunk(batches, chunk_size)


def _csv_batches(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.RecordBatch]:
    kind = pa.string() if layout.text else pa.float64()
    options = dict(
        # Parse on the reader's thread alone: the scorers need the other cores, and pyarrow's
        # own pool measured no faster here.
        read_options=pcsv.ReadOptions(block_size=_block_size(path, chunk_size), use_threads=False),
        # Texts may hold quoted line breaks; numbers cannot, and blocks split faster without the check.
        parse_options=pcsv.ParseOptions(newlines_in_values=layout.text),
        # Converting straight to float64 is what makes the model input a plain copy, not a per-row loop.
        convert_options=pcsv.ConvertOptions(
            column_types={layout.id_column: pa.string(), **{c: kind for c in layout.columns}},
            include_columns=[layout.id_column, *layout.columns]))
    try:
        yield from pcsv.open_csv(path, **options)
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, read_header(path, CSV)) from None


def _block_size(path: Path, chunk_size: int) -> int:
    # About one chunk of text per block, within 1-8 MiB: bigger blocks parse no faster, and
    # every block in flight is memory.
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    per_row = len(sample) / max(1, sample.count(b"\n"))
    return int(min(max(per_row * chunk_size, 1 << 20), 8 << 20))


_CSV_COLUMN = re.compile(r"In CSV column #(\d+): .*?(invalid value '.*')?$", re.S)


def _csv_error(exc: Exception, header: list[str]) -> InvalidInput:
    match = _CSV_COLUMN.match(str(exc))
    if match and int(match.group(1)) < len(header):
        name = header[int(match.group(1))]
        return InvalidInput(f"column {name!r} must hold numbers: {match.group(2) or exc}", column=name)
    return InvalidInput(f"the CSV cannot be read: {exc}")


def _jsonl_batches(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    rows: list[dict] = []
    for number, row in json_lines(path):
        rows.append(_json_row(number, row))
        if len(rows) == chunk_size:
            yield _json_table(rows, layout)
            rows = []
    if rows:
        yield _json_table(rows, layout)


def _json_row(number: int, row: dict | str) -> dict:
    if isinstance(row, str):  # why the line is not a JSON object: scoring stops there
        raise InvalidInput(f"line {number} is {row}")
    return row


def _json_table(rows: list[dict], layout: Layout) -> pa.Table:
    ids = [None if row.get(layout.id_column) is None else str(row[layout.id_column]) for row in rows]
    columns = {layout.id_column: pa.array(ids, pa.string())}
    for name in layout.columns:
        try:
            columns[name] = pa.array([row.get(name) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"column {name!r} mixes kinds of values: {exc}", column=name) from None
    return _conform(pa.table(columns), layout)


def _conform(batch, layout: Layout) -> pa.Table:
    """Parquet and JSON columns as CSV reads them: the id as a string, features as float64."""
    kind = pa.string() if layout.text else pa.float64()
    arrays = [_cast(batch.column(layout.id_column), pa.string(), layout.id_column)]
    arrays += [_cast(batch.column(name), kind, name) for name in layout.columns]
    return pa.table(arrays, names=[layout.id_column, *layout.columns])


def _cast(array, kind: pa.DataType, name: str):
    if array.type == kind:
        return array
    try:
        return pc.cast(array, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        what = "text" if kind == pa.string() else "numbers"
        raise InvalidInput(f"column {name!r} must hold {what}: {exc}", column=name) from None


def _rechunk(batches: Iterable, size: int) -> Iterator[pa.Table]:
    # Blocks are cut by bytes, chunks by rows: slicing is zero-copy, so this costs nothing.
    pending: list[pa.Table] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
            rows += batch.num_rows
        while rows >= size:
            table = pa.concat_tables(pending)
            yield table.slice(0, size)
            pending, rows = [table.slice(size)], rows - size
    if rows:
        yield pa.concat_tables(pending)
