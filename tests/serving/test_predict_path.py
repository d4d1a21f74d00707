"""The one predict path: every route reaches the model through the inference core's one path
(input → cache → micro-batching → model), and micro-batching's merge rule keeps each request's
own answer."""
import base64
import json
import threading

import pandas as pd
import pytest

from mlapi.serving import inference as inference_module
from mlapi.serving.batching import MicroBatcher
from mlapi.serving.model import ServedModel
from mlapi.store.database import make_engine
from mlapi.store.ingest import import_rows, read_rows
from conftest import as_plain, models_env


class GatedPredict:
    """A model call that blocks its first call until released, so that later requests queue
    behind it as they do under load; records each call's row count and probabilities flag."""

    def __init__(self, served: ServedModel):
        self.served = served
        self.calls: list[tuple[int, object]] = []
        self.release = threading.Event()

    def __call__(self, model_input, probabilities=None):
        self.calls.append((len(model_input), probabilities))
        if len(self.calls) == 1:
            assert self.release.wait(30)
        return self.served.predict(model_input, probabilities)


def wait_for(condition, timeout=30.0):
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("condition not reached")


def test_a_merged_batch_computes_probabilities_when_any_request_wants_them(trained):
    _, estimator, sample = trained["cancer"]
    gate = GatedPredict(ServedModel("cancer", "1", estimator))
    batcher = MicroBatcher(gate, max_rows=64, max_wait_s=0)
    results = {}

    def ask(name, rows, probabilities):
        results[name] = batcher.predict(rows, probabilities)

    leader = threading.Thread(target=ask, args=("leader", sample[:1], None))
    leader.start()
    wait_for(lambda: len(gate.calls) == 1)  # the leader is inside the model call
    followers = [threading.Thread(target=ask, args=("wants", sample[1:3], True)),
                 threading.Thread(target=ask, args=("refuses", sample[3:5], False))]
    for thread in followers:
        thread.start()
    wait_for(lambda: len(batcher._queue) == 2)  # both queued behind the running call
    gate.release.set()
    for thread in [leader, *followers]:
        thread.join(30)
    assert gate.calls[1] == (4, True)  # one merged call for both followers, with probabilities
    assert results["wants"].predictions == estimator.predict(sample[1:3]).tolist()
    # (the merged call's rows: a different row count may round the last bit differently)
    assert results["wants"].probabilities == estimator.predict_proba(sample[1:5])[:2].tolist()
    assert results["refuses"].predictions == estimator.predict(sample[3:5]).tolist()
    assert results["refuses"].probabilities is None


@pytest.fixture
def store_url(tmp_path, trained):
    url = f"sqlite:///{tmp_path}/features.db"
    frame = pd.DataFrame({"id": ["1", "2"], "text": ["refund my last invoice", "the app crashes on my phone"]})
    frame.to_csv(tmp_path / "texts.csv", index=False)
    engine = make_engine(url)
    import_rows(engine, "features", "id", read_rows(tmp_path / "texts.csv"))
    engine.dispose()
    return url


def test_every_route_reaches_the_model_through_micro_batching(make_app, trained, store_url, monkeypatch):
    batched = []
    original = MicroBatcher.predict

    def recording(self, model_input, probabilities=None):
        batched.append(len(model_input))
        return original(self, model_input, probabilities)

    monkeypatch.setattr(MicroBatcher, "predict", recording)
    client = make_app(MODELS=models_env(trained, "text", "cancer"), MAX_BATCH_SIZE="8",
                      FEATURE_STORE_URL=store_url).test_client()
    text_estimator, cancer = trained["text"][1], trained["cancer"][1]
    rows = as_plain(trained["cancer"][2])
    answers = {
        "native": client.post("/models/cancer/predict", json={"instances": rows}),
        "features": client.post("/models/cancer/predict_features", json={"features": rows}),
        "text": client.post("/model/text/text_to_prediction", json={"text": "refund please", "skip_cache": True}),
        "flat features": client.post("/model/cancer/features_to_prediction",
                                     json={"features": rows[0], "skip_cache": True}),
        "by id": client.get("/models/text/predict/2"),
        "pubsub": client.post("/pubsub/push", json={"message": {
            "data": base64.b64encode(json.dumps({"ids": ["1", "2"], "model": "text"}).encode()).decode(),
            "messageId": "m-1", "attributes": {}}, "subscription": "projects/p/subscriptions/s"}),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200)
    assert batched == [5, 5, 1, 1, 1, 2]
    assert answers["native"].get_json()["predictions"] == cancer.predict(trained["cancer"][2]).tolist()
    assert answers["text"].get_json()["top"]["label"] == text_estimator.predict(["refund please"])[0]
    assert answers["by id"].get_json()["prediction"]["label"] == text_estimator.predict(
        ["the app crashes on my phone"])[0]
    assert answers["pubsub"].get_json()["scored"] == 2


def test_a_record_the_model_rejects_fails_alone_in_a_pubsub_batch(trained):
    # Pub/Sub batches and micro-batches isolate a rejected input by the same rule
    # (batching.predict_merged): here through InferenceService.predict_ids.
    _, estimator, sample = trained["cancer"]
    served = ServedModel("cancer", "1", estimator)

    class Registry:
        def get(self, name, version):
            return served

    class Store:
        text_column = "text"

        def lookup(self, ids):
            return {i: {"id": i} for i in ids}

        def feature_columns(self):
            return [f"f{j}" for j in range(30)]

    records = {"a": sample[0].tolist(), "bad": ["x"] * 30, "c": sample[1].tolist()}
    service = inference_module.InferenceService(Registry(), None, Store())
    service._instance = lambda model, entity_id, record: (records[entity_id], records[entity_id])
    scored = service.predict_ids(inference_module.ModelRef("cancer"), ["a", "bad", "c"])
    assert scored.ids == ["a", "c"] and list(scored.failures) == ["bad"]
    assert scored.result.predictions == estimator.predict(sample[:2]).tolist()


def test_sparse_feature_rows_are_merged_and_mixed_ones_answered_apart(trained):
    # predict_features takes the CSR rows /features returns (a TF-IDF model): merged batches
    # stack them as sparse; sparse beside dense cannot be merged, and each is answered alone.
    _, estimator, texts = trained["text"]
    served = ServedModel("text", "1", estimator)
    sparse_rows = estimator[:-1].transform(texts)
    final_step = estimator[-1]
    for kind in ("sparse", "dense"):
        second = sparse_rows[1:] if kind == "sparse" else sparse_rows[1:].toarray()
        calls, release = [], threading.Event()

        def predict_features(rows, probabilities):
            calls.append(rows.shape[0])
            if len(calls) == 1:
                assert release.wait(30)
            return served.predict_features(rows, probabilities)

        batcher = MicroBatcher(predict_features, max_rows=64, max_wait_s=0)
        results = {}

        def ask(name, rows):
            results[name] = batcher.predict(rows, None)

        threads = [threading.Thread(target=ask, args=("leader", sparse_rows[:1]))]
        threads[0].start()
        wait_for(lambda: len(calls) == 1)
        threads += [threading.Thread(target=ask, args=("first", sparse_rows[:1])),
                    threading.Thread(target=ask, args=("second", second))]
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: len(batcher._queue) == 2)
        release.set()
        for thread in threads:
            thread.join(30)
        assert results["first"].predictions == final_step.predict(sparse_rows[:1]).tolist()
        assert results["second"].predictions == final_step.predict(second).tolist()
        assert calls[1:] == ([3] if kind == "sparse" else [1, 2])  # one merged call, or each alone
