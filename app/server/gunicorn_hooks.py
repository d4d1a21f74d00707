"""gunicorn server hooks (`--config python:mlapi.server.gunicorn_hooks`): gunicorn's own hook points
rather than signal handlers in app code, which would fight its graceful shutdown."""
from prometheus_client import multiprocess

# No control socket (gunicorn 27's runtime management interface, `gunicornc`): nothing manages a
# server here at run time (Cloud Run replaces it), it would be one more socket, written under
# $HOME, and its "listening" line would follow the ready line below. (A setting older gunicorns
# do not know is ignored in a config file.)
control_socket_disable = True


def child_exit(server, worker):
    # Tell prometheus-client's multiprocess mode this pid is gone (live gauges would keep it).
    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The ready line (app/server/ready.py), once per server: from the last of the first workers
    # (ages 1..workers; a replacement gets a higher one), after gunicorn's "Booting worker" lines.
    if worker.age == worker.cfg.workers:
        from mlapi.server.ready import announce

        announce(worker.wsgi, "gunicorn", worker.cfg.workers, worker.cfg.threads)
