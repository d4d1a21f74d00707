"""How long a worker may drain, take over one request, and live, and how many workers there
are: one value each, handed by `mlapi serve` to whichever server it runs (uwsgi.ini reads them
as $(MLAPI_...) placeholders, gunicorn as flags, granian as arguments), so the three servers
cannot drift apart."""
from __future__ import annotations

from pathlib import Path

from mlapi.config import Settings
from mlapi.server.cpus import available_cpus

# Cloud Run sends SIGKILL 10 s after SIGTERM: in-flight requests get 8 of them to finish
# (uWSGI's worker-reload-mercy / reload-mercy, gunicorn's --graceful-timeout, granian's
# workers_kill_timeout).
DRAIN_SECONDS = 8

# A client has this long to send its request line and headers; then its connection is closed.
# Headers are a few hundred bytes: a client still sending them after 10 s is broken or
# hostile (uWSGI's http-headers-timeout, granian's header_read_timeout; gunicorn's read of the
# headers is held to it by mlapi.server.gunicorn_worker).
HEADERS_SECONDS = 10

# Past REQUEST_TIMEOUT the app answers 504 itself (app/http/deadline.py); for code the app's
# timer cannot interrupt (a long native call that never returns to Python) the server steps in
# this much later (kill_after): gunicorn's --timeout kills the worker, uWSGI's router closes the
# connection (http-timeout) and its harakiri kills the worker one grace later still
# (uwsgi_harakiri). granian has no such kill.
KILL_GRACE_SECONDS = 1

# Recycle a worker after this many requests, plus a per-worker spread so they do not all
# restart together, to bound slow leaks in native extensions. Not lower: a recycle stalls that
# worker's requests, and at a few thousand requests/s 10,000 meant one stall every few seconds
# (measured in `make bench` as p99 spikes). uWSGI's max-requests / max-requests-delta,
# gunicorn's --max-requests / --max-requests-jitter; granian has no per-request recycling.
MAX_REQUESTS = 200_000
MAX_REQUESTS_JITTER = 10_000

# Connections a socket queues while every worker is busy (uWSGI's `listen`, set by `mlapi serve`
# as UWSGI_LISTEN: uWSGI reads `listen` before it expands uwsgi.ini's placeholders). Past
# the queue uWSGI's router closes the client's connection and answers nothing: at 128 (the value
# before), wrk with 200 connections against 2 workers got 38,000 read errors in 5 s, and 167 of
# 300 requests sent at once to one worker failed (tests/server/test_worker_socket.py); at 1024,
# none, their latency growing instead. gunicorn's own default is 2048, granian's 1024. uWSGI
# refuses to start with more than the kernel's net.core.somaxconn (4096 on Linux 5.4+, 128 on
# older kernels and in some sandboxes), so it is capped there.
LISTEN_BACKLOG = 1024
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def worker_count(settings: Settings) -> int:
    """Worker processes, on every server: WEB_CONCURRENCY, else one per CPU this instance may
    use (its cgroup quota, not the host's CPU count: app/server/cpus.py). Predictions are
    CPU-bound, so more processes only add memory."""
    return settings.web_concurrency or available_cpus()


def kill_after(settings: Settings) -> int:
    """Seconds after which the server itself gives up on a request the app could not stop:
    gunicorn kills the worker then; uWSGI's router closes the client's connection then and
    harakiri kills the worker at uwsgi_harakiri."""
    return settings.request_timeout_seconds + KILL_GRACE_SECONDS


def uwsgi_harakiri(settings: Settings) -> int:
    """uWSGI kills a stuck worker a second after its HTTP router has given up on the request
    (http-timeout, kill_after): a worker killed first leaves the client's keep-alive connection
    open, the router taking the dead worker's silence for an empty answer, for another whole
    http-timeout (measured: the client's connection closed 2 x kill_after after the request)."""
    return kill_after(settings) + KILL_GRACE_SECONDS


def listen_backlog(somaxconn: Path = SOMAXCONN) -> int:
    """LISTEN_BACKLOG, or the kernel's limit if lower (unreadable: 128, the old Linux default)."""
    try:
        limit = int(somaxconn.read_text())
    except (OSError, ValueError):
        limit = 128
    return max(1, min(LISTEN_BACKLOG, limit))


def uwsgi_placeholders(settings: Settings) -> dict[str, int]:
    """The environment uwsgi.ini's placeholders read; `mlapi serve` always sets them."""
    return {
        "MLAPI_WORKERS": worker_count(settings),
        "MLAPI_DRAIN_SECONDS": DRAIN_SECONDS,
        "MLAPI_HEADERS_SECONDS": HEADERS_SECONDS,
        "MLAPI_KILL_AFTER_SECONDS": kill_after(settings),
        "MLAPI_HARAKIRI_SECONDS": uwsgi_harakiri(settings),
        "MLAPI_MAX_REQUESTS": MAX_REQUESTS,
        "MLAPI_MAX_REQUESTS_JITTER": MAX_REQUESTS_JITTER,
    }
