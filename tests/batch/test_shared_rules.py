"""Decisions made once for every path: which columns feed a model (predict by id, Pub/Sub,
bulk), the stored prediction row (Pub/Sub and bulk), and file formats by extension (bulk
and `features import`)."""
from __future__ import annotations

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from mlapi.batch import bulk
from mlapi.batch.bulk.read import layout_for
from mlapi.config import Settings
from mlapi.errors import InvalidInput
from mlapi.protocols.pubsub import BatchMessage, BatchRequest
from mlapi.serving.inference import ModelRef
from mlapi.serving.records import record_to_instance
from mlapi.services import build_services
from mlapi.store.database import make_engine
from mlapi.store.files import file_format
from mlapi.store.ingest import import_rows, read_rows
from conftest import models_env

TEXTS = {"1": "refund my last invoice", "2": "the app crashes on my phone", "3": "cannot log in to my account"}


@pytest.fixture
def services(trained, tmp_path):
    settings = Settings.from_env({"MODELS": models_env(trained, "text", "cancer", "diabetes"),
                                  "MODEL_CACHE_DIR": str(tmp_path / "cache"),
                                  "FEATURE_STORE_URL": f"sqlite:///{tmp_path}/features.db",
                                  "PREDICTIONS_DB_URL": f"sqlite:///{tmp_path}/predictions.db"})
    return build_services(settings)


# ---- which columns feed a model ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["text", "cancer", "diabetes"])
def test_a_file_and_a_store_record_feed_the_model_the_same_columns(services, trained, name):
    model = services.registry.get(name)
    sample = trained[name][2]
    frame = (pd.DataFrame({"text": sample}) if name == "text" else
             pd.DataFrame(sample, columns=None if name == "cancer" else sample.columns))
    frame.columns = [str(c) for c in frame.columns]
    header = ["id", *frame.columns, "note"] if name != "cancer" else ["id", *frame.columns]
    layout = layout_for(model, header, "id", "text")
    record = {"id": "r1", "note": "ignored", **frame.iloc[0].to_dict()}
    instance, _ = record_to_instance(model, "r1", record, "text", lambda: list(frame.columns))
    if name == "text":
        assert layout.columns == ("text",) and instance == record["text"]
    elif name == "diabetes":  # fitted with names: those, in the model's order, as a mapping
        assert layout.columns == tuple(sample.columns) and list(instance) == list(sample.columns)
    else:  # fitted on an array: the source's feature columns, in their order, as a list
        assert layout.columns == tuple(frame.columns) and instance == [record[c] for c in frame.columns]


def test_the_feature_count_check_is_the_same_for_a_file_and_the_store(services):
    model = services.registry.get("cancer")
    with pytest.raises(InvalidInput) as from_file:
        layout_for(model, ["id", "a", "b"], "id", "text")
    with pytest.raises(InvalidInput) as from_store:
        record_to_instance(model, "r1", {"id": "r1", "a": 1.0, "b": 2.0}, "text", lambda: ["a", "b"])
    expected = ("model cancer was fitted without feature names and expects 30 feature columns; {} has 2: "
                "['a', 'b']; give it exactly 30 feature columns, in the order the model was trained on")
    assert from_file.value.message == expected.format("the input")
    assert from_store.value.message == expected.format("the store")


# ---- the stored prediction row -----------------------------------------------------------------
def stored(services) -> dict[str, dict[str, dict]]:
    """message id → entity id → the stored prediction."""
    with services.predictions.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT message_id, entity_id, model_name, model_version, prediction "
                                    "FROM predictions")).all()
    out: dict[str, dict[str, dict]] = {}
    for message_id, entity_id, model_name, model_version, prediction in rows:
        assert (model_name, model_version) == ("text", "1")
        out.setdefault(message_id, {})[entity_id] = orjson.loads(prediction)
    return out


def test_pubsub_and_bulk_store_the_same_row_for_the_same_record(services, trained, tmp_path):
    engine = make_engine(services.settings.feature_store_url)
    import_rows(engine, "features", "id", iter([(0, {"id": k, "text": v}) for k, v in TEXTS.items()]))
    engine.dispose()
    model = services.registry.get("text")
    outcome = services.batch.handle(BatchMessage("m-1", "", BatchRequest(list(TEXTS), "text", None)))
    assert outcome.stored == 3
    shard = bulk.Shard()
    with bulk.PredictionsSink(services.predictions, model, "store", shard) as sink:
        bulk.score_store(services.inference, ModelRef("text", "1"), services.feature_store, sink, 2, shard)
    pd.DataFrame({"id": list(TEXTS), "text": list(TEXTS.values())}).to_csv(tmp_path / "in.csv", index=False)
    with bulk.PredictionsSink(services.predictions, model, "file", shard) as sink:
        bulk.score_file(model, tmp_path / "in.csv", sink, 2, shard, "id", "text")
    rows = stored(services)
    pubsub = rows.pop("m-1")
    from_store = {**rows.pop("batch:store:0:0"), **rows.pop("batch:store:0:1")}
    from_file = {**rows.pop("batch:file:0:0"), **rows.pop("batch:file:0:1")}
    assert rows == {} and pubsub == from_store == from_file
    estimator = trained["text"][1]
    for entity_id, text in TEXTS.items():
        proba = estimator.predict_proba([text])[0]
        assert pubsub[entity_id]["label"] == estimator.predict([text])[0]
        assert pubsub[entity_id]["scores"] == sorted(proba.tolist(), reverse=True)
        assert pubsub[entity_id]["sequence"] == text


# ---- file formats by extension -------------------------------------------------------------------
@pytest.mark.parametrize("suffix,expected", [(".csv", "csv"), (".CSV", "csv"), (".parquet", "parquet"),
                                             (".pq", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                                             (".json", "jsonl")])
def test_one_mapping_of_extensions(suffix, expected):
    assert file_format(f"data{suffix}") == expected


@pytest.mark.parametrize("name", ["data.xlsx", "data"])
def test_other_extensions_are_422(name):
    with pytest.raises(InvalidInput) as raised:
        file_format(name)
    assert raised.value.status_code == 422 and "unsupported file type" in raised.value.message


@pytest.mark.parametrize("suffix", [".pq", ".ndjson", ".json"])
def test_every_extension_works_for_import_and_for_bulk_scoring(services, trained, tmp_path, suffix):
    frame = pd.DataFrame({"id": list(TEXTS), "text": list(TEXTS.values())})
    path = tmp_path / f"records{suffix}"
    if suffix == ".pq":
        frame.to_parquet(path, index=False)
    else:
        path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in frame.to_dict("records")))
    engine = make_engine(services.settings.feature_store_url)
    assert import_rows(engine, "features", "id", read_rows(path)).written == 3
    engine.dispose()
    model = services.registry.get("text")
    with bulk.FileSink(tmp_path / f"out{suffix}", model, "id") as sink:
        bulk.score_file(model, path, sink, 2, bulk.Shard(), "id", "text")
    out = (pd.read_parquet(tmp_path / f"out{suffix}") if suffix == ".pq" else
           pd.DataFrame([orjson.loads(line) for line in (tmp_path / f"out{suffix}").read_bytes().splitlines()]))
    assert list(out["id"]) == list(TEXTS)
    assert list(out["prediction"]) == list(trained["text"][1].predict(list(TEXTS.values())))
    assert services.inference.predict_id(ModelRef("text"), "2").data == [TEXTS["2"]]
