"""How `mlapi serve` starts a server: which one, its command line, and the environment the
server inherits (port, native thread caps, the metrics directory, uwsgi.ini's limits).

Functions of Settings, not of os.environ: `mlapi serve` parses the environment once
(config.py) and everything here follows from that, so `--dry-run` and the tests see exactly
what would run.
"""
from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import mlapi
from mlapi.config import Settings
from mlapi.errors import ConfigurationError
from mlapi.server import limits

SERVERS = ("uwsgi", "gunicorn", "granian")
# One BLAS/OpenMP thread per worker: the server already runs a process per core, and
# scikit-learn's native threads on top of that oversubscribe the CPU and add latency.
# (uwsgi.ini sets the same; an explicit value in the environment wins.)
THREAD_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Request threads per worker when micro-batching is on and the server's own setting is unset.
# A batch can only hold the requests a worker has in flight: measured on 2 cores, 100-tree
# forest, 64 connections: 8 threads 1,232 req/s, 16 1,772, 32 2,328 (and ~+100 MB PSS, see README).
BATCHING_THREADS = 32


def choose_server(explicit: str | None, settings: Settings) -> str:
    """uWSGI by default; granian when micro-batching is on, because batching needs many
    requests in flight per worker and granian holds them in Rust rather than in Python
    threads (measured: README, Performance); `--server` or $SERVER decide otherwise."""
    return explicit or settings.server or ("granian" if settings.batching else "uwsgi")


def threads(configured: int | None, settings: Settings) -> int:
    """Request threads per worker: the server's own setting, else enough for batching, else 1.
    Micro-batching merges requests in flight together in one worker, so each worker needs
    threads to hold them (predict releases the GIL in native code)."""
    return configured or (BATCHING_THREADS if settings.batching else 1)


def server_command(server: str, port: int, ini: str | None, settings: Settings) -> list[str]:
    if server == "granian":
        # A Python launcher: it loads the models, then starts granian (app/server/granian.py).
        # `mlapi serve` runs it in its own process rather than exec'ing it; this is the command
        # --dry-run shows, and what the launcher would be run as on its own.
        return [sys.executable, "-m", "mlapi.server.granian", *granian_arguments(port, settings)]
    if server == "gunicorn":
        return [_executable("gunicorn"), "mlapi.wsgi:application",
                "--bind", f"0.0.0.0:{port}",
                "--workers", str(limits.worker_count(settings)),
                "--threads", str(threads(settings.gunicorn_threads, settings)),
                *gunicorn_worker_class(settings),
                "--preload",  # load models once in the master, share pages with workers
                "--graceful-timeout", str(limits.DRAIN_SECONDS),
                # A worker still stuck a second after REQUEST_TIMEOUT (the app answers 504 at it:
                # app/http/deadline.py) is killed, like uWSGI's harakiri.
                "--timeout", str(limits.kill_after(settings)),
                "--max-requests", str(limits.MAX_REQUESTS),
                "--max-requests-jitter", str(limits.MAX_REQUESTS_JITTER),
                "--config", "python:mlapi.server.gunicorn_hooks",  # drops a dead worker's live metrics
                # One access log for every server: the request pipeline's (ACCESS_LOG).
                "--access-logfile", "/dev/null"]
    return [_executable("uwsgi"), "--ini", find_ini(ini, settings)]


def gunicorn_worker_class(settings: Settings) -> list[str]:
    """One thread per worker: gunicorn's sync worker with a deadline on the headers
    (app/server/gunicorn_worker.py); with threads gunicorn runs its gthread worker, as it is."""
    if threads(settings.gunicorn_threads, settings) > 1:
        return []
    return ["--worker-class", "mlapi.server.gunicorn_worker.SyncWorker"]


def granian_arguments(port: int, settings: Settings) -> list[str]:
    """mlapi.server.granian's arguments: bind address, workers, Python threads per worker,
    and the log level for granian's own lines (the launcher reads no settings itself)."""
    return [f"0.0.0.0:{port}", "--workers", str(limits.worker_count(settings)),
            "--blocking-threads", str(threads(settings.granian_blocking_threads, settings)),
            "--log-level", settings.log_level.lower()]


