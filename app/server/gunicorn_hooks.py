"""gunicorn server hooks (`--config python:mlapi.server.gunicorn_hooks`): gunicorn's own hook points
rather than signal handlers in app code, which would fight its graceful shutdown; and gunicorn's
own error answers in JSON, like the app's."""
import json

from gunicorn import util
from prometheus_client import multiprocess

from mlapi.errors import cut

# No control socket (gunicorn 27's runtime management interface, `gunicornc`): nothing manages a
# server here at run time (Cloud Run replaces it), it would be one more socket, written under
# $HOME, and its "listening" line would follow the ready line below. (A setting older gunicorns
# do not know is ignored in a config file.)
control_socket_disable = True

# What of gunicorn's message (it may quote the request line or a header) an answer repeats.
_MESSAGE_CHARS = 200


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's answer to a request it refuses before the app sees it (a malformed request
    line or header, an oversized header, a bad chunk) or to an error escaping the app: the
    app's JSON error body ({"error": {"message", "status"}}) instead of gunicorn's HTML page."""
    text = cut(f"{reason.lower()}: {mesg}" if mesg else reason.lower(), _MESSAGE_CHARS)
    body = json.dumps({"error": {"message": text, "status": status_int}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    sock.sendall(head + body)


# gunicorn's workers write these answers through util.write_error (workers/base.py handle_error),
# which has no setting: this config module is imported in the arbiter before it forks the workers,
# so they all call this one.
util.write_error = write_json_error


def child_exit(server, worker):
    # Tell prometheus-client's multiprocess mode this pid is gone (live gauges would keep it).
    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The ready line (app/server/ready.py), once per server: from the last of the first workers
    # (ages 1..workers; a replacement gets a higher one), after gunicorn's "Booting worker" lines.
    if worker.age == worker.cfg.workers:
        from mlapi.server.ready import announce

        announce(worker.wsgi, "gunicorn", worker.cfg.workers, worker.cfg.threads)
