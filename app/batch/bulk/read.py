"""Bulk scoring, reading: a file's header → the columns that feed the model (the rule is
serving/records.py's `input_columns`) and the type each takes (serving/columns.py's
`column_types`, the rule request rows are built with); the file → Arrow tables of exactly
`chunk_size` rows: the id as a string, when the input has an id column, and each model column
as its kind's Arrow type (float64 for numbers, which is what makes a numeric model's input a
plain copy; strings for categories and texts, so a zip code "01234" stays "01234").

An input without the id column is keyed by row number instead: its rows are numbered from 0,
in input order (the index pandas gives them), and the output's `row` column holds that number.
Only in a file: --to-db refuses such an input (require_id_column says why).
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

from mlapi.batch.bulk.values import ARROW, PLURAL, arrow_column, converted
from mlapi.errors import InvalidInput
from mlapi.serving.columns import NUMBER, STRING, column_types
from mlapi.serving.model import ServedModel
from mlapi.serving.records import input_columns
from mlapi.store.files import CSV, PARQUET, file_format, json_lines

ROW = "row"  # the output's key column for an input without an id column: 0-based row numbers


@dataclass(frozen=True)
class Layout:
    id_column: str | None     # None: the input has no id column; its rows are keyed by number
    columns: tuple[str, ...]  # the model's input columns, in the order it takes them
    kinds: tuple[str, ...]    # per column: "number", "integer", "boolean" or "string"
    text: bool                # one text column rather than tabular features
    by_name: bool             # the model was fitted with these names: it takes a DataFrame

    @property
    def key_column(self) -> str:
        """The output's first column: the input's id column, else `row`."""
        return self.id_column or ROW

    @property
    def numeric(self) -> bool:
        """Every column a number: the model's input is one float64 matrix."""
        return not self.text and all(kind == NUMBER for kind in self.kinds)

    def types(self) -> dict[str, pa.DataType]:
        """{column read: its Arrow type}, the id (if any) first."""
        ids = {self.id_column: pa.string()} if self.id_column else {}
        return {**ids, **{name: ARROW[kind] for name, kind in zip(self.columns, self.kinds)}}


def read_header(path: Path, fmt: str) -> list[str]:
    if fmt == PARQUET:
        return pq.ParquetFile(path).schema_arrow.names
    if fmt == CSV:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    for number, row in json_lines(path):
        return list(_json_row(number, row))
    return []


def require_id_column(path: Path, id_column: str) -> None:
    """For --to-db: the predictions table is keyed by entity id, shared with predict by id and
    Pub/Sub, so rows keyed by their number ("0", "1", ...) would collide with real ids there."""
    header = read_header(path, file_format(path))
    if id_column not in header:
        shown = ", ".join(header[:12]) + (f", … ({len(header)} in all)" if len(header) > 12 else "")
        raise InvalidInput(f"--to-db needs an id per row, and the input has no {id_column!r} column (it has "
                           f"{shown or 'no columns'}): add one, name the input's id column with --id-column, "
                           f"or write a file with --output, where rows without ids are keyed by number")


def layout_for(model: ServedModel, header: list[str], id_column: str, text_column: str,
               id_required: bool = False) -> Layout:
    """`id_required`: the id column was named on purpose (--id-column), so an input without
    it is a mistake rather than a file to number."""
    if not header:
        raise InvalidInput("the input is empty: no header, no rows")
    if id_column not in header:
        if id_required:
            raise InvalidInput(f"the input has no {id_column!r} column, which --id-column names; it has {header}")
        id_column = None
    # Fitted on a bare array: the features are the other columns, in file order.
    columns = input_columns(model, text_column, lambda: [c for c in header if c != id_column], "the input")
    missing = [name for name in columns.names if name not in header]
    if missing and columns.text:
        raise InvalidInput(f"the input has no {text_column!r} column, which text model {model.name} reads "
                           f"(FEATURE_TEXT_COLUMN)")
    if missing:
        raise InvalidInput(f"the input lacks feature column(s) {missing} that model {model.name} needs")
    return Layout(id_column, columns.names, _kinds(model, columns), columns.text, columns.by_name)


def _kinds(model: ServedModel, columns) -> tuple[str, ...]:
    if columns.text:
        return (STRING,)
    # A model fitted on a bare array keeps no column facts to tell by: its columns are numbers.
    types = column_types(model.estimator) if columns.by_name else None
    return tuple(column["type"] for column in types) if types else (NUMBER,) * len(columns.names)


def read_chunks(path: Path, fmt: str, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    if fmt == CSV:
        tables = _csv_tables(path, layout, chunk_size)
    elif fmt == PARQUET:
        batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_size, columns=list(layout.types()))
        tables = _parquet_tables(batches, layout)
    else:
        tables = _jsonl_tables(path, layout, chunk_size)
    return _rechunk(tables, chunk_size)


