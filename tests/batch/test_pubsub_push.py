"""Batch inference over Pub/Sub push: envelopes in, predictions stored exactly once."""
import base64
import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from mlapi.store.database import make_engine
from mlapi.store.ingest import import_rows
from conftest import VENV_BIN, models_env
from tcpproxy import TcpProxy


def envelope(data, message_id=None, raw=None):
    encoded = raw if raw is not None else base64.b64encode(json.dumps(data).encode()).decode()
    return {"message": {"data": encoded, "messageId": message_id or uuid.uuid4().hex, "attributes": {},
                        "publishTime": "2026-11-22T00:00:00Z"},
            "subscription": "projects/p/subscriptions/mlapi-push"}


TEXTS = {"1": "refund my last invoice", "2": "the app crashes on my phone", "3": "cannot log in to my account",
         "4": "the pricing page shows a 404 error"}


def stock(url, n_extra=0):
    rows = [(0, {"id": k, "text": v}) for k, v in TEXTS.items()]
    rows += [(0, {"id": f"x{i}", "text": f"charged twice for order {i}"}) for i in range(n_extra)]
    engine = make_engine(url)
    import_rows(engine, "features", "id", iter(rows))
    engine.dispose()


def rows_in(url, table="predictions"):
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT message_id, entity_id FROM {table}")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture
def push_client(db_url, make_app, trained):
    stock(db_url)
    app = make_app(MODELS=models_env(trained, "text", "cancer"), FEATURE_STORE_URL=db_url, PREDICTIONS_DB_URL=db_url)
    return app.test_client(), db_url


def test_push_stores_predictions_once(push_client, trained):
    client, url = push_client
    estimator = trained["text"][1]
    message = envelope({"ids": ["1", "2"], "model": "text"}, "m-1")
    first = client.post("/pubsub/push", json=message)
    assert first.status_code == 200 and first.get_json()["stored"] == 2
    again = client.post("/pubsub/push", json=message)  # redelivery
    assert again.status_code == 200 and again.get_json()["stored"] == 0
    assert sorted(rows_in(url)) == [("m-1", "1"), ("m-1", "2")]
    client.post("/pubsub/push", json=envelope({"id": "1", "model": "text:1"}, "m-2"))
    stored = client.get("/predictions/1").get_json()["predictions"]
    assert [p["message_id"] for p in stored] == ["m-2", "m-1"]  # newest first
    proba = estimator.predict_proba([TEXTS["1"]])[0]
    assert stored[0]["prediction"]["label"] == estimator.predict([TEXTS["1"]])[0]
    assert stored[0]["prediction"]["scores"] == sorted(proba.tolist(), reverse=True)
    assert stored[0]["prediction"]["sequence"] == TEXTS["1"] and stored[0]["model"] == {"name": "text", "version": "1"}
    assert client.get("/predictions/nobody").get_json()["predictions"] == []


@pytest.mark.parametrize("data,raw,reason", [
    (None, "%%% not base64 %%%", "not valid base64"),
    (None, base64.b64encode(b"{not json").decode(), "not JSON"),
    ({"user": "1"}, None, 'needs "id" or "ids"'),
    ({"id": "1", "model": "nope"}, None, "unknown model"),
])
def test_poison_messages_are_recorded_and_acknowledged(push_client, data, raw, reason):
    client, url = push_client
    response = client.post("/pubsub/push", json=envelope(data, "poison-1", raw=raw))
    assert response.status_code == 200 and response.get_json()["status"] == "failed"
    assert client.post("/pubsub/push", json=envelope(data, "poison-1", raw=raw)).status_code == 200
    engine = make_engine(url)
    with engine.connect() as conn:
        failures = conn.execute(sa.text("SELECT message_id, entity_id, reason FROM prediction_failures")).all()
    engine.dispose()
    assert len(failures) == 1 and failures[0][0] == "poison-1" and reason in failures[0][2]
    assert rows_in(url) == []


