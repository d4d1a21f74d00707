"""`mlapi serve [MODEL_FILE ...]`: start the production server (uWSGI, gunicorn or granian) on
0.0.0.0:$PORT.

What to run is decided by app/server/launch.py from the Settings main() parsed; this module
only turns that into a process: printed (--dry-run), exec'd, or, for granian, run here.
Model files named on the command line replace MODELS (see model_files).
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from mlapi.config import Settings
from mlapi.naming import ModelSpec, models_value, parse_models
from mlapi.errors import ConfigurationError
from mlapi.server import launch

MODEL_FILES_HELP = ("model files to serve instead of MODELS: PATH (served under the file's name, "
                    "e.g. churn for churn.joblib), NAME=PATH or NAME:VERSION=PATH, as in MODELS")


def register(commands) -> None:
    serve = commands.add_parser("serve", help="start the production server on 0.0.0.0:$PORT")
    serve.add_argument("models", nargs="*", metavar="MODEL_FILE", help=MODEL_FILES_HELP)
    serve.add_argument("--server", choices=launch.SERVERS,
                       help="default: $SERVER, else granian when micro-batching is on (MAX_BATCH_SIZE > 1), else uwsgi")
    serve.add_argument("--port", type=int, help="overrides $PORT (default 8080)")
    serve.add_argument("--ini", help="uWSGI config (default: $UWSGI_INI, then ./uwsgi.ini, "
                                     "then the uwsgi.ini of the checkout mlapi is installed from)")
    serve.add_argument("--dry-run", action="store_true", help="print the server command instead of running it")
    # Settings are read by cmd_serve itself: with model files named, the model settings are not.
    serve.set_defaults(handler=cmd_serve, reads_settings=False)


def model_files(arguments: list[str]) -> tuple[ModelSpec, ...]:
    """The models named on a command line, in MODELS' grammar plus bare paths; a local file
    that is not there stops the command here, before anything starts (a missing MODELS
    artifact, by contrast, leaves the server running and /readyz saying why)."""
    specs = parse_models(arguments, source="the command line")
    for spec in specs:
        if "://" not in spec.uri and not Path(spec.uri).is_file():
            raise ConfigurationError(f"no such model file: {spec.uri}")
    return specs


def replaced_models_notice(command: str) -> str | None:
    """The line saying that files on the command line replace what the environment configures."""
    configured = [name for name in ("MODELS", "MODEL_URI") if os.environ.get(name, "").strip()]
    if not configured:
        return None
    return f"{command}: serving the model files named on the command line; {' and '.join(configured)} ignored"


# The settings that say which models to serve: model files on the command line replace them,
# so they are not read at all then (a broken MODEL_SHA256 must not stop a command that ignores it).
MODEL_SETTINGS = ("MODELS", "MODEL_URI", "MODEL_NAME", "MODEL_SHA256")


def cmd_serve(args, settings: Settings | None = None) -> int:
    if settings is None:
        env = {k: v for k, v in os.environ.items() if not (args.models and k in MODEL_SETTINGS)}
        settings = Settings.from_env(env)
    port = args.port or settings.port
    server = launch.choose_server(args.server, settings)
    files = None
    if args.models:
        files = model_files(args.models)
        settings = replace(settings, models=files)
    command = launch.server_command(server, port, args.ini, settings)
    if args.dry_run:
        print(" ".join(command))
        return 0
    if server == "uwsgi":
        launch.refuse_a_port_in_use(port)
    settings, server_env = launch.prepare(settings, port, server, os.environ)
    if files is not None:
        # uWSGI and gunicorn read their settings from the environment again: MODELS tells them.
        server_env["MODELS"] = models_value(files)
        notice = replaced_models_notice("mlapi serve")
        if notice:
            print(notice, file=sys.stderr)
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
    # Without UWSGI_INI, which names the file already passed as --ini: uWSGI reads UWSGI_<OPTION>
    # itself and loaded it twice (two HTTP routers, the second retrying its bind for ever).
    inherited = {name: value for name, value in os.environ.items() if name != "UWSGI_INI"}
    os.execvpe(command[0], command, {**inherited, **server_env})
    return 1  # unreachable
