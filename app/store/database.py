"""SQL plumbing shared by the feature store, the predictions table and ingestion:
pooled engines, portable upserts / insert-ignores, and which failures are transient.

SQLAlchemy is imported on first use, not when the server starts: it is 0.17 s of a cold
start and 12 MB of memory that a server answering only /predict never needs (Cloud Run
scales from zero, so cold starts are on the critical path). The first by-id request,
/readyz or batch message in each worker pays that import once.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from mlapi.errors import StoreUnavailable

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


# The driver each extra installs (setup.py), by the URL's backend: what a URL should name.
DRIVER_EXTRAS = {"postgresql": ("postgres", "psycopg"), "mysql": ("mysql", "pymysql"),
                 "mariadb": ("mysql", "pymysql")}


def make_engine(url: str, read_only: bool = False, description: str = "the database") -> Engine:
    """A pooled engine whose settings suit a Cloud Run instance (see comments).

    `read_only` engines run each statement in autocommit: a primary-key lookup then costs
    one round trip instead of three (BEGIN, SELECT, and the ROLLBACK the pool issues when
    the connection is returned). A URL whose driver is not installed, or that SQLAlchemy
    cannot read, is StoreUnavailable (503) saying what to install or write: it used to be a
    500 ModuleNotFoundError on every request that needed the database.
    """
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
        return _create_engine(sa, url, parsed, read_only)
    except ImportError as exc:  # create_engine imports the URL's driver
        raise _driver_missing(description, parsed, exc) from None
    except sa.exc.ArgumentError as exc:  # not a URL, or a backend SQLAlchemy has no dialect for
        log.error("%s's URL cannot be used: %s", description, exc)
        raise StoreUnavailable(f"{description}'s URL cannot be used ({exc.__class__.__name__}): write it as "
                               f"postgresql+psycopg://, mysql+pymysql:// or sqlite:///", store=description) from None


def _driver_missing(description: str, parsed, exc: ImportError) -> StoreUnavailable:
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    extra, supported = DRIVER_EXTRAS.get(backend, (None, None))
    if extra is None:
        advice = f"install the Python module {exc.name}"
    elif driver == supported:
        advice = f"install mlapi[{extra}] (pip install 'mlapi[{extra}]')"
    else:  # mysql:// means mysqlclient (postgresql:// psycopg2 before SQLAlchemy 2.1): no extra installs them
        advice = f"install mlapi[{extra}] and name its driver in the URL: {backend}+{supported}://..."
    message = f"{description} ({backend}+{driver}) needs the Python module {exc.name}, which is not installed: {advice}"
    log.error("%s", message)
    return StoreUnavailable(message, store=description)


def _create_engine(sa, url: str, parsed, read_only: bool) -> Engine:
    options = {"isolation_level": "AUTOCOMMIT"} if read_only else {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite: one file, many threads and forked workers; wait for a writer rather than fail.
        return sa.create_engine(url, connect_args={"timeout": 15, "check_same_thread": False},
                                pool_pre_ping=True, **options)
    connect_args = {"connect_timeout": 5}
    return sa.create_engine(
        url,
        connect_args=connect_args,
        # A few connections per worker process: requests are short and a worker serves one
        # at a time; Cloud SQL limits total connections across all instances.
        pool_size=2,
        max_overflow=2,
        # Fail fast when the pool is exhausted rather than queue requests for long.
        pool_timeout=5,
        # Cloud SQL / RDS and NAT gateways drop idle connections; recycle before they do.
        pool_recycle=1800,
        # No pre-ping: it costs a round trip on every request (about 0.5 ms to a local
        # PostgreSQL). Callers retry once on a connection the pool had kept but the server
        # had dropped (see `retry_stale`), which gives the same resilience for free.
        pool_pre_ping=False,
        **options,
    )


class LazyDatabase:
    """A database named by URL whose engine is created on first use — in the worker that
    uses it, so a connection pool is never shared across the server's fork()."""

    def __init__(self, url: str, description: str, read_only: bool = False):
        self.url = url
        self.description = description  # "the feature store": what error messages call it
        self._read_only = read_only
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(self.url, read_only=self._read_only, description=self.description)
        return self._engine

    def ping(self) -> None:
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(self.description, exc) from exc

    @contextlib.contextmanager
    def transient_failures_unavailable(self):
        """A transient database failure inside the block becomes StoreUnavailable (503, retry
        later); any other database error (bad SQL, bad data) propagates as it is."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise unavailable(self.description, exc) from exc
            raise


def retry_stale(operation):
    """Run `operation()`, once more if it failed on a stale pooled connection (the database
    restarted or an idle connection was cut): SQLAlchemy has then invalidated the pool."""
    from sqlalchemy.exc import DBAPIError

    try:
        return operation()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return operation()


def python_type_of(column_type) -> type:
    """The Python type a column holds (int, float, bool, datetime, str ...; object if unknown)."""
    # Reflected dialect types (MySQL's DOUBLE, PostgreSQL's DOUBLE_PRECISION) do not all
    # implement python_type; their generic base classes say what they hold.
    import sqlalchemy as sa

    for generic, python_type in ((sa.Boolean, bool), (sa.Integer, int), (sa.Float, float), (sa.Numeric, float),
                                 (sa.DateTime, dt.datetime)):
        if isinstance(column_type, generic):
            return python_type
    try:
        return column_type.python_type
    except NotImplementedError:
        return object


def is_transient(exc: BaseException) -> bool:
    """Database down, connection lost, lock timeout: worth a retry, unlike bad SQL or data."""
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                            sa_exc.TimeoutError)) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    # The driver's message can carry a host or user name: it goes to our log, and the client
    # learns only which store and the error class.
    log.warning("%s is unavailable: %s", what, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
    return StoreUnavailable(f"{what} is unreachable ({exc.__class__.__name__}); retry later", store=what)


def _dialect_insert(table: sa.Table, dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - other databases are not supported
        raise NotImplementedError(f"upserts are not implemented for {dialect}")
    return insert(table)


def upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict], keys: Sequence[str]) -> None:
    """Insert rows, replacing the non-key columns of rows whose keys already exist."""
    if not rows:
        return
    dialect = conn.dialect.name
    stmt = _dialect_insert(table, dialect)
    updates = [c.name for c in table.columns if c.name not in keys and c.name in rows[0]]
    if dialect in ("mysql", "mariadb"):
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updates}) if updates else stmt.prefix_with("IGNORE")
    elif updates:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in updates})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> int:
    """Insert rows, silently skipping those that violate a unique constraint (redeliveries).
    Returns how many rows were new."""
    dialect = conn.dialect.name
    inserted = 0
    # One multi-row VALUES statement per chunk (within SQLite's bound-parameter limit).
    # Counting: MySQL's INSERT IGNORE reports inserted rows; psycopg reports -1 for
    # ON CONFLICT inserts, so there (and in SQLite) RETURNING counts what was new.
    key = next(iter(table.primary_key.columns))
    for batch in chunks(rows, 500):
        stmt = _dialect_insert(table, dialect).values(batch)
        if dialect in ("mysql", "mariadb"):
            inserted += conn.execute(stmt.prefix_with("IGNORE")).rowcount
        else:
            inserted += len(conn.execute(stmt.on_conflict_do_nothing().returning(key)).all())
    return inserted


def chunks(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
