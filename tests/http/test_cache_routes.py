"""The prediction cache on every route that CACHE_ROUTES names, through the app (the fast path
and Flask both): X-Cache MISS then HIT, answers equal to the model's own, keys that ignore key
order and 1 vs 1.0, labels apart from probabilities, a changed artifact apart from the old one,
many instances looked up with one MGET and the model run once on the misses, in order."""
import secrets
import shutil
import threading

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import REDIS, models_env, to_rows
from mlapi.serving.model import ServedModel
from test_call_log_routes import stocked_store
from test_fastpath import flask_only

ALL = ("cancer", "diabetes", "text")


def ways_in(app):
    return {"fast path": app.test_client(), "flask": flask_only(app)}


def answer(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.headers.get("X-Cache"), response.headers.get("X-Cache-Hits"), response.get_json()


def fresh_rows(trained, name, count=5):
    """Rows of the model's sample moved by a random amount: no earlier run has cached them."""
    sample = np.asarray(trained[name][2], dtype=float)[:count]
    return sample + secrets.randbelow(10**6) / 10**9


@pytest.mark.parametrize("way", ["fast path", "flask"])
def test_native_predict_misses_then_hits_with_the_models_own_answers(make_app, trained, way):
    app = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="predict")
    client = ways_in(app)[way]
    estimator = trained["cancer"][1]
    rows = fresh_rows(trained, "cancer")
    body = {"instances": rows.tolist()}
    first = answer(client, "/models/cancer/predict", body)
    second = answer(client, "/models/cancer/predict", body)
    assert first[:2] == ("MISS", "0/5") and second[:2] == ("HIT", "5/5")
    for _, _, got in (first, second):
        assert got["predictions"] == estimator.predict(rows).tolist()
        np.testing.assert_allclose(got["probabilities"], estimator.predict_proba(rows))
    assert second[2] == first[2]
    # /predict (the default model) and the version's own URL use the same entries
    assert answer(client, "/predict", body)[:2] == ("HIT", "5/5")
    assert answer(client, "/models/cancer/versions/1/predict", body)[:2] == ("HIT", "5/5")


def test_by_default_only_the_text_routes_consult_the_cache(make_app, trained):
    app = make_app(MODELS=models_env(trained, *ALL))
    client = app.test_client()
    body = {"instances": to_rows(trained["cancer"][2])}
    for _ in range(2):
        response = client.post("/models/cancer/predict", json=body)
        assert response.status_code == 200 and "X-Cache" not in response.headers
    text = {"text": f"refund my invoice {secrets.token_hex(4)}"}
    assert answer(client, "/model/text/text_to_prediction", text)[:2] == ("MISS", "0/1")
    cached, hits, got = answer(client, "/model/text/text_to_prediction", text)
    assert (cached, hits, got["from_cache"]) == ("HIT", "1/1", True)


def test_the_text_routes_keep_from_cache_and_skip_cache(make_app, trained):
    app = make_app(MODELS=models_env(trained, *ALL))
    for way, client in ways_in(app).items():
        text = f"the app crashes {secrets.token_hex(4)}"
        estimator = trained["text"][1]
        _, _, first = answer(client, "/model/text/text_to_prediction", {"text": text})
        assert first["from_cache"] is False
        assert first["top"]["label"] == estimator.predict([text])[0]
        skipped = client.post("/model/text/text_to_prediction", json={"text": text, "skip_cache": True})
        assert skipped.get_json()["from_cache"] is False and "X-Cache" not in skipped.headers
        _, _, again = answer(client, "/model/text/text_to_prediction", {"text": text})
        assert again == {**first, "from_cache": True}
        _, _, features = answer(client, "/model/text/text_to_features", {"text": text})
        cached, _, features_again = answer(client, "/model/text/text_to_features", {"text": text})
        assert cached == "HIT" and features_again == {**features, "from_cache": True}
        assert features["from_cache"] is False


def test_cache_routes_none_leaves_the_text_routes_uncached(make_app, trained):
    client = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="none").test_client()
    for _ in range(2):
        response = client.post("/model/text/text_to_prediction", json={"text": "refund please"})
        assert response.get_json()["from_cache"] is False and "X-Cache" not in response.headers


