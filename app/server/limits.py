"""How long a worker may drain, take over one request, and live: one value each, handed by
`mlapi serve` to whichever server it runs (uwsgi.ini reads them as $(MLAPI_...) placeholders,
gunicorn as flags, granian as arguments), so the three servers cannot drift apart."""

# Cloud Run sends SIGKILL 10 s after SIGTERM: in-flight requests get 8 of them to finish
# (uWSGI's worker-reload-mercy / reload-mercy, gunicorn's --graceful-timeout, granian's
# workers_kill_timeout).
DRAIN_SECONDS = 8

# A worker stuck on one request longer than this is killed and replaced (uWSGI's harakiri,
# gunicorn's --timeout).
REQUEST_TIMEOUT_SECONDS = 60

# Recycle a worker after this many requests, plus a per-worker spread so they do not all
# restart together, to bound slow leaks in native extensions. Not lower: a recycle stalls that
# worker's requests, and at a few thousand requests/s 10,000 meant one stall every few seconds
# (measured in `make bench` as p99 spikes). uWSGI's max-requests / max-requests-delta,
# gunicorn's --max-requests / --max-requests-jitter; granian has no per-request recycling.
MAX_REQUESTS = 200_000
MAX_REQUESTS_JITTER = 10_000

# The environment uwsgi.ini's placeholders read; `mlapi serve` always sets them.
UWSGI_PLACEHOLDERS = {
    "MLAPI_DRAIN_SECONDS": DRAIN_SECONDS,
    "MLAPI_REQUEST_TIMEOUT_SECONDS": REQUEST_TIMEOUT_SECONDS,
    "MLAPI_MAX_REQUESTS": MAX_REQUESTS,
    "MLAPI_MAX_REQUESTS_JITTER": MAX_REQUESTS_JITTER,
}
