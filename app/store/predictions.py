"""The predictions table (batch results) and the failures table (poison messages).

Each row is unique on (message_id, entity_id): a redelivered or raced Pub/Sub message inserts
nothing the second time, so every prediction is stored exactly once. Tables are created on
first use, by whichever worker gets there first (CREATE ... IF NOT EXISTS semantics).
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import orjson

from mlapi.store.database import LazyDatabase, insert_ignore, retry_stale

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True)
class Schema:
    metadata: sa.MetaData
    predictions: sa.Table
    failures: sa.Table


@functools.cache
def schema() -> Schema:
    """The two tables, defined on first use (SQLAlchemy is imported then: see store/database.py)."""
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
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("message_id", "entity_id", name="uq_failures_message_entity"),
    )
    return Schema(metadata, predictions, failures)


PAYLOAD_LIMIT = 4096  # enough to diagnose a poison message without storing megabytes


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

    def _write(self, table: sa.Table, rows: Sequence[dict]) -> int:
        def write():
            with self.engine.begin() as conn:
                return insert_ignore(conn, table, rows)

        with self.transient_failures_unavailable():
            self._ensure_schema()
            return retry_stale(write)

    def record_predictions(self, message_id: str, model_name: str, model_version: str,
                           predictions: Sequence[tuple[str, Any]]) -> int:
        """Store (entity_id, prediction) pairs of one message in one transaction."""
        created = now()
        return self._write(schema().predictions, [
            {"message_id": message_id, "entity_id": entity_id, "model_name": model_name,
             "model_version": model_version, "prediction": orjson.dumps(prediction).decode(), "created_at": created}
            for entity_id, prediction in predictions])

    def record_failures(self, message_id: str, failures: Sequence[tuple[str, str]], payload: bytes | str | None) -> int:
        """Store (entity_id or "", reason) pairs for a message that will not succeed on retry."""
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        created = now()
        return self._write(schema().failures, [
            {"message_id": message_id, "entity_id": entity_id, "reason": reason,
             "payload": payload[:PAYLOAD_LIMIT] if payload else None, "created_at": created}
            for entity_id, reason in failures])

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