def test_key_order_and_number_spelling_do_not_split_entries(make_app, trained):
    app = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="predict")
    client = app.test_client()
    # objects keyed by feature name, keys in two orders
    frame = trained["diabetes"][2]
    records = [dict(zip(frame.columns, row)) for row in fresh_rows(trained, "diabetes", 3).tolist()]
    assert answer(client, "/models/diabetes/predict", {"instances": records})[0] == "MISS"
    reordered = [dict(reversed(list(record.items()))) for record in records]
    hit = answer(client, "/models/diabetes/predict", {"instances": reordered})
    assert hit[0] == "HIT"
    expected = trained["diabetes"][1].predict(pd.DataFrame(records, columns=frame.columns))
    assert hit[2]["predictions"] == pytest.approx(expected.tolist())
    # 1, 1.0 and 1.00: whole numbers sent as ints, then as floats in two spellings
    whole = np.round(fresh_rows(trained, "cancer", 2) * 1000 + secrets.randbelow(1000)).astype(int)
    as_ints = {"instances": whole.tolist()}
    assert answer(client, "/models/cancer/predict", as_ints)[0] == "MISS"
    cached, _, got = answer(client, "/models/cancer/predict", {"instances": whole.astype(float).tolist()})
    assert cached == "HIT" and got["predictions"] == trained["cancer"][1].predict(whole.astype(float)).tolist()
    raw = '{"instances": [' + ", ".join("[" + ", ".join(f"{v}.00" for v in row) + "]" for row in whole.tolist()) + "]}"
    response = client.post("/models/cancer/predict", data=raw, content_type="application/json")
    assert response.headers["X-Cache"] == "HIT"


def test_labels_only_and_probabilities_are_apart(make_app, trained):
    app = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="predict")
    client = app.test_client()
    rows = fresh_rows(trained, "cancer", 2).tolist()
    labels_only = {"instances": rows, "parameters": {"probabilities": False}}
    cached, _, first = answer(client, "/models/cancer/predict", labels_only)
    assert cached == "MISS" and "probabilities" not in first
    cached, _, full = answer(client, "/models/cancer/predict", {"instances": rows})
    assert cached == "MISS" and len(full["probabilities"]) == 2  # not the labels-only entry
    cached, _, again = answer(client, "/models/cancer/predict", labels_only)
    assert cached == "HIT" and again == first


def test_predict_features_and_by_id(make_app, trained, tmp_path):
    app = make_app(MODELS=models_env(trained, "cancer", "text"), CACHE_ROUTES="predict_features,by_id",
                   FEATURE_STORE_URL=stocked_store(tmp_path))
    client = app.test_client()
    scaled = trained["cancer"][1][:-1].transform(fresh_rows(trained, "cancer", 3)).tolist()
    assert answer(client, "/models/cancer/predict_features", {"features": scaled})[:2] == ("MISS", "0/3")
    cached, _, got = answer(client, "/models/cancer/predict_features", {"features": scaled})
    assert cached == "HIT" and got["predictions"] == trained["cancer"][1][-1].predict(np.array(scaled)).tolist()
    predict = client.post("/models/cancer/predict", json={"instances": to_rows(trained["cancer"][2])})
    assert "X-Cache" not in predict.headers  # not named
    first, second = client.get("/models/text/predict/1"), client.get("/models/text/predict/1")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.get_json() == second.get_json()
    assert first.get_json()["prediction"]["label"] == trained["text"][1].predict(["refund my last invoice"])[0]


