"""Feature-store ingestion (the write side): add a record, import a file, sync from a database.
The table's schema (created from the first rows, rows checked against it) is store/tables.py.

Imports are all-or-nothing by default: the whole file is written in one transaction, every
row is checked, and a file with a bad row is refused with each bad row's line number — so a
failed import never leaves a half-written store. `skip_bad_rows=True` writes the good rows
and reports the skipped ones instead. Rows are upserted by id, so re-running an import is safe.

Rows with columns the table lacks widen it (store/tables.py: nullable columns), for imports,
single records and syncs alike. The table is created or widened in a short transaction of its
own before the import's one (tables.grow: on PostgreSQL an ALTER TABLE inside it would lock
the server's lookups out for the whole import), from the file's first chunk of rows. So a
refused import may leave an added column behind, empty, never rows; and a column that a
JSON-lines file brings only after its first chunk is refused, saying how to proceed.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from mlapi.store.database import chunks, make_engine, python_type_of, upsert
from mlapi.store.files import CSV, JSONL, file_format, json_lines
from mlapi.store.tables import add_columns, coerce_row, column_type, grow, new_columns, reflect

CHUNK_ROWS = 1000
MAX_REPORTED = 20


@dataclass
class ImportReport:
    written: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line or row number, reason)
    created_table: bool = False
    added_columns: list[str] = field(default_factory=list)  # columns the rows brought to an existing table

    def describe_bad(self) -> str:
        shown = [f"  line {line}: {reason}" for line, reason in self.bad_rows[:MAX_REPORTED]]
        more = len(self.bad_rows) - MAX_REPORTED
        return "\n".join(shown + ([f"  ... and {more} more"] if more > 0 else []))


class ImportRefused(Exception):
    def __init__(self, report: ImportReport):
        super().__init__(f"{len(report.bad_rows)} bad row(s); nothing was written:\n{report.describe_bad()}")
        self.report = report


# ---- reading files: (line number, row dict) -------------------------------------------------
def read_rows(path: Path) -> Iterator[tuple[int, dict | str]]:
    """Rows of a CSV, Parquet or JSON-lines file (formats: store/files.py); a str row is an
    unparseable line's reason."""
    fmt = file_format(path)
    if fmt == CSV:
        # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                return
            for values in reader:
                if len(values) != len(header):
                    yield reader.line_num, f"{len(values)} fields, the header has {len(header)}"
                    continue
                yield reader.line_num, {k: (v if v != "" else None) for k, v in zip(header, values)}
    elif fmt == JSONL:
        yield from json_lines(path)
    else:
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, row


# ---- the import ---------------------------------------------------------------------------------
def import_rows(engine: sa.Engine, table_name: str, id_column: str, rows: Iterator[tuple[int, dict | str]],
                skip_bad_rows: bool = False, progress=None) -> ImportReport:
    report = ImportReport()
    batches = chunks(rows, CHUNK_ROWS)
    first = next(batches, [])
    # The schema first, in its own short transaction (tables.grow says why), from the first
    # chunk: a CSV or Parquet file names all its columns there.
    sample = [row for _, row in first if isinstance(row, dict)]
    table = None
    if sample:
        table, report.created_table, report.added_columns = grow(engine, table_name, id_column, sample)
    pending: list[dict] = []
    with engine.begin() as conn:  # one transaction: all or nothing
        table = reflect(conn, table_name) if table is None else table
        for batch in itertools.chain([first], batches):
            for number, row in batch:
                try:
                    if isinstance(row, str):
                        raise ValueError(row)
                    if table is None:
                        raise ValueError(f"no table {table_name!r} yet, and none of the first {CHUNK_ROWS} "
                                         f"rows could create it")
                    if late := new_columns(table, [row]):
                        raise ValueError(_late_columns_reason(late))
                    pending.append(coerce_row(table, id_column, row))
                except ValueError as exc:
                    report.bad_rows.append((number, str(exc)))
            if report.bad_rows and not skip_bad_rows:
                pending.clear()  # keep reading to report every bad row; write nothing more
            elif pending:
                _upsert_grouped(conn, table, id_column, pending)
                report.written += len(pending)
                pending.clear()
            if progress is not None:
                progress.update(len(batch))
        if report.bad_rows and not skip_bad_rows:
            raise ImportRefused(report)  # rolls the transaction back
    return report


def _late_columns_reason(columns: list[str]) -> str:
    return (f"new columns {columns} appear only after the file's first {CHUNK_ROWS} rows: the table grows "
            f"before the import's transaction, from those rows, so they cannot be added within this import; "
            f"import a row that has them first (or put one among the file's first {CHUNK_ROWS} rows)")


def _upsert_grouped(conn, table, id_column, rows):
    # Rows with different column sets cannot share one multi-row statement.
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for group in groups.values():
        upsert(conn, table, group, [id_column])


# ---- sync from an operational database --------------------------------------------------------
SYNC_STATE = sa.Table("mlapi_sync_state", sa.MetaData(),
                      sa.Column("source", sa.String(64), primary_key=True),
                      sa.Column("high_water", sa.Text),
                      sa.Column("synced_at", sa.DateTime(timezone=True)))


