"""The predictions table (batch results), the failures table (ids and messages that cannot
succeed) and the failed messages' payloads.

Each prediction and failure row is unique on (message_id, entity_id): a redelivered or raced
Pub/Sub message inserts nothing the second time, so every prediction is stored exactly once.
A failed message's payload is stored once, in `failed_messages` (keyed by its message id),
however many of its ids failed: 10,000 unknown ids used to store 10,000 copies of it (41 MB).
Every stored text is cut (PAYLOAD_LIMIT, REASON_LIMIT). Tables are created on first use, by
whichever worker gets there first (CREATE ... IF NOT EXISTS semantics); a `prediction_failures`
table made before `failed_messages` existed keeps its `payload` column, no longer written.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import orjson

from mlapi.errors import MAX_MESSAGE_CHARS, cut
from mlapi.store.database import LazyDatabase, insert_ignore, retry_stale

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True)
class Schema:
    metadata: sa.MetaData
    predictions: sa.Table
    failures: sa.Table
    failed_messages: sa.Table


@functools.cache
def schema() -> Schema:
    """The tables, defined on first use (SQLAlchemy is imported then: see store/database.py)."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    predictions = sa.Table(
        "predictions", metadata,
        sa.Column("row_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("prediction", sa.Text, nullable=False),  # JSON, the predict-by-id shape
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "entity_id", name="uq_predictions_message_entity"),
    )

    failures = sa.Table(
        "prediction_failures", metadata,
        sa.Column("row_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(128), nullable=False),
        # "" when the failure concerns the whole message (undecodable data, unknown model):
        # NULLs would not be unique, and a redelivery would add a second row.
        sa.Column("entity_id", sa.String(255), nullable=False, default=""),
        sa.Column("reason", sa.Text, nullable=False),  # cut at REASON_LIMIT characters
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "entity_id", name="uq_failures_message_entity"),
    )

    # One row per Pub/Sub message with failures: its data as delivered, to diagnose them. The
    # failure rows refer to it by message_id (no foreign key: bulk runs record failures without
    # a payload, and a table made by an older version could not be altered to hold one).
    failed_messages = sa.Table(
        "failed_messages", metadata,
        sa.Column("message_id", sa.String(128), primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),  # cut at PAYLOAD_LIMIT characters
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    return Schema(metadata, predictions, failures, failed_messages)


PAYLOAD_LIMIT = 4096  # enough to diagnose a poison message without storing megabytes
# A reason names what failed and how to fix it; past this it is repeating its input. Error
# messages are cut there already (errors.py); this bounds any other reason too.
REASON_LIMIT = MAX_MESSAGE_CHARS


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PredictionStore(LazyDatabase):
    def __init__(self, url: str):
        super().__init__(url, "the predictions database")
        self._ready = False

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        from sqlalchemy.exc import SQLAlchemyError

        try:
            schema().metadata.create_all(self.engine, checkfirst=True)
        except SQLAlchemyError:
            # Another worker created the tables between our check and our CREATE (reported
            # as ProgrammingError, IntegrityError or, by SQLite, OperationalError): check again.
            schema().metadata.create_all(self.engine, checkfirst=True)
        self._ready = True

    def _write(self, *writes: tuple[sa.Table, Sequence[dict]]) -> int:
        """Insert-ignore rows into tables in one transaction; how many rows of the first were new."""
        def write():
            with self.engine.begin() as conn:
                return [insert_ignore(conn, table, rows) if rows else 0 for table, rows in writes][0]

        with self.transient_failures_unavailable():
            self._ensure_schema()
            return retry_stale(write)

    def record_predictions(self, message_id: str, model_name: str, model_version: str,
                           predictions: Sequence[tuple[str, Any]]) -> int:
        """Store (entity_id, prediction) pairs of one message in one transaction."""
        created = now()
        return self._write((schema().predictions, [
            {"message_id": message_id, "entity_id": entity_id, "model_name": model_name,
             "model_version": model_version, "prediction": orjson.dumps(prediction).decode(), "created_at": created}
            for entity_id, prediction in predictions]))

    def record_failures(self, message_id: str, failures: Sequence[tuple[str, str]], payload: bytes | str | None) -> int:
        """Store (entity_id or "", reason) pairs for a message that will not succeed on retry,
        and its payload once (in failed_messages), in one transaction; how many failures were new."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        payload = payload or ""  # bulk runs have none: no failed_messages row then
        created = now()
        rows = [{"message_id": message_id, "entity_id": entity_id, "reason": cut(reason, REASON_LIMIT),
                 "created_at": created} for entity_id, reason in failures]
        message = [{"message_id": message_id, "payload": cut(payload, PAYLOAD_LIMIT), "created_at": created}]
        return self._write((schema().failures, rows), (schema().failed_messages, message if payload else []))

    def for_entity(self, entity_id: str, limit: int = 100) -> list[dict]:
        import sqlalchemy as sa

        table = schema().predictions
        with self.transient_failures_unavailable():
            self._ensure_schema()
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(table).where(table.c.entity_id == entity_id)
                    .order_by(table.c.created_at.desc(), table.c.row_id.desc())
                    .limit(limit)).mappings().all()
        return [{"id": row["entity_id"], "model": {"name": row["model_name"], "version": row["model_version"]},
                 "prediction": orjson.loads(row["prediction"]), "message_id": row["message_id"],
                 "created_at": row["created_at"].isoformat() if row["created_at"] else None} for row in rows]