def test_a_rejected_instance_among_hits_is_named_by_its_place_in_the_request(make_app, trained):
    app = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="predict")
    client = app.test_client()
    rows = fresh_rows(trained, "cancer", 3).tolist()
    answer(client, "/models/cancer/predict", {"instances": rows})
    bad = list(rows[0])
    bad[4] = "many"
    response = client.post("/models/cancer/predict", json={"instances": [rows[0], rows[1], rows[2], bad]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error.get("instance") == 3 and "instance 3" in error["message"], error


# ---- shared in Redis (real Redis at 127.0.0.1:6379, its database 13) -----------------------
REDIS_DB = 13


def redis_url():
    return f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}"


class MonitoredCommands:
    """The commands Redis runs on database REDIS_DB while it is open (MONITOR)."""

    def __init__(self, redis_client):
        import redis

        self.lines: list[str] = []
        self._client = redis.Redis(*REDIS, socket_timeout=5)
        self._monitor = self._client.monitor().__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for command in self._monitor.listen():
                if command.get("db") == REDIS_DB:
                    self.lines.append(command["command"])
        except Exception:  # closed at the end of the test
            pass

    def named(self, verb: str) -> list[str]:
        return [line for line in self.lines if line.split(" ", 1)[0].upper() == verb]

    def close(self):
        self._client.close()
        self._monitor.connection.disconnect()


def written_soon(client, path, body, timeout=2.0):
    """The answer once the cache has every instance (writes do not wait for Redis)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = answer(client, path, body)
        if got[0] == "HIT" or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_five_instances_with_two_cached_take_one_mget_and_one_model_call_on_three(make_app, trained, redis_client):
    app = make_app(MODELS=models_env(trained, *ALL), CACHE_ROUTES="predict", REDIS_URL=redis_url())
    client = app.test_client()
    rows = fresh_rows(trained, "cancer", 5)
    answer(client, "/models/cancer/predict", {"instances": rows[[1, 3]].tolist()})
    written_soon(client, "/models/cancer/predict", {"instances": rows[[1, 3]].tolist()})
    model = app.extensions["mlapi.services"].registry.get("cancer", None)
    calls = []
    own_predict = ServedModel.predict

    def counted(model_input, probabilities=None):
        calls.append(np.asarray(model_input).copy())
        return own_predict(model, model_input, probabilities)

    monitor = MonitoredCommands(redis_client)
    model.predict = counted
    try:
        cached, hits, got = answer(client, "/models/cancer/predict", {"instances": rows.tolist()})
    finally:
        del model.predict
        import time
        time.sleep(0.2)  # MONITOR's stream lags the commands a little
        monitor.close()
    assert (cached, hits) == ("MISS", "2/5")
    assert len(monitor.named("MGET")) == 1 and not monitor.named("GET")
    assert len(calls) == 1 and calls[0].shape[0] == 3
    np.testing.assert_allclose(calls[0], rows[[0, 2, 4]])
    estimator = trained["cancer"][1]
    assert got["predictions"] == estimator.predict(rows).tolist()  # the request's order
    np.testing.assert_allclose(got["probabilities"], estimator.predict_proba(rows))


def test_a_changed_artifact_misses_the_old_ones_entries(make_app, trained, redis_client, tmp_path):
    from sklearn.linear_model import LogisticRegression

    old = tmp_path / "old.joblib"
    shutil.copy(trained["cancer"][0], old)
    first = make_app(MODELS=f"m={old}", CACHE_ROUTES="predict", REDIS_URL=redis_url()).test_client()
    rows = fresh_rows(trained, "cancer", 2).tolist()
    body = {"instances": rows}
    answer(first, "/models/m/predict", body)
    assert written_soon(first, "/models/m/predict", body)[0] == "HIT"
    # the same name and version, another artifact (another sha256): a miss, its own answers
    estimator = trained["cancer"][1]
    changed = LogisticRegression(C=0.001, max_iter=50).fit(np.asarray(trained["cancer"][2] + 0.0).repeat(2, 0),
                                                           [0, 1] * 5)
    new = tmp_path / "new.joblib"
    joblib.dump(changed, new)
    second = make_app(MODELS=f"m={new}", CACHE_ROUTES="predict", REDIS_URL=redis_url()).test_client()
    cached, _, got = answer(second, "/models/m/predict", body)
    assert cached == "MISS" and got["predictions"] == changed.predict(np.array(rows)).tolist()
    # the same artifact elsewhere (same sha256): its entries
    same = tmp_path / "same.joblib"
    shutil.copy(old, same)
    third = make_app(MODELS=f"other={same}", CACHE_ROUTES="predict", REDIS_URL=redis_url()).test_client()
    cached, _, got = answer(third, "/models/other/predict", body)
    assert cached == "HIT" and got["predictions"] == estimator.predict(np.array(rows)).tolist()
