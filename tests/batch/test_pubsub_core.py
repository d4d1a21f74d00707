"""The Pub/Sub batch core without HTTP: it takes decoded BatchMessages (no envelope, no
base64) and stores predictions, or records a poison message and acknowledges it."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from mlapi.config import Settings
from mlapi.errors import StoreUnavailable
from mlapi.protocols.pubsub import BatchMessage, BatchRequest
from mlapi.services import build_services
from mlapi.store.database import make_engine
from mlapi.store.ingest import import_rows
from conftest import free_port, models_env


def build(trained, tmp_path, predictions_url=None):
    services = build_services(Settings.from_env({
        "MODELS": models_env(trained, "text"), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "FEATURE_STORE_URL": f"sqlite:///{tmp_path}/features.db",
        "PREDICTIONS_DB_URL": predictions_url or f"sqlite:///{tmp_path}/predictions.db"}))
    engine = make_engine(services.settings.feature_store_url)
    import_rows(engine, "features", "id", iter([(0, {"id": "1", "text": "refund my last invoice"})]))
    engine.dispose()
    return services


def failures(services):
    # Each failure with its message's payload, stored once per message (failed_messages).
    with services.predictions.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT f.message_id, f.entity_id, f.reason, m.payload FROM prediction_failures f "
            "LEFT JOIN failed_messages m ON m.message_id = f.message_id ORDER BY f.row_id"))]


def test_a_decoded_request_is_scored_and_stored(trained, tmp_path):
    services = build(trained, tmp_path)
    outcome = services.batch.handle(BatchMessage("m-1", "eyJpZCI6IjEifQ==", BatchRequest(["1", "2"], None, None)))
    assert outcome.to_dict() == {"message_id": "m-1", "status": "stored", "stored": 1, "scored": 1,
                                 "failed": {"2": "no record with id '2' in the feature store"}, "failed_count": 1}
    assert failures(services) == [("m-1", "2", "no record with id '2' in the feature store", "eyJpZCI6IjEifQ==")]


@pytest.mark.parametrize("message,reason", [
    (BatchMessage("p-1", "%%%", None, "message data is not valid base64"), "message data is not valid base64"),
    (BatchMessage("p-1", "e30=", BatchRequest(["1"], "nope", None)), "unknown model 'nope'"),
    (BatchMessage("p-1", "e30=", BatchRequest(["1"], "text", "9")), "model 'text' has no version '9'"),
])
def test_poison_is_recorded_with_its_payload_once_and_acknowledged(trained, tmp_path, message, reason):
    services = build(trained, tmp_path)
    for _ in range(2):  # a redelivery records nothing twice
        outcome = services.batch.handle(message)
        assert outcome.status == "failed" and reason in outcome.failed[""]
    [(message_id, entity_id, stored_reason, payload)] = failures(services)
    assert (message_id, entity_id, payload) == ("p-1", "", message.payload) and reason in stored_reason


def test_a_database_outage_is_not_poison(trained, tmp_path):
    # Transient: it propagates (503, Pub/Sub redelivers) instead of being acknowledged.
    services = build(trained, tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    with pytest.raises(StoreUnavailable):
        services.batch.handle(BatchMessage("m-1", "", BatchRequest(["1"], None, None)))
