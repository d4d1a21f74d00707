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


def note_model(name: str, version: str) -> None:
    current_model.set((name, version))


def record_prediction(name: str, version: str, rows: int) -> None:
    _child(PREDICTIONS, name, version).inc()
    _child(ROWS, name, version).inc(rows)
    _child(BATCH_SIZE, name, version).observe(rows)


def record_cache(hits: int, misses: int) -> None:
    """A request's instances looked up in the prediction cache: how many were found."""
    if hits:
        _child(CACHE, "hit").inc(hits)
    if misses:
        _child(CACHE, "miss").inc(misses)


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    model = current_model.get() or ("", "")
    _child(REQUESTS, route, method, model[0], model[1], str(status)).inc()
    _child(LATENCY, route, method).observe(seconds)


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
