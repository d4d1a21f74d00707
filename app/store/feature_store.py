"""The online feature store, read side: records keyed by an entity id in a SQL table.

Serving only reads, by primary key, so read-only credentials are enough (FEATURE_STORE_URL);
ingestion (store/ingest.py) writes through FEATURE_STORE_WRITE_URL. Ids are strings on the wire.
Ingestion may add columns while the server runs (store/tables.py): a lookup checks the
table's columns again once SCHEMA_CHECK_SECONDS have passed, so a running server sees them
without a restart.
"""
from __future__ import annotations

import decimal
import logging
import time
from typing import TYPE_CHECKING, Any, Sequence

from mlapi.store.database import LazyDatabase, python_type_of, retry_stale

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

# Columns that describe a record rather than feed a model.
BOOKKEEPING_COLUMNS = {"updated_at", "created_at"}
# How long the reflected table is trusted before a lookup checks its columns again. The check
# is one `SELECT * ... LIMIT 0` (0.2-1 ms measured on SQLite, PostgreSQL and MariaDB); only a
# change pays for reflecting the table again (3-20 ms, PostgreSQL the slowest).
SCHEMA_CHECK_SECONDS = 1.0


class FeatureStore(LazyDatabase):
    def __init__(self, url: str, table: str = "features", id_column: str = "id", text_column: str = "text"):
        super().__init__(url, "the feature store", read_only=True)
        self.table_name = table
        self.id_column = id_column
        self.text_column = text_column
        self._table: sa.Table | None = None
        self._checked_at = 0.0

    def table(self, conn: sa.Connection) -> sa.Table | None:
        """The reflected table, or None while it does not exist (an empty store)."""
        import sqlalchemy as sa  # on first use: see store/database.py

        now = time.monotonic()
        if self._table is not None and now - self._checked_at < SCHEMA_CHECK_SECONDS:
            return self._table
        if self._table is None or self._columns_changed(conn, self._table):
            try:
                table = sa.Table(self.table_name, sa.MetaData(), autoload_with=conn)
            except sa.exc.NoSuchTableError:
                return None
            for column in table.columns:
                if isinstance(column.type, sa.Float):
                    # MySQL's reflected DOUBLE defaults to Decimal results rounded to 10
                    # places; features must come back exactly as stored.
                    column.type.asdecimal = False
            self._table = table
        self._checked_at = now
        return self._table

    @staticmethod
    def _columns_changed(conn: sa.Connection, table: sa.Table) -> bool:
        import sqlalchemy as sa

        current = conn.execute(sa.select(sa.text("*")).select_from(table).limit(0)).keys()
        return list(current) != [column.name for column in table.columns]

    def lookup(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Records by id (as strings); ids not in the store are simply absent."""
        import sqlalchemy as sa

        def fetch():
            with self.engine.connect() as conn:
                table = self.table(conn)
                if table is None:
                    return []
                id_col = table.c[self.id_column]
                keys = _keys_for(id_col, ids)
                if not keys:
                    return []
                # One id (predict by id) as `=`: an IN list is re-rendered for its length on
                # every call, where `=` runs SQLAlchemy's cached statement as it is.
                match = id_col == keys[0] if len(keys) == 1 else id_col.in_(keys)
                return conn.execute(sa.select(table).where(match)).mappings().all()

        with self.transient_failures_unavailable():
            rows = retry_stale(fetch)
        return {str(row[self.id_column]): {k: _plain(v) for k, v in row.items()} for row in rows}

    def feature_columns(self) -> list[str]:
        """Columns that can be features, in table order (for models fitted without names)."""
        table = self._table
        if table is None:
            with self.engine.connect() as conn:
                table = self.table(conn)
        if table is None:
            return []
        skip = {self.id_column, self.text_column} | BOOKKEEPING_COLUMNS
        return [c.name for c in table.columns if c.name not in skip]

    def all_ids(self):
        """Every id, in id order, streamed (bulk scoring --from-store)."""
        # A server-side cursor lives inside a transaction (PostgreSQL), which this engine's
        # autocommit reads do not open: ask for one on this connection.
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level=conn.default_isolation_level)
            with conn.begin():
                table = self.table(conn)
                if table is None:
                    return
                result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
                    sa.select(table.c[self.id_column]).order_by(table.c[self.id_column]))
                for (value,) in result:
                    yield str(value)


def _keys_for(id_col: sa.Column, ids: Sequence[str]) -> list:
    # A table made outside mlapi may key on an integer: compare as integers, and an id that
    # is not a number cannot be in it (rather than a type error from the database).
    if python_type_of(id_col.type) is int:
        return [int(i) for i in ids if str(i).lstrip("-").isdigit()]
    return [str(i) for i in ids]


def _plain(value):
    return float(value) if isinstance(value, decimal.Decimal) else value
