"""`mlapi serve`: start the production server (uWSGI, gunicorn or granian) on 0.0.0.0:$PORT.

What to run is decided by app/server/launch.py from the Settings main() parsed; this module
only turns that into a process: printed (--dry-run), exec'd, or, for granian, run here.
"""
from __future__ import annotations

import os
import sys

from mlapi.config import Settings
from mlapi.server import launch


def register(commands) -> None:
    serve = commands.add_parser("serve", help="start the production server on 0.0.0.0:$PORT")
    serve.add_argument("--server", choices=launch.SERVERS,
                       help="default: $SERVER, else granian when micro-batching is on (MAX_BATCH_SIZE > 1), else uwsgi")
    serve.add_argument("--port", type=int, help="overrides $PORT (default 8080)")
    serve.add_argument("--ini", help="uWSGI config (default: $UWSGI_INI, then ./uwsgi.ini)")
    serve.add_argument("--dry-run", action="store_true", help="print the server command instead of running it")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args, settings: Settings) -> int:
    port = args.port or settings.port
    server = launch.choose_server(args.server, settings)
    command = launch.server_command(server, port, args.ini, settings)
    if args.dry_run:
        print(" ".join(command))
        return 0
    settings, server_env = launch.prepare(settings, port, server, os.environ)
    sys.stdout.flush()
    if server == "granian":
        # This process already is that Python (nothing heavy imported yet): becoming the
        # launcher saves an interpreter start, and needs no right to exec sys.executable, which
        # a non-root user may lack where Python lives in a private dir. Its environment is the
        # server's: prometheus-client reads PROMETHEUS_MULTIPROC_DIR when the app imports it.
        from mlapi.server import granian

        os.environ.update(server_env)
        granian.main(launch.granian_arguments(port, settings), settings)
        return 0
    # exec: the server replaces this process, so in a container it is PID 1 and receives
    # Cloud Run's SIGTERM itself.
    os.execvpe(command[0], command, {**os.environ, **server_env})
    return 1  # unreachable
