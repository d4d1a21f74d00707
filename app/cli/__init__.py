"""The `mlapi` command: `serve` (production server), `demo` (train the demo models), and the
data commands from app/cli_data.py (`features`, `publish`)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# One BLAS/OpenMP thread per worker: the server already runs a process per core, and
# scikit-learn's native threads on top of that oversubscribe the CPU and add latency.
THREAD_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Request threads per worker when micro-batching is on (UWSGI_THREADS / GUNICORN_THREADS override).
# A batch can only hold the requests a worker has in flight: measured on 2 cores, 100-tree
# forest, 64 connections: 8 threads 1,232 req/s, 16 1,772, 32 2,328 (and ~+100 MB PSS, see README).
BATCHING_THREADS = "32"
SERVERS = ("uwsgi", "gunicorn", "granian")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlapi", description="Serve scikit-learn models over HTTP.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the production server on 0.0.0.0:$PORT")
    serve.add_argument("--server", choices=SERVERS,
                       help="default: $SERVER, else granian when micro-batching is on (MAX_BATCH_SIZE > 1), else uwsgi")
    serve.add_argument("--port", type=int, help="overrides $PORT (default 8080)")
    serve.add_argument("--ini", help="uWSGI config (default: $UWSGI_INI, then ./uwsgi.ini)")
    serve.add_argument("--dry-run", action="store_true", help="print the server command instead of running it")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser("demo", help="train the demo models (iris, tickets) into a folder")
    demo.add_argument("--out", default="models")
    demo.add_argument("--force", action="store_true", help="retrain even if the files exist")
    demo.set_defaults(handler=cmd_demo)

    from mlapi.cli import bulk, data

    data.register(commands)
    bulk.register(commands)

    args = parser.parse_args(argv)
    return args.handler(args) or 0


def choose_server(explicit: str | None, env: dict) -> str:
    """uWSGI by default; granian when micro-batching is on, because batching needs many
    requests in flight per worker and granian holds them in Rust rather than in Python
    threads (measured: README, Performance); `--server` or $SERVER decide otherwise."""
    server = explicit or env.get("SERVER") or ("granian" if batching(env) else "uwsgi")
    if server not in SERVERS:
        raise SystemExit(f"mlapi serve: SERVER={server!r} is not one of {', '.join(SERVERS)}")
    return server


def batching(env: dict) -> bool:
    return int(env.get("MAX_BATCH_SIZE") or 0) > 1


def server_command(server: str, port: int, ini: str | None, env: dict) -> list[str]:
    if server == "granian":
        # A Python launcher: it loads the models, then starts granian (app/granian_server.py).
        # cmd_serve runs it in this process rather than exec'ing it (see there); this is the
        # command --dry-run shows, and what the launcher would be run as on its own.
        return [sys.executable, "-m", "mlapi.server.granian", *granian_arguments(port, env)]
    if server == "gunicorn":
        return [_executable("gunicorn"), "mlapi.wsgi:application",
                "--bind", f"0.0.0.0:{port}",
                "--workers", worker_count(env),
                "--threads", env.get("GUNICORN_THREADS") or "1",
                "--preload",               # load models once in the master, share pages with workers
                "--graceful-timeout", "8",  # Cloud Run kills 10 s after SIGTERM
                "--timeout", "60",          # like uWSGI's harakiri: recycle a stuck worker
                "--max-requests", "200000", "--max-requests-jitter", "10000",  # as uwsgi.ini
                "--config", "python:mlapi.server.gunicorn_hooks",  # drops a dead worker's live metrics
                "--access-logfile", "-" if env.get("ACCESS_LOG") else "/dev/null"]
    return [_executable("uwsgi"), "--ini", _find_ini(ini, env)]


def granian_arguments(port: int, env: dict) -> list[str]:
    """mlapi.server.granian's arguments: bind address, workers, Python threads per worker."""
    return [f"0.0.0.0:{port}", "--workers", worker_count(env),
            "--blocking-threads", env.get("GRANIAN_BLOCKING_THREADS") or "1"]


def worker_count(env: dict) -> str:
    """Worker processes for gunicorn and granian (uwsgi.ini says %k, the same default)."""
    return env.get("WEB_CONCURRENCY") or str(os.cpu_count() or 1)


def cmd_serve(args) -> int:
    env = os.environ
    port = args.port or int(env.get("PORT") or 8080)
    env["PORT"] = str(port)
    for cap in THREAD_CAPS:
        env.setdefault(cap, "1")
    env["PROMETHEUS_MULTIPROC_DIR"] = fresh_metrics_dir(env.get("PROMETHEUS_MULTIPROC_DIR"))
    if batching(env):
        # Micro-batching merges requests that are in flight together in one worker, so each
        # worker needs threads to hold them (predict releases the GIL in native code).
        env.setdefault("UWSGI_THREADS", BATCHING_THREADS)
        env.setdefault("GUNICORN_THREADS", BATCHING_THREADS)
        env.setdefault("GRANIAN_BLOCKING_THREADS", BATCHING_THREADS)
    server = choose_server(args.server, env)
    command = server_command(server, port, args.ini, dict(env))
    if args.dry_run:
        print(" ".join(command))
        return 0
    sys.stdout.flush()
    if server == "granian":
        # This process already is that Python (nothing heavy imported yet, env set above):
        # becoming the launcher saves an interpreter start, and needs no right to exec
        # sys.executable, which a non-root user may lack where Python lives in a private dir.
        from mlapi.server import granian

        granian.main(granian_arguments(port, env))
        return 0
    # exec: the server replaces this process, so in a container it is PID 1 and receives
    # Cloud Run's SIGTERM itself.
    os.execvpe(command[0], command, env)
    return 1  # unreachable


def fresh_metrics_dir(configured: str | None) -> str:
    """An empty directory for prometheus-client's per-worker files: samples left by a
    previous server run would otherwise be summed into this one's."""
    if not configured:
        return tempfile.mkdtemp(prefix="mlapi-metrics-")
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return str(path)


def cmd_demo(args) -> int:
    from mlapi.cli.demo_models import write_demo_models

    written = write_demo_models(args.out, force=args.force)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"demo models already in {args.out}/ (use --force to retrain)")
    return 0


def _find_ini(explicit: str | None, env: dict) -> str:
    for candidate in (explicit, env.get("UWSGI_INI"), "uwsgi.ini"):
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).resolve())
    raise SystemExit("mlapi serve: no uwsgi.ini found (pass --ini or set UWSGI_INI)")


def _executable(name: str) -> str:
    # Prefer the one installed beside this Python (the virtualenv), then PATH.
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
