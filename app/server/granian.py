"""`mlapi serve --server granian`: the app served by granian, whose HTTP server is Rust.

Why a third server: micro-batching needs many requests in flight in each worker. uWSGI and
gunicorn hold each one in a Python thread that parses HTTP, reads the body and writes the
response itself, taking and dropping the GIL at every step; with 32 such threads per worker
the hand-offs cost more than batching a cheap model saves (README, Performance). granian
accepts, parses, reads and writes in Rust, outside the GIL, keeps connections alive, and
enters Python once per request, to call the WSGI app. `mlapi serve` picks it when
micro-batching is on.

What it keeps from the other two: the models load once, in this (master) process, before the
workers fork, so the workers share their pages (granian forks where Python's default start
method is fork: Linux up to 3.13; its per-worker loader returns the app this process already
imported); SIGTERM drains in-flight requests within 8 s; a worker that dies is replaced;
granian's own log lines go through the app's JSON (or text) handler.
"""
from __future__ import annotations

import argparse
import sys

# Cloud Run kills 10 s after SIGTERM; in-flight requests get 8 of them (as uwsgi.ini, gunicorn).
DRAIN_SECONDS = 8

# granian's loggers, sent to the root logger, which app.logs gives the app's formatter
# (granian sets its logger's level from LOG_LEVEL, like the app's).
_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {},
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
}


def load_application(target: str):
    """granian's target loader, run in each worker: the app the master loaded before forking
    (a plain import: app.wsgi is already in sys.modules)."""
    from mlapi.wsgi import application

    return application


def main(argv: list[str]) -> None:
    """argv as `mlapi serve` builds it (app.cli.server_command): address:port --workers N
    --blocking-threads N."""
    parser = argparse.ArgumentParser(prog="mlapi.server.granian")
    parser.add_argument("bind")
    parser.add_argument("--workers", type=int, required=True)
    # Python threads per worker that run the app; more only help micro-batching.
    parser.add_argument("--blocking-threads", type=int, required=True)
    args = parser.parse_args(argv)

    from granian import Granian
    from granian.constants import Interfaces

    from mlapi.config import Settings

    address, _, port = args.bind.rpartition(":")
    server = Granian(
        "mlapi.wsgi:application",
        address=address,
        port=int(port),
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.blocking_threads,
        workers_kill_timeout=DRAIN_SECONDS,
        respawn_failed_workers=True,
        log_level=Settings.from_env().log_level.lower(),
        log_dictconfig=_LOGGING,
        log_access=False,  # Cloud Run logs every request; ACCESS_LOG=1 makes the app log them
    )
    import mlapi.wsgi  # noqa: F401  after Granian(): it configures logging, then the app does
    server.serve(target_loader=load_application)


if __name__ == "__main__":
    main(sys.argv[1:])