def test_unknown_ids_fail_alone(push_client):
    client, url = push_client
    body = client.post("/pubsub/push", json=envelope({"ids": ["1", "404", "3"], "model": "text"}, "m-mixed")).get_json()
    assert body["stored"] == 2 and set(body["failed"]) == {"404"}
    assert sorted(rows_in(url)) == [("m-mixed", "1"), ("m-mixed", "3")]
    assert [tuple(r[:2]) for r in rows_in(url, "prediction_failures")] == [("m-mixed", "404")]


@pytest.mark.parametrize("body", [{"nomessage": 1}, {"message": {"data": "eyJpZCI6IjEifQ=="}},
                                  {"message": {"messageId": "1", "data": 5}}])
def test_malformed_envelopes_are_400(push_client, body):
    client, _ = push_client
    response = client.post("/pubsub/push", json=body)
    assert response.status_code == 400 and "envelope" in response.get_json()["error"]["message"]


def test_parallel_distinct_and_duplicate_pushes_store_exactly_once(db_url, trained, start_server):
    stock(db_url, n_extra=40)
    server = start_server({"MODELS": models_env(trained, "text"), "FEATURE_STORE_URL": db_url,
                           "PREDICTIONS_DB_URL": db_url, "UWSGI_PROCESSES": "2"})
    messages = [envelope({"ids": [f"x{i}", f"x{(i + 1) % 40}"]}, f"m{i}") for i in range(40)]
    deliveries = messages * 3  # every message delivered three times, racing itself

    def deliver(message):
        return requests.post(f"{server.url}/pubsub/push", json=message, timeout=30).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(deliver, deliveries))
    assert statuses == [200] * len(deliveries)
    stored = rows_in(db_url)
    assert len(stored) == len(set(stored)) == 80
    assert set(stored) == {(f"m{i}", f"x{j}") for i in range(40) for j in (i, (i + 1) % 40)}


def test_database_outage_gives_503_then_every_message_is_stored_once(postgres_url, trained, start_server):
    stock(postgres_url)
    target = sa.engine.make_url(postgres_url)
    proxy = TcpProxy("127.0.0.1", 5432)
    proxied = target.set(port=proxy.port).render_as_string(hide_password=False)
    server = start_server({"MODELS": models_env(trained, "text"), "FEATURE_STORE_URL": proxied,
                           "PREDICTIONS_DB_URL": proxied, "UWSGI_PROCESSES": "2"})
    url = f"{server.url}/pubsub/push"
    messages = [envelope({"id": str(1 + i % 4)}, f"out-{i}") for i in range(30)]
    pending = list(messages)
    try:
        for message in messages[:10]:
            assert requests.post(url, json=message, timeout=30).status_code == 200
        pending = messages[10:]
        proxy.cut()
        failed = [requests.post(url, json=m, timeout=30) for m in messages[10:20]]
        assert {r.status_code for r in failed} == {503}
        assert all("unreachable" in r.json()["error"]["message"] for r in failed)
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 503
        proxy.restore()
        # Pub/Sub redelivers what was not acknowledged, and may redeliver acknowledged ones too
        for message in pending + messages[:10]:
            assert requests.post(url, json=message, timeout=30).status_code == 200
    finally:
        proxy.close()
    stored = rows_in(postgres_url)
    assert sorted(stored) == sorted((f"out-{i}", str(1 + i % 4)) for i in range(30))


def test_publish_without_a_topic_posts_the_envelope_to_the_server(trained, start_server, tmp_path):
    db = f"sqlite:///{tmp_path}/local.db"
    stock(db)
    server = start_server({"MODELS": models_env(trained, "text"), "FEATURE_STORE_URL": db, "PREDICTIONS_DB_URL": db})
    env = {k: v for k, v in os.environ.items() if k != "PUBSUB_TOPIC"}
    result = subprocess.run([str(VENV_BIN / "mlapi"), "publish", '{"id": "4"}'], capture_output=True, text=True,
                            env={**env, "ML_API_URL": server.url}, timeout=60)
    assert result.returncode == 0 and '"stored":1' in result.stdout
    assert requests.get(f"{server.url}/predictions/4").json()["predictions"][0]["prediction"]["sequence"] == TEXTS["4"]
