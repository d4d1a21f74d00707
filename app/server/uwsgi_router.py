"""uWSGI's HTTP router, started by the master before it loads the models (uwsgi.ini [router]).

The router is the process that binds $PORT. Left to uWSGI, the master would start it only once
the models are loaded and the workers forked (attach-daemon2 daemons start with the master's
loop), and a daemon's start also waits for the master's loop: clients connecting meanwhile were
refused, and retried. Measured on the boosted pipeline of the peer benchmark (`make
bench-peers`), the port opened 0.25-0.57 s after the workers were forked. Started from here,
while the master imports the app, the router binds $PORT within milliseconds of the server's
start: a request sent during the load waits in the workers' socket queue (bound before the
app loads) and is answered as soon as a worker is up, as gunicorn and granian, which bind
before loading too, already did.

uWSGI still supervises it: uwsgi.ini names this router's pidfile in its attach-daemon2 line, so
the master adopts the running router instead of starting another, starts a new one when it
dies and stops it last. Until the master adopts it (a failed load exits first), the router dies
with the master (PR_SET_PDEATHSIG). Only `mlapi serve` with uWSGI sets what this needs
(MLAPI_UWSGI, MLAPI_ROUTER_INI from uwsgi.ini, MLAPI_SOCKET_DIR); elsewhere it does nothing.

The routers the master starts again (the daemon line) come through here too, as
`python -m mlapi.server.uwsgi_router` (`restart`): uWSGI gives a daemon with a pidfile no
parent-death signal, so one it restarted outlived a killed master and kept $PORT (outside a
container, where nothing else ends it); and it would inherit the master's UWSGI_RELOADS, with
which a uWSGI takes itself for a reload and writes no pidfile (the master then logged "did not
daemonize !!!" every second for as long as that router lived).
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping

PIDFILE_NAME = "router.pid"  # in MLAPI_SOCKET_DIR; uwsgi.ini names it too
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_before_loading(environ: Mapping[str, str] = os.environ) -> int | None:
    """Start the router unless this is not uWSGI's master under `mlapi serve`; its pid."""
    uwsgi, ini, socket_dir = (environ.get(name) for name in ("MLAPI_UWSGI", "MLAPI_ROUTER_INI", "MLAPI_SOCKET_DIR"))
    if not (uwsgi and ini and socket_dir) or "uwsgi" not in sys.modules:
        return None
    if sys.modules["uwsgi"].masterpid() != os.getpid():  # a worker (lazy-apps): the master's job
        return None
    pidfile = os.path.join(socket_dir, PIDFILE_NAME)
    if os.path.exists(pidfile):  # already started (uWSGI imports the app once; this is for safety)
        return None
    die_with_parent = _parent_death_signal()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:  # the daemon line starts the router itself, after the load
        return None
    if pid == 0:  # the child: become the router, and nothing else
        try:
            os.setsid()  # its own process group: the master stops it with kill(-pid)
            die_with_parent()
            if os.getppid() != parent:  # the master died before the line above
                os._exit(1)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the workers' socket stays the master's
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            _exec_router(uwsgi, ini, environ)
        finally:
            os._exit(127)  # exec failed: the master starts the router itself after the load
    try:
        _write_pidfile(pidfile, pid)
    except OSError:  # unadopted, the router dies with the master; the daemon line starts another
        os.kill(pid, signal.SIGKILL)
        return None
    return pid


def restart(environ: Mapping[str, str] = os.environ) -> None:
    """uwsgi.ini's daemon line: become the router, tied to the master that started it."""
    _parent_death_signal()()
    _exec_router(environ["MLAPI_UWSGI"], environ["MLAPI_ROUTER_INI"], environ)


def _exec_router(uwsgi: str, ini: str, environ: Mapping[str, str]) -> None:
    # Without UWSGI_RELOADS, which uWSGI sets in the master: the router writes its pidfile.
    router_environ = {name: value for name, value in environ.items() if name != "UWSGI_RELOADS"}
    os.execve(uwsgi, [uwsgi, "--ini", f"{ini}:router"], router_environ)


def _write_pidfile(path: str, pid: int) -> None:
    """Whole or not at all (uWSGI may read it at any time): written aside, then renamed."""
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w") as out:
        out.write(f"{pid}\n")
    os.replace(partial, path)


def _parent_death_signal():
    """A function for the child to call: SIGKILL it when its parent exits (Linux; elsewhere
    nothing). Prepared before the fork, so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


if __name__ == "__main__":
    restart()
