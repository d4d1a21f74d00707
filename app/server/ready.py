"""The line a server prints once it is ready: what it serves, where, and how.

    serving iris:1, tickets:1 on http://localhost:8080 (uwsgi, 2 workers)
    NOT serving churn:1: sha256 mismatch for models/churn.joblib: ...

Logged once per server, not per worker, as the last of its start-up lines (uWSGI's own last one,
its master-start hook mapping SIGTERM to gracefully_kill_them_all, reads like a shutdown).
Each server prints it from the one place that runs after its workers are started:
- uWSGI: a worker, on a one-shot timer the master sets when it loads the app (prepare_for_uwsgi);
- gunicorn: the last of the first workers, from its post_worker_init hook (gunicorn_hooks.py);
- granian: its main process, once it has spawned the workers (granian.py); each worker's own
  "Started worker-N" line may still follow.
The socket is listening by then: a request sent at once waits for a worker rather than failing.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def ready_lines(app, server: str, workers: int, threads: int = 1) -> list[str]:
    """The ready line for `app` (what create_app built) served by `server`, then one line per
    model that failed to load."""
    services = app.extensions["mlapi.services"]
    settings, registry = services.settings, services.registry
    served = ", ".join(f"{model.name}:{model.version}" for model in registry.models()) or "no model"
    how = f"{server}, {workers} worker{'' if workers == 1 else 's'}"
    if threads > 1:
        how += f", {threads} threads each"
    if settings.batching:
        how += f", micro-batching up to {settings.max_batch_size} rows"
    lines = [f"serving {served} on http://localhost:{settings.port} ({how})"]
    lines += [f"NOT serving {failure.spec.name}:{failure.spec.version}: {failure.reason}"
              for failure in registry.failures()]
    return lines


def announce(app, server: str, workers: int, threads: int = 1) -> None:
    """Log the ready lines: log lines like the others (one JSON object each under
    LOG_FORMAT=json, for Cloud Logging), shown whatever LOG_LEVEL says (handled without the
    level check): a server that starts always says what it serves."""
    for number, line in enumerate(ready_lines(app, server, workers, threads)):
        log.handle(log.makeRecord(log.name, logging.INFO if number == 0 else logging.WARNING, __file__, 0, line,
                                  None, None))


def prepare_for_uwsgi(app) -> None:
    """In uWSGI's master, once the app is loaded: have the ready lines logged by a worker, once,
    a second after the master has spawned the workers and entered its loop (a one-shot timer of
    uWSGI's signal framework: the master raises it, the first free worker runs the handler). So
    they follow uWSGI's own start-up lines, the master-start hook's included. (uWSGI runs no
    Python at master-start, and an `exec:` hook there hung the master when it forked.)
    Does nothing outside uWSGI, or in a worker (lazy-apps)."""
    try:
        import uwsgi  # exists only inside uWSGI
    except ImportError:
        return
    if uwsgi.worker_id() != 0:
        return
    workers, threads = uwsgi.numproc, _uwsgi_option(uwsgi.opt.get("threads"))
    signal = next(number for number in range(256) if not uwsgi.signal_registered(number))
    uwsgi.register_signal(signal, "worker", lambda _: announce(app, "uwsgi", workers, threads))
    uwsgi.add_rb_timer(signal, 1, 1)  # in 1 s, once


def _uwsgi_option(value) -> int:
    """An integer option as uwsgi.opt holds it (bytes, or a list when given more than once)."""
    if isinstance(value, list):
        value = value[-1]
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1
