"""A database URL whose driver is not installed (FEATURE_STORE_URL=postgresql+psycopg://...
without mlapi[postgres]) or that SQLAlchemy cannot read: 503 saying what to install or write,
on /readyz, predict by id and the Pub/Sub push alike, where it was a 500 ModuleNotFoundError.
The driver is hidden from this process (None in sys.modules makes `import psycopg` fail as it
does where the package is missing); no database server is needed, nothing gets that far."""
import base64
import json
import sys

import pytest

from conftest import models_env

PUSH = {"message": {"data": base64.b64encode(json.dumps({"id": "1"}).encode()).decode(), "messageId": "m-1"},
        "subscription": "projects/p/subscriptions/s"}


@pytest.mark.parametrize("url,hidden,advice", [
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "psycopg",
     "the Python module psycopg, which is not installed: install mlapi[postgres] (pip install 'mlapi[postgres]')"),
    ("mysql+pymysql://root@127.0.0.1:3306/test", "pymysql",
     "the Python module pymysql, which is not installed: install mlapi[mysql] (pip install 'mlapi[mysql]')"),
    # mysql:// means SQLAlchemy's default MySQL driver, mysqlclient (MySQLdb), which no extra installs.
    ("mysql://root@127.0.0.1:3306/test", "MySQLdb",
     "install mlapi[mysql] and name its driver in the URL: mysql+pymysql://..."),
])
def test_a_missing_driver_is_a_503_saying_what_to_install(make_app, trained, monkeypatch, url, hidden, advice):
    monkeypatch.setitem(sys.modules, hidden, None)
    client = make_app(MODELS=models_env(trained, "text"), FEATURE_STORE_URL=url, PREDICTIONS_DB_URL=url).test_client()
    ready = client.get("/readyz")
    stores = ready.get_json()["stores"]
    assert ready.status_code == 503 and advice in stores["feature_store"] and advice in stores["predictions_db"]
    for answer in (client.get("/predict/1"), client.post("/pubsub/push", json=PUSH)):
        assert answer.status_code == 503, answer.data
        assert advice in answer.get_json()["error"]["message"]
    assert client.get("/healthz").status_code == 200  # the server keeps serving
    assert client.post("/predict", json={"instances": ["refund my invoice"]}).status_code == 200


def test_a_url_sqlalchemy_cannot_read_is_a_503_naming_the_forms_it_takes(make_app, trained):
    # postgres:// (Heroku's spelling) names no SQLAlchemy dialect.
    client = make_app(MODELS=models_env(trained, "text"), FEATURE_STORE_URL="postgres://u:secret@db/x").test_client()
    answer = client.get("/predict/1")
    assert answer.status_code == 503
    message = answer.get_json()["error"]["message"]
    assert "the feature store's URL cannot be used" in message and "postgresql+psycopg://" in message
    assert "secret" not in message and "secret" not in json.dumps(client.get("/readyz").get_json())
