"""Where a model reload (POST /admin/reload, or another instance's, heard through Redis) runs:
in the server's master process, and then every worker is replaced by a fresh fork of it.

Why the master: the workers share the models' memory pages because they are forked from the
process that loaded them (app/server/startup.py). A worker that loaded the new models itself
would hold a private copy (each worker one: twice the memory at 2 workers, more at more), and
a worker forked later (max-requests, a crash) would still get the master's old models. So the
master loads them (serving/reload.py), and the workers are then recycled one by one, each
finishing its request in flight first; their replacements, forked from the master, share its
new pages. The server's own reload cannot do this: uWSGI's graceful reload closes the HTTP
port while the new master starts (measured: 5,327 of 6,736 requests of a steady stream
refused, docs/operations.md).

How a worker reaches the master: a datagram socket pair made in the master before the fork
(no path, no port: only the master's descendants hold it). A worker sends its pid and one end
of a fresh socket pair of its own, and reads the outcome from the other end. One master
thread takes them in turn; the fleet watcher (app/server/fleet_reload.py) calls in the same
lock. Without a server master (create_app in tests, `flask run`) the process reloads itself.

How the workers are replaced, per server (WorkerRoll):
- uWSGI: SIGHUP to each worker (uWSGI's graceful worker reload), one at a time, the master
  respawns it by fork; the requester last, after its answer has been handed over.
- gunicorn: SIGHUP to the arbiter: it forks new workers and stops the old ones gracefully.
- granian: SIGHUP to the launcher: it respawns its workers one by one (new, then the old one
  stopped); since it waits for each old one, the requester is answered first.
"""
from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from mlapi.server import limits
from mlapi.serving.reload import EXTENSION, Reloader, ReloadOutcome

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

MESSAGE_BYTES = 4096


class WorkerRoll:
    """How a server's workers are replaced by fresh forks of the master (module docstring)."""

    def before_answer(self, requester: int | None) -> None:
        """Replace the workers other than the requester; return once they serve the new models."""

    def after_answer(self, requester: int | None) -> None:
        """Replace the requester (and, on servers that roll all at once, everyone)."""


class UwsgiRoll(WorkerRoll):
    def before_answer(self, requester):
        for pid in self._pids():
            if pid != requester:
                self._replace(pid)

    def after_answer(self, requester):
        if requester in self._pids():
            os.kill(requester, signal.SIGHUP)  # it exits once its answer is written; not waited for

    @staticmethod
    def _pids() -> list[int]:
        import uwsgi

        return [worker["pid"] for worker in uwsgi.workers() if worker["pid"] > 0]

    def _replace(self, pid: int) -> None:
        """One worker at a time, the next only once this one's replacement is up: the others
        keep serving meanwhile."""
        workers = len(self._pids())
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + limits.DRAIN_SECONDS + 2
        while time.monotonic() < deadline:
            pids = self._pids()
            if pid not in pids and len(pids) >= workers:
                return
            time.sleep(0.02)
        log.warning("reload: uWSGI worker %d did not restart within %d s", pid, limits.DRAIN_SECONDS + 2)


class SignalMasterRoll(WorkerRoll):
    """gunicorn and granian: SIGHUP to the master, which replaces its workers itself."""

    def __init__(self, wait_for_old: bool):
        self.wait_for_old = wait_for_old  # gunicorn: yes; granian: no (it waits for the requester)

    def before_answer(self, requester):
        if not self.wait_for_old:
            return
        old = children() - {requester}
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + limits.DRAIN_SECONDS + 2
        while old & children() and time.monotonic() < deadline:
            time.sleep(0.02)

    def after_answer(self, requester):
        if not self.wait_for_old:
            os.kill(os.getpid(), signal.SIGHUP)


def children() -> set[int]:
    """The pids of this process's live children (zombies not counted)."""
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.add(int(entry))
    return found


class MasterReloads:
    """The workers' way to the master's reload, and the master thread that serves it."""

    def __init__(self, reloader: Reloader, roll: WorkerRoll):
        self.reloader = reloader
        self.roll = roll
        self.inbox, self.outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.master_pid = os.getpid()
        threading.Thread(target=self._serve, name="mlapi-reloads", daemon=True).start()

    # ---- in a worker ---------------------------------------------------------------------------
    def reload(self) -> ReloadOutcome:
        if os.getpid() == self.master_pid:  # not forked (yet): nothing to hand it to
            return self.reloader.reload()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            with theirs:
                socket.send_fds(self.outbox, [json.dumps({"pid": os.getpid()}).encode()], [theirs.fileno()])
            answer = b"".join(iter(lambda: mine.recv(65536), b""))
        return ReloadOutcome(**json.loads(answer))

    # ---- in the master -------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.inbox, MESSAGE_BYTES, 1)
                if not fds:
                    continue
                with socket.socket(fileno=fds[0]) as reply:
                    self._answer(json.loads(message)["pid"], reply)
            except Exception:  # noqa: BLE001  (the thread must outlive any one request)
                log.exception("reload: a request to the master failed")

    def _answer(self, requester: int, reply: socket.socket) -> None:
        with self.reloader.lock:
            outcome = self.reloader.run()
            refreeze()
            self.roll.before_answer(requester)
            try:
                reply.sendall(json.dumps(asdict(outcome)).encode())
                # The end of the answer for the requester, though the workers forked meanwhile
                # hold copies of this descriptor (so closing ours would not be one).
                reply.shutdown(socket.SHUT_WR)
            finally:
                reply.close()
                self.roll.after_answer(requester)

    def follow_fleet(self, generation: int) -> None:
        """The fleet's counter, read again on an announcement or a poll: reload here when it is not
        the one this instance last followed (app/server/fleet_reload.py)."""
        with self.reloader.lock:
            if generation == self.reloader.followed:
                return
            self.reloader.run(generation)
            refreeze()
            self.roll.before_answer(None)
            self.roll.after_answer(None)


def refreeze() -> None:
    """The master's old models are garbage now; its new ones are long-lived like the first: out of
    the collector's sight before the workers are forked (app/server/startup.py says why). Then
    the freed memory goes back to the system: glibc keeps freed heap pages for reuse, and the
    workers forked next would map them with the rest (measured, 100 MB forest: the master's RSS
    355 MB before a reload, 462 MB after, 322 MB after malloc_trim)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, another system): its allocator's own way
        pass


def server_roll(server: str | None) -> WorkerRoll | None:
    if server == "uwsgi":
        return UwsgiRoll()
    if server == "gunicorn":
        return SignalMasterRoll(wait_for_old=True)
    if server == "granian":
        return SignalMasterRoll(wait_for_old=False)
    return None


def running_server() -> str | None:
    """The server importing the app in this process, if any (granian's launcher says so itself)."""
    if "uwsgi" in sys.modules:
        return "uwsgi"
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    return None


def install(app: Flask, server: str | None) -> None:
    """In the master, before the fork: reloads go through it (with a server) and, with
    REDIS_URL, follow the fleet. Without ADMIN_TOKEN nothing reloads here, and no thread runs
    (an instance of the same service has the same settings: the fleet that reloads is the one
    that holds the token)."""
    from mlapi.server.fleet_reload import build_fleet_reloads

    services = app.extensions["mlapi.services"]
    settings = services.settings
    roll = server_roll(server)
    if roll is None or not settings.admin_token:
        return
    fleet = build_fleet_reloads(settings)
    reloads = MasterReloads(Reloader(services, fleet), roll)
    app.extensions[EXTENSION] = reloads
    if fleet is not None:
        reloads.reloader.followed = services.registry.generation = fleet.current() or 0
        fleet.watch(reloads.follow_fleet)
