"""app/metrics.py writes its samples' values directly (not through prometheus-client's public
inc / observe): the samples must be the ones the public methods give, in process and in the
workers' memory-mapped files."""
import os
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from conftest import ROOT
from mlapi import metrics

AMOUNTS = [0, 1, 2, 3, 4, 5, 8, 9, 100, 128, 129, 1024, 4096, 4097, 10 ** 6, 0.0004, 0.001, 0.0011, 2.5, 10.0, 11.0]


def _samples(registry) -> list:
    return sorted((sample.name, tuple(sorted(sample.labels.items())), sample.value)
                  for family in registry.collect() for sample in family.samples
                  if not sample.name.endswith("_created"))  # the time each was made


@pytest.mark.parametrize("buckets", [metrics.LATENCY_BUCKETS, (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)])
def test_direct_writes_are_the_public_methods_samples(buckets):
    direct, public = CollectorRegistry(), CollectorRegistry()
    made = {registry: (Counter("c", "c", ["m"], registry=registry), Histogram("h", "h", ["m"], buckets=buckets,
                                                                               registry=registry))
            for registry in (direct, public)}
    for amount in AMOUNTS:
        metrics._counting(made[direct][0], "x")(amount)
        metrics._observing(made[direct][1], "x")(amount)
        made[public][0].labels("x").inc(amount)
        made[public][1].labels("x").observe(amount)
    assert _samples(direct) == _samples(public)


def test_children_laid_out_otherwise_go_through_the_public_methods():
    calls = []

    class Child:
        def inc(self, amount):
            calls.append(("inc", amount))

        def observe(self, amount):
            calls.append(("observe", amount))

    class Metric:
        def labels(self, *labels):
            return Child()

    metric = Metric()
    metrics._counting(metric, "a")(2)
    metrics._observing(metric, "a")(3)
    assert calls == [("inc", 2), ("observe", 3)]


def _value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_prediction_a_request_and_cache_lookups_are_counted():
    model = {"model": "metrics-test", "version": "7"}
    before = {name: _value(name, **model) for name in (
        "mlapi_predictions_total", "mlapi_prediction_rows_total", "mlapi_model_batch_rows_sum",
        "mlapi_model_batch_rows_count")}
    before_bucket = _value("mlapi_model_batch_rows_bucket", **model, le="4.0")
    metrics.record_prediction("metrics-test", "7", 3)
    assert _value("mlapi_predictions_total", **model) == before["mlapi_predictions_total"] + 1
    assert _value("mlapi_prediction_rows_total", **model) == before["mlapi_prediction_rows_total"] + 3
    assert _value("mlapi_model_batch_rows_sum", **model) == before["mlapi_model_batch_rows_sum"] + 3
    assert _value("mlapi_model_batch_rows_count", **model) == before["mlapi_model_batch_rows_count"] + 1
    assert _value("mlapi_model_batch_rows_bucket", **model, le="4.0") == before_bucket + 1
    hits = _value("mlapi_cache_requests_total", result="hit")
    misses = _value("mlapi_cache_requests_total", result="miss")
    metrics.record_cache(2, 5)
    assert _value("mlapi_cache_requests_total", result="hit") == hits + 2
    assert _value("mlapi_cache_requests_total", result="miss") == misses + 5
    request = {"route": "metrics-test", "method": "POST"}
    # No model answered this request: an earlier test in this thread may have left one noted.
    token = metrics.current_model.set(None)
    try:
        metrics.record_request("metrics-test", "POST", 200, 0.003)
    finally:
        metrics.current_model.reset(token)
    assert _value("mlapi_requests_total", **request, model="", version="", status="200") >= 1
    assert _value("mlapi_request_duration_seconds_bucket", **request, le="0.0025") == 0
    assert _value("mlapi_request_duration_seconds_bucket", **request, le="0.005") >= 1


def test_worker_files_hold_the_public_methods_samples(tmp_path):
    # In multiprocess mode the values are the worker's memory-mapped ones: scraped back, the
    # direct writes and the public methods give the same lines.
    script = f"""
import os
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
from mlapi import metrics
for rows in (1, 3, 100):
    metrics.record_prediction("direct", "1", rows)
    metrics._child(metrics.PREDICTIONS, "public", "1").inc()
    metrics._child(metrics.ROWS, "public", "1").inc(rows)
    metrics._child(metrics.BATCH_SIZE, "public", "1").observe(rows)
print(metrics.exposition().decode())
"""
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if 'model="' in line]
    direct = sorted(line.replace('model="direct"', "M") for line in lines if 'model="direct"' in line)
    public = sorted(line.replace('model="public"', "M") for line in lines if 'model="public"' in line)
    assert direct == public and len(direct) == 2 + 11 + 3  # two counters, the buckets and +Inf, sum, count
    assert 'mlapi_prediction_rows_total{model="direct",version="1"} 104.0' in result.stdout
