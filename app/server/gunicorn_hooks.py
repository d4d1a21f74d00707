"""gunicorn server hooks (`--config python:mlapi.server.gunicorn_hooks`): gunicorn's own hook points
rather than signal handlers in app code, which would fight its graceful shutdown."""
from prometheus_client import multiprocess


def child_exit(server, worker):
    # Tell prometheus-client's multiprocess mode this pid is gone (live gauges would keep it).
    multiprocess.mark_process_dead(worker.pid)
