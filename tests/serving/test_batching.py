"""Adaptive micro-batching: merged calls under load, none when idle, exact per-request answers,
failures isolated."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from mlapi.serving.batching import MicroBatcher, predict_merged
from mlapi.errors import InvalidInput
from mlapi.serving.model import ServedModel
from conftest import models_env


class CountingModel:
    """Wraps a ServedModel's predict, counting calls and slowing the first one down so
    that requests pile up behind it, as they do under load."""

    def __init__(self, served: ServedModel, first_call_seconds=0.2):
        self.served = served
        self.calls: list[int] = []
        self.first_call_seconds = first_call_seconds
        self.lock = threading.Lock()

    def __call__(self, model_input, probabilities=None):
        with self.lock:
            self.calls.append(len(model_input))
            first = len(self.calls) == 1
        if first:
            time.sleep(self.first_call_seconds)
        return self.served.predict(model_input, probabilities)


@pytest.fixture
def cancer_model(trained):
    _, estimator, sample = trained["cancer"]
    return ServedModel("cancer", "1", estimator), estimator


def test_idle_request_runs_at_once_alone(cancer_model, trained):
    served, estimator = cancer_model
    counting = CountingModel(served, first_call_seconds=0)
    batcher = MicroBatcher(counting, max_rows=64, max_wait_s=60)
    rows = trained["cancer"][2][:2]
    started = time.perf_counter()
    result = batcher.predict(rows)
    # A behaviour bound, not a timing: had it waited for the 60 s MAX_BATCH_WAIT, it would show.
    assert time.perf_counter() - started < 30
    assert counting.calls == [2] and result.predictions == estimator.predict(rows).tolist()


def test_concurrent_requests_share_calls_and_get_their_own_answers(cancer_model):
    from sklearn.datasets import load_breast_cancer

    served, estimator = cancer_model
    X = load_breast_cancer().data
    counting = CountingModel(served)
    batcher = MicroBatcher(counting, max_rows=64, max_wait_s=0.002)
    requests_rows = [X[i:i + 1 + i % 3] for i in range(32)]
    barrier = threading.Barrier(32)

    def call(rows):
        barrier.wait()
        return batcher.predict(rows)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, requests_rows))
    assert len(counting.calls) < 8 and max(counting.calls) > 10  # merged, not one call per request
    assert all(size <= 64 for size in counting.calls)
    for rows, result in zip(requests_rows, results):
        assert result.predictions == estimator.predict(rows).tolist()  # labels exactly the model's
        # BLAS may sum a batch in another order than a single row: equal to the last bits
        np.testing.assert_allclose(result.probabilities, estimator.predict_proba(rows), rtol=1e-12, atol=1e-15)
        assert result.classes == [0, 1]


def test_wait_is_counted_from_the_oldest_request_not_from_the_batch(cancer_model, trained):
    # MAX_BATCH_WAIT_MS bounds the oldest request's wait: requests queued behind a 1 s call
    # have already waited longer than the 0.9 s limit, so their batch runs the moment that
    # call ends, instead of waiting another 0.9 s for rows that will not come.
    served, _ = cancer_model
    counting = CountingModel(served, first_call_seconds=1.0)
    batcher = MicroBatcher(counting, max_rows=64, max_wait_s=0.9)
    rows = trained["cancer"][2][:1]
    first = threading.Thread(target=batcher.predict, args=(rows,))
    started = time.perf_counter()
    first.start()
    while not counting.calls:  # the first call is running
        time.sleep(0.001)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: batcher.predict(rows), range(3)))
    elapsed = time.perf_counter() - started
    first.join()
    assert counting.calls == [1, 3]
    assert elapsed < 1.7  # 1.9 s or more had the batch waited after the call


def test_one_bad_request_fails_alone(trained):
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    estimator = LogisticRegression().fit(X, [0, 1, 1, 0])
    served = ServedModel("lr", "1", estimator)
    counting = CountingModel(served)
    batcher = MicroBatcher(counting, max_rows=64, max_wait_s=0.01)
    inputs = [X[:1], np.array([[np.nan, 1.0]]), X[2:3], X[3:4]] * 4
    barrier = threading.Barrier(len(inputs))

    def call(rows):
        barrier.wait()
        try:
            return batcher.predict(rows).predictions
        except InvalidInput as exc:
            return exc

    with ThreadPoolExecutor(len(inputs)) as pool:
        outcomes = list(pool.map(call, inputs))
    for rows, outcome in zip(inputs, outcomes):
        if np.isnan(rows).any():
            assert isinstance(outcome, InvalidInput) and "NaN" in outcome.message
        else:
            assert outcome == estimator.predict(rows).tolist()


def test_a_rejected_merged_call_is_not_explained_only_its_parts_are():
    """Explaining the merged rows would be thrown away: the parts are retried and explained alone."""
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    served = ServedModel("lr", "1", LogisticRegression().fit(X, [0, 1, 1, 0]))
    rejected = []

    def predict(rows, probabilities):
        try:
            return served.predict(rows, probabilities)
        except InvalidInput as exc:
            rejected.append(exc.message)
            raise

    good, bad = X[:1], np.array([[np.nan, 1.0]])
    outcomes = predict_merged(predict, [good, bad], [None, None])
    assert outcomes[0].predictions == served.predict(good).predictions
    merged, alone = rejected  # the merged call, then the bad part alone
    assert merged.startswith("input does not fit the model") and "instance 1" not in merged
    assert alone.startswith("instance 0, feature 0: the value is missing") and outcomes[1].message == alone


def test_batches_never_exceed_max_rows(cancer_model, trained):
    served, _ = cancer_model
    counting = CountingModel(served)
    batcher = MicroBatcher(counting, max_rows=5, max_wait_s=0)
    rows = trained["cancer"][2][:2]
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda _: batcher.predict(rows), range(12)))
    assert max(counting.calls) <= 5 and sum(counting.calls) == 24


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_batching_in_real_workers(start_server, trained, server):
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer().data
    estimator = trained["cancer"][1]
    srv = start_server({"MODELS": models_env(trained, "cancer"), "MAX_BATCH_SIZE": "64", "MAX_BATCH_WAIT_MS": "2",
                        "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}, args=("serve", "--server", server))

    def call(i):
        rows = X[i % len(X):i % len(X) + 1]
        body = requests.post(f"{srv.url}/predict", json={"instances": rows.tolist()}, timeout=30).json()
        return rows, body

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(600)))
    for rows, body in results:
        assert body["predictions"] == estimator.predict(rows).tolist()
        np.testing.assert_allclose(body["probabilities"], estimator.predict_proba(rows), rtol=1e-12, atol=1e-15)
    metrics = requests.get(f"{srv.url}/metrics").text
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("mlapi_model_batch_rows_count{"))
    rows = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("mlapi_model_batch_rows_sum{"))
    assert rows == 600 and calls < 600  # some requests were answered together
