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
- uWSGI and gunicorn: each worker in turn told to stop gracefully (uWSGI: SIGHUP, its worker
  reload; gunicorn: SIGTERM), which its master replaces by a fresh fork; the next once the
  previous one's replacement is up; the requesters last, after their answer has been handed
  over. Not gunicorn's own SIGHUP: its arbiter then waits (up to the graceful timeout, 8 s) for
  every old worker to exit before it handles anything else, and a worker that asked for a
  reload meanwhile cannot exit before the master answers it, which needs the arbiter to handle
  the next reload's SIGHUP: a second reload at once answered after 8.5-10.4 s (measured).
- granian: SIGHUP to the launcher: it replaces its workers one by one, handing each one's
  clients over first (app/server/granian.py); since it waits for each old one, the requester
  is answered first.
"""
from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Callable

from mlapi.errors import MlapiError
from mlapi.server import limits
from mlapi.serving.reload import EXTENSION, Reloader, ReloadOutcome

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

MESSAGE_BYTES = 4096


class WorkerRoll:
    """How a server's workers are replaced by fresh forks of the master (module docstring).

    `requesters` are the workers whose reload request this reload answers; `waiting()` the pids
    of workers that asked for a reload since (answered by the next one): neither is replaced
    before its answer, since it cannot finish its request before the master answers it."""

    def before_answer(self, requesters: set[int], waiting: Callable[[], set[int]]) -> None:
        """Replace the other workers; return once they serve the new models."""

    def after_answer(self, requesters: set[int]) -> None:
        """Replace the requesters (and, on servers that roll all at once, everyone)."""


class WorkerByWorkerRoll(WorkerRoll):
    """uWSGI and gunicorn: `workers()` lists the worker pids, `stop_signal` makes one stop
    gracefully (its request in flight finished), and the server's master forks its replacement."""

    def __init__(self, workers: Callable[[], list[int]], stop_signal: int):
        self.workers = workers
        self.stop_signal = stop_signal

    def before_answer(self, requesters, waiting):
        for pid in self.workers():
            if pid not in requesters and pid not in waiting():
                self._replace(pid, waiting)

    def after_answer(self, requesters):
        for pid in requesters & set(self.workers()):
            try:
                os.kill(pid, self.stop_signal)  # it exits once its answer is written; not waited for
            except ProcessLookupError:
                pass

    def _replace(self, pid: int, waiting: Callable[[], set[int]]) -> None:
        """One worker at a time, the next only once this one's replacement is up: the others
        keep serving meanwhile. A worker that asks for a reload meanwhile is not waited for (it
        waits for us: the next reload answers it, and replaces it then)."""
        count = len(self.workers())
        try:
            os.kill(pid, self.stop_signal)
        except ProcessLookupError:  # it exited meanwhile (max-requests): its replacement is new
            return
        deadline = time.monotonic() + limits.DRAIN_SECONDS + 2
        while time.monotonic() < deadline:
            pids = self.workers()
            if (pid not in pids and len(pids) >= count) or pid in waiting():
                return
            time.sleep(0.02)
        log.warning("reload: worker %d was not replaced within %d s", pid, limits.DRAIN_SECONDS + 2)


def uwsgi_workers() -> list[int]:
    import uwsgi

    return [worker["pid"] for worker in uwsgi.workers() if worker["pid"] > 0]


class GranianRoll(WorkerRoll):
    """SIGHUP to the launcher, once the requesters are answered: granian waits for each old
    worker (the requesters' included) before it stops it."""

    def after_answer(self, requesters):
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


class ReloadStillRunning(MlapiError):
    """The master did not answer within the request's time: the reload goes on there."""

    status_code = 503