# ---- CSV ------------------------------------------------------------------------------------
def _csv_tables(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.RecordBatch | pa.Table]:
    types = layout.types()
    options = dict(
        # Parse on the reader's thread alone: the scorers need the other cores, and pyarrow's
        # own pool measured no faster here.
        read_options=pcsv.ReadOptions(block_size=_block_size(path, chunk_size), use_threads=False),
        # Texts and categories may hold quoted line breaks; numbers cannot, and blocks split
        # faster without the check.
        parse_options=pcsv.ParseOptions(newlines_in_values=STRING in layout.kinds),
        # Converting straight to each column's type (float64 for numbers) is what makes the
        # model input a plain copy, not a per-row loop.
        convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(types)))
    categories = [] if layout.text else [name for name, kind in zip(layout.columns, layout.kinds) if kind == STRING]
    try:
        for batch in pcsv.open_csv(path, **options):
            yield _empty_as_missing(batch, categories) if categories else batch
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, path, layout, options) from None


def _block_size(path: Path, chunk_size: int) -> int:
    # About one chunk of text per block, within 1-8 MiB: bigger blocks parse no faster, and
    # every block in flight is memory.
    with open(path, "rb") as handle:
        sample = handle.read(1 << 16)
    per_row = len(sample) / max(1, sample.count(b"\n"))
    return int(min(max(per_row * chunk_size, 1 << 20), 8 << 20))


def _empty_as_missing(batch: pa.RecordBatch, names: list[str]) -> pa.Table:
    # pandas writes a missing value as an empty field and reads one back as NaN: in a category
    # column an empty field is that missing value, not a category "" the model never saw.
    table = pa.Table.from_batches([batch])
    for name in names:
        index = table.schema.get_field_index(name)
        column = table.column(index)
        table = table.set_column(index, name, pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column))
    return table


_CSV_COLUMN = re.compile(r"In CSV column #(\d+): .*?(invalid value '.*')?$", re.S)


def _csv_error(exc: Exception, path: Path, layout: Layout, options: dict) -> InvalidInput:
    header = read_header(path, CSV)
    match = _CSV_COLUMN.match(str(exc))
    if not match or int(match.group(1)) >= len(header) or header[int(match.group(1))] not in layout.columns:
        return InvalidInput(f"the CSV cannot be read: {exc}")
    name = header[int(match.group(1))]
    kind = layout.kinds[layout.columns.index(name)]
    # Arrow names the column, not the row: read that column again as text, up to the value
    # that does not convert, to say where it is.
    as_text = pcsv.ConvertOptions(column_types={name: pa.string()}, include_columns=[name], strings_can_be_null=True)
    first_row = 0
    try:
        for batch in pcsv.open_csv(path, options["read_options"], options["parse_options"], as_text):
            converted(batch.column(0), kind, name, first_row)  # raises, naming the row, at the bad value
            first_row += batch.num_rows
    except pa.ArrowInvalid:  # the file fails otherwise read this way: Arrow's own words below
        pass
    return InvalidInput(f"column {name!r} must hold {PLURAL[kind]}: {match.group(2) or exc}", column=name)


# ---- Parquet and JSON lines: read with their own types, then converted ----------------------
def _parquet_tables(batches: Iterable[pa.RecordBatch], layout: Layout) -> Iterator[pa.Table]:
    first_row = 0
    for batch in batches:
        columns = [converted(batch.column(name), kind, name, first_row) for name, kind in _read_kinds(layout)]
        yield pa.table(columns, names=list(layout.types()))
        first_row += batch.num_rows


def _jsonl_tables(path: Path, layout: Layout, chunk_size: int) -> Iterator[pa.Table]:
    rows: list[dict] = []
    first_row = 0
    for number, row in json_lines(path):
        rows.append(_json_row(number, row))
        if len(rows) == chunk_size:
            yield _json_table(rows, layout, first_row)
            first_row, rows = first_row + len(rows), []
    if rows:
        yield _json_table(rows, layout, first_row)


def _json_row(number: int, row: dict | str) -> dict:
    if isinstance(row, str):  # why the line is not a JSON object: scoring stops there
        raise InvalidInput(f"line {number} is {row}")
    return row


def _json_table(rows: list[dict], layout: Layout, first_row: int) -> pa.Table:
    columns = []
    for name, kind in _read_kinds(layout):
        if name == layout.id_column:
            columns.append(pa.array([None if row.get(name) is None else str(row[name]) for row in rows], pa.string()))
        else:
            columns.append(converted([row.get(name) for row in rows], kind, name, first_row, arrow_column))
    return pa.table(columns, names=list(layout.types()))


def _read_kinds(layout: Layout) -> list[tuple[str, str]]:
    ids = [(layout.id_column, STRING)] if layout.id_column else []
    return ids + list(zip(layout.columns, layout.kinds))


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
