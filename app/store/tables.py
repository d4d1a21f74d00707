"""The feature table's schema, for ingestion: created from the first rows when it does not
exist yet (column types inferred from the values), widened when later rows bring columns it
lacks (added as nullable columns, typed the same way: a store first filled with text records
takes tabular ones too), and rows checked against it before they are written (values
converted to the columns' types, or a reason why they cannot be).
"""
from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from mlapi.errors import InvalidInput
from mlapi.store.database import python_type_of


# ---- creating the table from sample rows ------------------------------------------------------
def column_type(values: list) -> sa.types.TypeEngine:
    """The narrowest column type that holds every non-null value (Text if nothing fits)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return sa.Boolean()
    if present and all(isinstance(v, dt.datetime) for v in present):
        return sa.DateTime(timezone=True)
    if present and all(_is_int(v) for v in present):
        return sa.BigInteger()
    if present and all(_is_float(v) for v in present):
        return sa.Double()  # 8-byte: MySQL's FLOAT would round features to 7 digits
    return sa.Text()


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def _is_float(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def create_table(conn: sa.Connection, name: str, id_column: str, sample: list[dict]) -> sa.Table:
    columns = list(dict.fromkeys(k for row in sample for k in row))
    if id_column not in columns:
        shown = ", ".join(columns[:12]) + (f", … ({len(columns)} in all)" if len(columns) > 12 else "")
        raise InvalidInput(f"the data has no {id_column!r} column, which holds each record's id: add an "
                           f"{id_column!r} column, or set FEATURE_ID_COLUMN to the column that holds the ids "
                           f"(the data has {shown or 'no columns'})")
    table = sa.Table(name, sa.MetaData(), sa.Column(id_column, sa.String(255), primary_key=True),
                     *[sa.Column(c, column_type([row.get(c) for row in sample])) for c in columns if c != id_column])
    table.create(conn, checkfirst=True)
    return table


def new_columns(table: sa.Table, rows: list[dict]) -> list[str]:
    """Columns the rows have and the table lacks, in the order they first appear."""
    return list(dict.fromkeys(k for row in rows for k in row if k not in table.c))


def add_columns(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> sa.Table:
    """The table with the rows' new columns added (nullable, typed from the rows' values, as
    create_table types them), reflected again; the table itself when there are none. Another
    writer may add the same column at the same moment: PostgreSQL and MariaDB skip it (IF NOT
    EXISTS); elsewhere (SQLite, MySQL) the duplicate-column error is caught, as the column is
    there (such a failed statement does not abort the transaction there)."""
    names = new_columns(table, rows)
    if not names:
        return table
    quote = conn.dialect.identifier_preparer
    if_not_exists = "IF NOT EXISTS " if _add_column_if_not_exists(conn) else ""
    for name in names:
        kind = column_type([row.get(name) for row in rows]).compile(dialect=conn.dialect)
        ddl = f"ALTER TABLE {quote.format_table(table)} ADD COLUMN {if_not_exists}{quote.quote(name)} {kind}"
        try:
            conn.execute(sa.text(ddl.replace(":", r"\:")))  # a ':' in a name is not a bind parameter
        except sa_exc.DBAPIError as exc:
            if if_not_exists or "duplicate column" not in str(exc.orig).lower():
                raise
    return reflect(conn, table.name)


def _add_column_if_not_exists(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql" or bool(getattr(conn.dialect, "is_mariadb", False))


def grow(engine: sa.Engine, name: str, id_column: str, sample: list[dict]) -> tuple[sa.Table, bool, list[str]]:
    """Create the table, or add the sample's new columns to it, in a short transaction of its
    own: (table, created?, columns added). Run it before the writes' transaction, never inside:
    on PostgreSQL an ALTER TABLE holds an ACCESS EXCLUSIVE lock until its transaction ends,
    which inside a long import would block every lookup of the server for the whole import."""
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # An ALTER waits for its lock behind any open transaction on the table, and
                    # while it waits every new reader queues behind it: give up after 2 s (the
                    # import fails, saying so) rather than stall the server's lookups for as
                    # long as another transaction lasts.
                    conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                table = reflect(conn, name)
                if table is None:
                    return create_table(conn, name, id_column, sample), True, []
                added = new_columns(table, sample)
                return add_columns(conn, table, sample), False, added
        except (sa_exc.OperationalError, sa_exc.ProgrammingError, sa_exc.IntegrityError):
            # Another writer created the table between our look and our CREATE: look again.
            if attempt == 2 or not _exists(engine, name):
                raise
    raise AssertionError("unreachable")


def _exists(engine: sa.Engine, name: str) -> bool:
    with engine.connect() as conn:
        return reflect(conn, name) is not None


def reflect(conn: sa.Connection, name: str) -> sa.Table | None:
    try:
        return sa.Table(name, sa.MetaData(), autoload_with=conn)
    except sa_exc.NoSuchTableError:
        return None


# ---- checking rows against the table -----------------------------------------------------------
def coerce_row(table: sa.Table, id_column: str, row: dict) -> dict:
    """The row with values converted to the columns' types; ValueError says what is wrong."""
    unknown = [k for k in row if k not in table.c]
    if unknown:
        raise ValueError(f"unknown columns {unknown}; the table has {[c.name for c in table.columns]}")
    entity_id = row.get(id_column)
    if entity_id is None or str(entity_id).strip() == "":
        raise ValueError(f"no {id_column!r}")
    out = {id_column: str(entity_id)}
    for key, value in row.items():
        if key != id_column:
            out[key] = _coerce(table.c[key].type, key, value)
    return out


def _coerce(column_type, key: str, value):
    if value is None:
        return None
    python_type = python_type_of(column_type)
    try:
        if python_type is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if python_type is int:
            # 3.0 is the integer 3; 3.5 is refused rather than silently truncated.
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if python_type is dt.datetime and isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        if python_type is bool and isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"column {key!r}: {value!r} is not a {python_type.__name__}") from None
    return value