class MasterReloads:
    """The workers' way to the master's reload, and the master thread that serves it.

    Requests that arrive while a reload runs are not served one by one: each would restart the
    workers blocked waiting for their own turn, and wait up to DRAIN_SECONDS for them (measured
    before: two reloads at once stalled a 2-worker server 10 s). Those queued when a reload
    starts are answered by it; those that arrive during it by the next one, once, all together."""

    def __init__(self, reloader: Reloader, roll: WorkerRoll):
        self.reloader = reloader
        self.roll = roll
        self.inbox, self.outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.inbox.setblocking(False)  # the master's thread waits in select, then takes all queued
        self.queued: list[tuple[int, socket.socket]] = []  # (requester pid, its reply socket)
        self.master_pid = os.getpid()
        # A worker waits for the master below the request's own deadline (app/http/deadline.py
        # cannot interrupt a blocked recv): a JSON 503 rather than the server's kill.
        self.wait_seconds = max(1.0, reloader.services.settings.request_timeout_seconds - 1.0)
        threading.Thread(target=self._serve, name="mlapi-reloads", daemon=True).start()

    # ---- in a worker ---------------------------------------------------------------------------
    def reload(self) -> ReloadOutcome:
        if os.getpid() == self.master_pid:  # not forked (yet): nothing to hand it to
            return self.reloader.reload()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            with theirs:
                socket.send_fds(self.outbox, [json.dumps({"pid": os.getpid()}).encode()], [theirs.fileno()])
            mine.settimeout(self.wait_seconds)
            try:
                answer = b"".join(iter(lambda: mine.recv(65536), b""))
            except TimeoutError:
                answer = b""
        if not answer:
            raise ReloadStillRunning(f"the server's master did not answer within {self.wait_seconds:g} s: the "
                                     "reload may go on there (GET /models shows its generation once done; "
                                     "the log says more)")
        return ReloadOutcome(**json.loads(answer))

    # ---- in the master -------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                select.select([self.inbox], [], [])
                with self.reloader.lock:
                    self._take_queued()
                    while self.queued:
                        self._reload_queued()
            except Exception:  # noqa: BLE001  (the thread must outlive any one request)
                log.exception("reload: a request to the master failed")

    def _take_queued(self) -> set[int]:
        """Move the requests sent so far to self.queued; the pids of every worker queued."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.inbox, MESSAGE_BYTES, 1)
            except BlockingIOError:
                return {pid for pid, _ in self.queued}
            if fds:
                self.queued.append((json.loads(message)["pid"], socket.socket(fileno=fds[0])))

    def _reload_queued(self) -> None:
        """One reload answering every request queued now (under the reloader's lock)."""
        batch, self.queued = self.queued, []
        requesters = {pid for pid, _ in batch}
        try:
            outcome = self.reloader.run()
            refreeze()
            self.roll.before_answer(requesters, self._take_queued)
            answer = json.dumps(asdict(outcome)).encode()
            for _, reply in batch:
                try:
                    reply.sendall(answer)
                    # The end of the answer for the requester, though the workers forked
                    # meanwhile hold copies of this descriptor (so closing ours would not be one).
                    reply.shutdown(socket.SHUT_WR)
                except OSError:  # that requester gave up waiting (ReloadStillRunning)
                    pass
        finally:
            for _, reply in batch:
                reply.close()
            self.roll.after_answer(requesters)

    def follow_fleet(self, generation: int) -> None:
        """The fleet's counter, read again on an announcement or a poll: reload here when it is not
        the one this instance last followed (app/server/fleet_reload.py)."""
        with self.reloader.lock:
            if generation == self.reloader.followed:
                return
            self.reloader.run(generation)
            refreeze()
            self.roll.before_answer(set(), self._take_queued)
            self.roll.after_answer(set())
            while self.queued:  # workers that asked meanwhile were skipped: their reload now
                self._reload_queued()


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
        return WorkerByWorkerRoll(uwsgi_workers, signal.SIGHUP)
    if server == "gunicorn":  # the arbiter's children are its workers
        return WorkerByWorkerRoll(lambda: sorted(children()), signal.SIGTERM)
    if server == "granian":
        return GranianRoll()
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
