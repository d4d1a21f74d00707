"""End to end through the Pub/Sub emulator that ships with the Google Cloud SDK: `mlapi publish`
→ topic → a real push subscription → /pubsub/push on a real uWSGI server → the predictions table.

The SDK cannot be installed by the project; where it is absent these tests skip, also under
CI=true (the one service for which the brief allows that).
"""
import os
import shutil
import subprocess
import time

import pytest
import requests
import sqlalchemy as sa

from mlapi.store.database import make_engine
from conftest import VENV_BIN, cloud_sdk_missing, free_port, models_env
from test_pubsub_push import TEXTS, stock

@pytest.fixture(scope="module")
def emulator():
    if shutil.which("gcloud") is None:
        cloud_sdk_missing("the Pub/Sub emulator it ships cannot run")
    port = free_port()
    proc = subprocess.Popen(["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
                             "--project=mlapi-test"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/v1/projects/mlapi-test/topics", timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None:
                pytest.fail(f"the Pub/Sub emulator exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
    else:
        pytest.fail("the Pub/Sub emulator did not start within 90 s")
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, 15)
    proc.wait(20)


def test_publish_to_push_subscription_to_predictions_table(emulator, trained, start_server, tmp_path, monkeypatch):
    from google.cloud import pubsub_v1

    db = f"sqlite:///{tmp_path}/batch.db"
    stock(db)
    # The emulator pushes without a token: the push check (on by default on Cloud Run) stays off.
    server = start_server({"MODELS": models_env(trained, "text"), "FEATURE_STORE_URL": db,
                           "PREDICTIONS_DB_URL": db, "PUSH_AUTH": "off"})
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name="projects/mlapi-test/topics/batch-requests").name
    subscriber.create_subscription(name="projects/mlapi-test/subscriptions/batch-push", topic=topic,
                                   push_config={"push_endpoint": f"{server.url}/pubsub/push"})

    env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulator, "PUBSUB_TOPIC": "batch-requests",
           "GCP_PROJECT_ID": "mlapi-test"}
    published = []
    for data in ('{"id": "1"}', '{"ids": ["2", "3"]}', '{"id": "does-not-exist"}', '"poison"'):
        result = subprocess.run([str(VENV_BIN / "mlapi"), "publish", data], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        published.append(result.stdout.strip())  # the message id
    assert all(published)

    engine = make_engine(db)
    deadline = time.time() + 60
    while time.time() < deadline:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT message_id, entity_id FROM predictions")).all()
            failed = conn.execute(sa.text("SELECT message_id, entity_id FROM prediction_failures")).all()
        if len(stored) >= 3 and len(failed) >= 2:
            break
        time.sleep(0.5)
    engine.dispose()
    assert sorted(e for _, e in stored) == ["1", "2", "3"] and len(set(stored)) == 3
    assert {m for m, _ in stored} == set(published[:2])
    assert sorted(tuple(r) for r in failed) == sorted([(published[2], "does-not-exist"), (published[3], "")])
    body = requests.get(f"{server.url}/predictions/1").json()["predictions"]
    estimator = trained["text"][1]
    assert body[0]["prediction"]["label"] == estimator.predict([TEXTS["1"]])[0]
    assert body[0]["message_id"] == published[0]