def prepare(settings: Settings, port: int, server: str, environ: Mapping[str, str]) -> tuple[Settings, dict]:
    """The settings the server will run with, and the variables to add to its environment.

    The server reads its settings again from the environment (uWSGI and gunicorn are exec'd),
    so what `mlapi serve` decides (the port, the metrics directory) goes there too."""
    metrics_dir = fresh_metrics_dir(settings.prometheus_multiproc_dir)
    settings = replace(settings, port=port, prometheus_multiproc_dir=metrics_dir)
    env = {"PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    env.update({cap: "1" for cap in THREAD_CAPS if cap not in environ})
    if server == "uwsgi":
        env.update({name: str(value) for name, value in limits.uwsgi_placeholders(settings).items()})
        env["MLAPI_SOCKET_DIR"] = private_socket_dir()
        env["MLAPI_UWSGI"] = _executable("uwsgi")  # uwsgi.ini runs its HTTP router with it
        env["MLAPI_PYTHON"] = sys.executable  # and restarts it through app/server/uwsgi_router.py
        if "UWSGI_LISTEN" not in environ:  # the queue of both the workers' socket and $PORT
            env["UWSGI_LISTEN"] = str(limits.listen_backlog())
        if settings.uwsgi_threads is None and settings.batching:
            env["UWSGI_THREADS"] = str(BATCHING_THREADS)  # uWSGI reads UWSGI_<OPTION> itself
    return settings, env


def fresh_metrics_dir(configured: str | None) -> str:
    """An empty directory for prometheus-client's per-worker files: samples left by a
    previous server run would otherwise be summed into this one's."""
    if not configured:
        return tempfile.mkdtemp(prefix="mlapi-metrics-")
    path = Path(configured)
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise ConfigurationError(f"PROMETHEUS_MULTIPROC_DIR={configured!r} is not a writable directory "
                                 f"({exc.strerror})") from None
    return str(path)


def refuse_a_port_in_use(port: int) -> None:
    """Fail the start on a port something else listens on. uWSGI's router binds it in a process
    of its own that the master starts again whenever it exits (uwsgi.ini [router]): on a taken
    port the server would retry for ever, answering nothing, where a master binding it itself
    exited at once. `mlapi serve` checks first (something taking the port meanwhile still gets
    the retries, and their log lines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uWSGI binds: TIME_WAIT is no use
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise ConfigurationError(f"PORT={port} cannot be bound ({exc.strerror}): "
                                     "is another server running on it?") from None


def private_socket_dir() -> str:
    """A directory for the uWSGI workers' socket that only this server's user can enter: a
    fresh random name (mkdtemp: mode 0700, created or failing atomically), so no other local
    user can create the socket's path first, squatting it or listening in the router's place.
    uwsgi.ini removes it when the server exits."""
    return tempfile.mkdtemp(prefix="mlapi-uwsgi-")


def find_ini(explicit: str | None, settings: Settings) -> str:
    """The uwsgi.ini to run, as an absolute path: `--ini`, else $UWSGI_INI (either must name a
    file: a typo must not quietly start another config), else ./uwsgi.ini (the image's WORKDIR
    holds one; a user's own beside their models wins), else the checkout's (checkout_ini), so
    `mlapi serve` works from any directory of a source checkout."""
    for name, chosen in (("--ini", explicit), ("UWSGI_INI", settings.uwsgi_ini)):
        if chosen:
            if not Path(chosen).is_file():
                raise ConfigurationError(f"{name} names no file: {chosen}")
            return str(Path(chosen).resolve())
    looked = list(dict.fromkeys([Path("uwsgi.ini").resolve(), checkout_ini()]))  # one, run in the checkout
    for candidate in looked:
        if candidate.is_file():
            return str(candidate)
    raise ConfigurationError(f"no uwsgi.ini found (looked for {' and '.join(map(str, looked))}): "
                             "pass `mlapi serve --ini FILE` or set UWSGI_INI to a file")


def checkout_ini() -> Path:
    """The uwsgi.ini of the source checkout this package is installed from (editable: setup.py
    maps the checkout's app/ to `mlapi`, and uwsgi.ini sits beside app/). A wheel install has
    no checkout: the path names no file then (docs/roadmap.md)."""
    return Path(mlapi.__file__).resolve().parent.parent / "uwsgi.ini"


def _executable(name: str) -> str:
    # Prefer the one installed beside this Python (the virtualenv), then PATH.
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)
