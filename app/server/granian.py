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
loaded); SIGTERM drains in-flight requests within limits.DRAIN_SECONDS; a worker that
dies is replaced; granian's own log lines go through the app's JSON (or text) handler.

`mlapi serve` runs main() in its own process with the Settings it parsed; run on its own
(`python -m mlapi.server.granian`, the command --dry-run prints) it reads them from the
environment, like app/wsgi.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mlapi.server import limits

if TYPE_CHECKING:
    from mlapi.config import Settings

# granian's loggers, sent to the root logger, which mlapi.logs gives the app's formatter
# (granian sets its logger's level from --log-level, which `mlapi serve` takes from LOG_LEVEL).
_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {},
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
}


# The app main() loaded in this (master) process before the workers fork; they inherit it.
_application = None


def load_application(target: str):
    """granian's target loader, run in each worker: the app the master loaded before forking
    (only a worker that was not forked from it, should granian ever spawn, imports it anew)."""
    if _application is not None:
        return _application
    from mlapi.wsgi import application

    return application


def main(argv: list[str], settings: Settings | None = None) -> None:
    """argv as `mlapi serve` builds it (mlapi.server.launch.granian_arguments): address:port
    --workers N --blocking-threads N --log-level LEVEL."""
    global _application
    parser = argparse.ArgumentParser(prog="mlapi.server.granian")
    parser.add_argument("bind")
    parser.add_argument("--workers", type=int, required=True)
    # Python threads per worker that run the app; more only help micro-batching.
    parser.add_argument("--blocking-threads", type=int, required=True)
    # granian's own log lines; the app's follow its settings (both: LOG_LEVEL).
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    from mlapi.server.ready import announce
    from mlapi.server.startup import load_application as load_app

    class Server(Granian):
        def startup(self, spawn_target, target_loader):
            # granian's startup() ends by spawning the workers: then the ready line
            # (app/server/ready.py), after granian's own start-up lines.
            super().startup(spawn_target, target_loader)
            announce(_application, "granian", args.workers, args.blocking_threads)

    address, _, port = args.bind.rpartition(":")
    server = Server(
        "mlapi.wsgi:application",
        address=address,
        port=int(port),
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.blocking_threads,
        workers_kill_timeout=limits.DRAIN_SECONDS,
        # A client still sending its headers after this long is cut (granian's default: 30 s).
        http1_settings=HTTP1Settings(header_read_timeout=limits.HEADERS_SECONDS * 1000),
        respawn_failed_workers=True,
        log_level=args.log_level,
        log_dictconfig=_LOGGING,
        log_access=False,  # Cloud Run logs every request; ACCESS_LOG=1 makes the app log them
    )
    # After Granian(): it configures logging, then the app does.
    _application = load_app(settings, server="granian")
    server.serve(target_loader=load_application)


if __name__ == "__main__":
    from mlapi.errors import ConfigurationError

    try:
        main(sys.argv[1:])
    except ConfigurationError as exc:
        sys.exit(f"mlapi.server.granian: {exc.message}")