def sync(source_url: str, query: str, target: sa.Engine, table_name: str, id_column: str,
         updated_at: str | None = "updated_at", progress=None) -> tuple[int, bool]:
    """Materialize the query's rows into the store; incremental on `updated_at` when the
    result has that column (rows at or after the last high-water mark are re-read: upserts
    make that harmless, and rows committed late with the same timestamp are not missed).
    Returns (rows written, incremental?)."""
    source = make_engine(source_url)
    key = hashlib.sha256(f"{sa.engine.make_url(source_url).render_as_string(hide_password=True)}\n{query}".encode()).hexdigest()[:64]
    written = 0
    try:
        with source.connect() as src, target.begin() as dst:
            SYNC_STATE.create(dst, checkfirst=True)
            columns = list(src.execute(sa.text(f"SELECT * FROM ({query}) src WHERE 1 = 0")).keys())
            incremental = bool(updated_at) and updated_at in columns
            since = dst.execute(sa.select(SYNC_STATE.c.high_water).where(SYNC_STATE.c.source == key)).scalar()
            sql, params = f"SELECT * FROM ({query}) src", {}
            if incremental:
                sql += f" WHERE {updated_at} >= :since" if since else ""
                sql += f" ORDER BY {updated_at}"
                params = {"since": _load_mark(since)} if since else {}
            result = src.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(sa.text(sql), params)
            table = None
            high_water = since
            for batch in chunks(result.mappings(), CHUNK_ROWS):
                rows = [{k: (str(v) if k == id_column else v) for k, v in row.items()} for row in batch]
                if table is None:
                    # The query's columns are fixed: the first batch grows the table, in a
                    # transaction of its own before anything is written (tables.grow).
                    grow(target, table_name, id_column, rows)
                    table = reflect(dst, table_name)
                rows = [coerce_row(table, id_column, row) for row in rows]
                _upsert_grouped(dst, table, id_column, rows)
                written += len(rows)
                if incremental and batch[-1][updated_at] is not None:
                    high_water = _dump_mark(batch[-1][updated_at])
                if progress is not None:
                    progress.update(len(rows))
            if incremental and high_water:
                upsert(dst, SYNC_STATE, [{"source": key, "high_water": high_water,
                                          "synced_at": dt.datetime.now(dt.timezone.utc)}], ["source"])
    finally:
        source.dispose()
    return written, incremental


def _dump_mark(value) -> str:
    # Keep the high-water mark's type: drivers return datetimes (PostgreSQL, MySQL), strings
    # (SQLite stores datetimes as text) or numbers (version counters), and it must be bound
    # back as the same type to compare correctly.
    if isinstance(value, dt.datetime):
        return "datetime:" + value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return f"int:{value}"
    return f"str:{value}"


def _load_mark(mark: str):
    kind, _, value = mark.partition(":")
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    return int(value) if kind == "int" else value


# ---- single records: `mlapi features add`, into the source database or the store -------------
def add_record(engine: sa.Engine, table_name: str, id_column: str, record: dict, autoincrement: bool) -> str:
    """Insert one record and return its id. Without an id, the next integer id is used:
    an autoincrement key in a source table (autoincrement=True), max(numeric id) + 1 in the
    online store. Only the online store grows columns for a record; a source table refuses them."""
    with engine.begin() as conn:
        table = reflect(conn, table_name)
        if table is None:
            columns = [c for c in record if c != id_column]
            if autoincrement:
                id_col = sa.Column(id_column, sa.Integer, primary_key=True, autoincrement=True)
            else:
                id_col = sa.Column(id_column, sa.String(255), primary_key=True)
            table = sa.Table(table_name, sa.MetaData(), id_col,
                             *[sa.Column(c, column_type([record[c]])) for c in columns],
                             *([sa.Column("updated_at", sa.DateTime(timezone=True))] if "updated_at" not in record else []))
            table.create(conn, checkfirst=True)
        elif not autoincrement:
            table = add_columns(conn, table, [record])  # e.g. a tabular record in a store of texts
        elif unknown := new_columns(table, [record]):
            # A source table is the application's own: its schema is the application's to change.
            raise ValueError(f"the source table {table_name!r} has no column(s) {unknown}: mlapi adds columns "
                             f"only to the online feature store, never to SOURCE_DB_URL's tables; add them to "
                             f"{table_name!r} yourself (ALTER TABLE ... ADD COLUMN ...), leave them out of the "
                             f"record, or unset SOURCE_DB_URL to write the feature store")
        values = dict(record)
        if "updated_at" in table.c and "updated_at" not in values:
            values["updated_at"] = dt.datetime.now(dt.timezone.utc)
        if values.get(id_column) is not None:
            upsert(conn, table, [coerce_row(table, id_column, values)], [id_column])
            return str(values[id_column])
        if python_type_of(table.c[id_column].type) is int:
            result = conn.execute(sa.insert(table).values(**{k: v for k, v in values.items() if k != id_column}))
            return str(result.inserted_primary_key[0])
    # A string-keyed store has no sequence: take the next free integer id, and retry if a
    # concurrent add took it first (a plain INSERT, so nobody's record is overwritten).
    for _ in range(20):
        try:
            with engine.begin() as conn:
                existing = conn.execute(sa.select(table.c[id_column])).scalars()
                values[id_column] = str(1 + max((int(v) for v in existing if str(v).isdigit()), default=0))
                conn.execute(sa.insert(table).values(**coerce_row(table, id_column, values)))
                return values[id_column]
        except sa_exc.IntegrityError:
            continue
    raise RuntimeError("could not allocate a new id after 20 attempts")
