"""Prometheus metrics, correct across uWSGI / gunicorn worker processes.

`mlapi serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before the server starts,
so every worker writes its samples to memory-mapped files there and GET /metrics (answered by
any worker) sums them all (prometheus-client's multiprocess mode). Without it (tests, the
Flask dev server) metrics live in the process.

The inference core records model-level facts (predictions, rows, batch sizes, cache use);
the HTTP layer records requests. `current_model` carries the model a request resolved to
from the core to the request metrics without the core knowing about HTTP.
"""
from __future__ import annotations

import bisect
import contextvars
import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess, values

current_model: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("current_model", default=None)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("mlapi_requests_total", "HTTP requests", ["route", "method", "model", "version", "status"])
LATENCY = Histogram("mlapi_request_duration_seconds", "HTTP request latency", ["route", "method"],
                    buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("mlapi_predictions_total", "predict calls answered", ["model", "version"])
ROWS = Counter("mlapi_prediction_rows_total", "rows (instances) predicted", ["model", "version"])
BATCH_SIZE = Histogram("mlapi_model_batch_rows", "rows per model call (micro-batching merges requests)",
                       ["model", "version"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096))
CACHE = Counter("mlapi_cache_requests_total", "prediction cache lookups, one per instance", ["result"])


# metric.labels(...) rebuilds and looks up the label tuple under a lock on every call: ~3 µs,
# five times a prediction request. The children are few (routes × models × statuses), so
# each is looked up once. Bounded all the same, should a label ever take unbounded values.
@functools.lru_cache(maxsize=4096)
def _child(metric, *labels: str):
    return metric.labels(*labels)


# What a child's inc() / observe() end in: the sample values' own inc (a float under a lock, or
# the worker's memory-mapped file). The public methods add, per call, checks that cannot fail
# for our children (labelled, amounts >= 0, no exemplars) and, for a histogram, a Python loop
# over the buckets. Without them (callgrind, instructions a call): record_prediction 23,200 ->
# 15,600 in process, 39,700 -> 32,200 with worker files; record_request 18,900 -> 14,700 and
# 31,600 -> 27,300. Falls back to the public methods should prometheus-client lay its children
# out otherwise (tests/test_metrics.py checks both ways give the same samples).
@functools.lru_cache(maxsize=4096)
def _counting(metric, *labels: str):
    """The child's `add(amount)`."""
    child = _child(metric, *labels)
    value = getattr(child, "_value", None)
    return value.inc if callable(getattr(value, "inc", None)) else child.inc


@functools.lru_cache(maxsize=4096)
def _observing(metric, *labels: str):
    """The histogram child's `observe(amount)`: the sum, then the first bucket whose upper
    bound is >= amount (bisect_left over the sorted bounds, the last +Inf)."""
    child = _child(metric, *labels)
    total, buckets, bounds = (getattr(child, name, None) for name in ("_sum", "_buckets", "_upper_bounds"))
    if not (callable(getattr(total, "inc", None)) and isinstance(buckets, list) and isinstance(bounds, (list, tuple))
            and len(buckets) == len(bounds) and all(callable(getattr(bucket, "inc", None)) for bucket in buckets)):
        return child.observe
    bounds, adds = tuple(bounds), tuple(bucket.inc for bucket in buckets)

    def observe(amount):
        total.inc(amount)
        adds[bisect.bisect_left(bounds, amount)](1)
    return observe


def note_model(name: str, version: str) -> None:
    current_model.set((name, version))


def record_prediction(name: str, version: str, rows: int) -> None:
    count_call, count_rows, observe_rows = _prediction_children(name, version)
    count_call(1)
    count_rows(rows)
    observe_rows(rows)


@functools.lru_cache(maxsize=4096)
def _prediction_children(name: str, version: str):
    """A model's three prediction metrics, looked up once: one cache lookup a model call."""
    return _counting(PREDICTIONS, name, version), _counting(ROWS, name, version), _observing(BATCH_SIZE, name, version)


def record_cache(hits: int, misses: int) -> None:
    """A request's instances looked up in the prediction cache: how many were found."""
    if hits:
        _counting(CACHE, "hit")(hits)
    if misses:
        _counting(CACHE, "miss")(misses)


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    model = current_model.get() or ("", "")
    _counting(REQUESTS, route, method, model[0], model[1], str(status))(1)
    _observing(LATENCY, route, method)(seconds)


def _scraped_registry() -> CollectorRegistry:
    """What GET /metrics reports, decided once. prometheus-client chose, when it was imported
    (from the environment `mlapi serve` prepared), whether the metrics above write their
    samples to per-worker files; the scrape reads them back the same way, from the directory
    the collector finds now. It re-reads the files on every scrape, so one registry serves all."""
    if values.ValueClass is values.MutexValue:  # in-process samples (tests, the dev server)
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


_SCRAPED = _scraped_registry()


def exposition() -> bytes:
    return generate_latest(_SCRAPED)
