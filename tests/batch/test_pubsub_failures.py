"""What a failed Pub/Sub message stores and answers is bounded by the message, not multiplied
by its ids: the payload once per message (failed_messages), every reason cut to REASON_LIMIT,
the answer listing at most SHOWN_FAILURES failures; on SQLite, PostgreSQL and MariaDB, also
into a prediction_failures table made before failed_messages existed."""
import base64
import datetime as dt
import json
import logging

import pytest
import sqlalchemy as sa

from mlapi.store.database import make_engine
from conftest import models_env
from test_pubsub_push import envelope, rows_in, stock

# The limits docs/batch.md gives; a cut text ends with a note of what was left out ("…(N more)").
PAYLOAD_LIMIT, REASON_LIMIT, SHOWN_FAILURES, NOTE = 4096, 1024, 20, 20


def select(url, query):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def text_size(url, table, columns):
    """Characters stored in the table's text columns."""
    return sum(len(value or "") for row in select(url, f"SELECT {', '.join(columns)} FROM {table}") for value in row)


@pytest.fixture
def push(db_url, make_app, trained):
    stock(db_url)
    app = make_app(MODELS=models_env(trained, "text"), FEATURE_STORE_URL=db_url, PREDICTIONS_DB_URL=db_url)
    return app.test_client(), db_url


def test_the_payload_is_stored_once_however_many_ids_fail(push):
    client, url = push
    unknown = [f"unknown-{i:04d}" for i in range(2000)]
    message = envelope({"ids": ["1", *unknown], "model": "text"}, "m-many")
    payload = message["message"]["data"]
    assert len(payload) > PAYLOAD_LIMIT  # what each failure row used to hold a copy of
    for delivery in range(2):  # a redelivery writes nothing twice
        answer = client.post("/pubsub/push", json=message)
        body = answer.get_json()
        assert answer.status_code == 200 and body["status"] == "stored" and body["scored"] == 1
        assert body["stored"] == (1 if delivery == 0 else 0)
        assert body["failed_count"] == 2000 and len(body["failed"]) == SHOWN_FAILURES
        assert list(body["failed"]) == unknown[:SHOWN_FAILURES]
        assert len(answer.data) < 5_000
    assert sorted(rows_in(url, "prediction_failures")) == [("m-many", i) for i in unknown]
    [(message_id, stored)] = select(url, "SELECT message_id, payload FROM failed_messages")
    assert message_id == "m-many" and len(stored) <= PAYLOAD_LIMIT + NOTE and payload.startswith(stored[:1000])
    # 2,000 rows of an id and a one-line reason: no payload among them (it was 8 MB here).
    assert text_size(url, "prediction_failures", ["entity_id", "reason"]) < 2000 * 100
    assert rows_in(url) == [("m-many", "1")]


def test_a_poison_message_s_payload_and_reason_are_stored_once(push):
    client, url = push
    message = envelope(None, "poison-1", raw="%%% not base64 %%%")
    for _ in range(2):
        assert client.post("/pubsub/push", json=message).get_json()["failed_count"] == 1
    assert select(url, "SELECT message_id, entity_id, reason FROM prediction_failures") == [
        ("poison-1", "", "message data is not valid base64")]
    assert select(url, "SELECT message_id, payload FROM failed_messages") == [("poison-1", "%%% not base64 %%%")]


def test_a_huge_model_name_is_bounded_in_the_row_the_answer_and_the_log(push, caplog):
    client, url = push
    message = envelope({"id": "1", "model": "m" * 1_000_000}, "poison-big")
    with caplog.at_level(logging.WARNING):
        answer = client.post("/pubsub/push", json=message)
    assert answer.status_code == 200 and answer.get_json()["status"] == "failed"
    assert "unknown model 'mmm" in answer.get_json()["failed"][""] and len(answer.data) < 3_000
    [(reason,)] = select(url, "SELECT reason FROM prediction_failures")
    assert reason.startswith("unknown model 'mmm") and len(reason) <= REASON_LIMIT + NOTE
    [(payload,)] = select(url, "SELECT payload FROM failed_messages")
    assert len(payload) <= PAYLOAD_LIMIT + NOTE
    assert max(len(record.getMessage()) for record in caplog.records) < 3_000


OLDER_FAILURES_TABLE = """CREATE TABLE prediction_failures (
    row_id {key},
    message_id VARCHAR(128) NOT NULL,
    entity_id VARCHAR(255) NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT,
    created_at {timestamp} NOT NULL,
    CONSTRAINT uq_failures_message_entity UNIQUE (message_id, entity_id))"""
KEYS = {"sqlite": ("INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT", "DATETIME"),
        "postgresql": ("BIGSERIAL NOT NULL PRIMARY KEY", "TIMESTAMP WITH TIME ZONE"),
        "mysql": ("BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", "DATETIME")}


def test_a_failures_table_made_by_an_older_version_takes_the_new_rows(push):
    # As the table was created before the payload moved to failed_messages: one payload per row.
    client, url = push
    engine = make_engine(url)
    key, timestamp = KEYS[engine.dialect.name]
    with engine.begin() as conn:
        conn.execute(sa.text(OLDER_FAILURES_TABLE.format(key=key, timestamp=timestamp)))
        conn.execute(sa.text("INSERT INTO prediction_failures (message_id, entity_id, reason, payload, created_at) "
                             "VALUES ('old-1', '9', 'no record', 'e30=', :at)"), {"at": dt.datetime(2026, 1, 1)})
    engine.dispose()
    message = envelope({"ids": ["1", "404", "405"], "model": "text"}, "m-new")
    for _ in range(2):
        assert client.post("/pubsub/push", json=message).get_json()["failed_count"] == 2
    assert sorted(select(url, "SELECT message_id, entity_id, payload FROM prediction_failures")) == [
        ("m-new", "404", None), ("m-new", "405", None), ("old-1", "9", "e30=")]
    assert select(url, "SELECT message_id, payload FROM failed_messages") == [("m-new", message["message"]["data"])]
    decoded = json.loads(base64.b64decode(select(url, "SELECT payload FROM failed_messages")[0][0]))
    assert decoded["ids"] == ["1", "404", "405"]
