"""`mlapi serve --server granian`: the app served by granian, whose HTTP server is Rust.

Why a third server: micro-batching needs many requests in flight in each worker. uWSGI and
gunicorn hold each one in a Python thread that parses HTTP, reads the body and writes the
response itself, taking and dropping the GIL at every step; with 32 such threads per worker
the hand-offs cost more than batching a cheap model saves (README, Performance). granian
accepts, parses, reads and writes in Rust, outside the GIL, keeps connections alive, and
enters Python once per request, to call the WSGI app. `mlapi serve` picks it when
micro-batching is on.

What it keeps from the other two: the models load once, in this (master) process, before the
workers fork, so the workers share their pages (granian forks where Python's default start
method is fork: Linux up to 3.13; its per-worker loader returns the app this process already
loaded); SIGTERM drains in-flight requests within limits.DRAIN_SECONDS; a worker that
dies is replaced; granian's own log lines go through the app's JSON (or text) handler.

Replacing a worker loses no request (a model reload replaces them all: SIGHUP,
app/server/reloads.py; granian's default replacement lost ~1 request in 3,000 per reload,
measured). A stopping granian 2.8 worker (read in its source: src/workers.rs, and hyper's
graceful shutdown) closes its listening socket, and on each connection it holds lets a request
being served finish but closes at once one that has not sent a byte yet (accepted a moment
ago) or sits idle between keep-alive requests: a request its client is sending then is lost.
And on Linux each worker listens on a socket of its own (SO_REUSEPORT): closing it resets the
connections queued on it (net.ipv4.tcp_migrate_req, which would move them, is off by default
and cannot be set on Cloud Run). So here:
- the launcher makes the listening sockets, one per worker slot (SO_REUSEPORT, so the kernel
  still spreads new connections evenly over the slots), and keeps them open: a slot's queue
  outlives any worker serving it, and its next worker inherits it. (One socket shared by every
  worker, as uWSGI and gunicorn do, also outlives them, but granian's accept loop takes every
  pending connection at once: 16 keep-alive clients all landed on one worker of two, measured.)
- a worker is replaced in three steps (Server._respawn_workers, app/server/granian_handover.py):
  its replacement starts and polls the slot's socket; the old one retires (Retirement: it
  stops polling it, and answers every request with `Connection: close`, so each client leaves
  it cleanly after its next answer); once it holds no client connection (at most granian's respawn interval, 3.5 s) it
  is stopped, with nothing left to lose. Only a keep-alive connection idle all that time is
  closed unused, as at any keep-alive timeout. A replacement not polling within STARTUP_SECONDS
  is killed and the old worker kept; SIGTERM ends a replacement at once (no more forks, no
  more waiting), and a worker dying during one is not taken for a crash loop.

`mlapi serve` runs main() in its own process with the Settings it parsed; run on its own
(`python -m mlapi.server.granian`, the command --dry-run prints) it reads them from the
environment, like app/wsgi.py.
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING

from mlapi.server import limits
from mlapi.server.granian_handover import STARTUP_SECONDS, CloseWhenRetiring, Retirement, hand_over

if TYPE_CHECKING:
    from mlapi.config import Settings

# granian's loggers, sent to the root logger, which mlapi.logs gives the app's formatter
# (granian sets its logger's level from --log-level, which `mlapi serve` takes from LOG_LEVEL).
_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {},
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
}


log = logging.getLogger(__name__)

# The app main() loaded in this (master) process before the workers fork; they inherit it.
_application = None
_retirement = Retirement()


def load_application(target: str):
    """granian's target loader, run in each worker: the app the master loaded before forking
    (only a worker that was not forked from it, should granian ever spawn, imports it anew)."""
    if _application is None:
        from mlapi.wsgi import application
    else:
        application = _application
    _retirement.listen()
    return CloseWhenRetiring(application, _retirement)


def main(argv: list[str], settings: Settings | None = None) -> None:
    """argv as `mlapi serve` builds it (mlapi.server.launch.granian_arguments): address:port
    --workers N --blocking-threads N --log-level LEVEL."""
    global _application
    parser = argparse.ArgumentParser(prog="mlapi.server.granian")
    parser.add_argument("bind")
    parser.add_argument("--workers", type=int, required=True)
    # Python threads per worker that run the app; more only help micro-batching.
    parser.add_argument("--blocking-threads", type=int, required=True)
    # granian's own log lines; the app's follow its settings (both: LOG_LEVEL).
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.net import SocketSpec

    from mlapi.server.ready import announce
    from mlapi.server.startup import load_application as load_app

    class Server(Granian):
        def startup(self, spawn_target, target_loader):
            # granian's startup() ends by spawning the workers: then the ready line
            # (app/server/ready.py), after granian's own start-up lines.
            super().startup(spawn_target, target_loader)
            announce(_application, "granian", args.workers, args.blocking_threads)

        def _init_shared_socket(self):
            # One listening socket per worker slot, made and kept here (module docstring). bind
            # only: the slot's first worker listens (granian's SocketHolder, Linux).
            self._ssp = None
            self._slots = [SocketSpec(self.bind_addr, self.bind_port, self.backlog).build()
                           for _ in range(self.workers)]
            self._slot_sockets = [socket.socket(fileno=slot.get_fd()) for slot in self._slots]
            _retirement.slot_sockets = self._slot_sockets
            _retirement.ignore_until_listening()

        def _drop_shared_socket(self):
            for slot_socket in self._slot_sockets:
                slot_socket.close()

        def _spawn_worker(self, idx, target, callback_loader):
            # granian hands every worker self._shd; here the slot's own (read as it builds the
            # worker's arguments; the fork follows at once, with _retirement's listener_fd).
            self._shd, self._sso = self._slots[idx], self._slot_sockets[idx]
            _retirement.listener_fd = self._slot_sockets[idx].fileno()
            return super()._spawn_worker(idx, target, callback_loader)

        def _respawn_workers(self, workers, spawn_target, target_loader, delay: float = 0):
            """granian's replacement of live workers (a reload's SIGHUP; delay: its respawn
            interval), in the module docstring's three steps. A worker that died (delay 0) has
            nothing to hand over: granian's own."""
            if not delay:
                return super()._respawn_workers(workers, spawn_target, target_loader, delay)
            def stopping() -> bool:  # SIGTERM: no more forks, no more waits
                return self.interrupt_signal

            for idx in workers:
                if stopping():
                    break
                self.respawned_wrks[idx] = time.monotonic()
                old = self.wrks[idx]
                new = self._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader)
                new.start()
                slot_fd = self._slot_sockets[idx].fileno()
                # Stopping (SIGTERM) mid-way: the new worker stops with the rest at shutdown.
                if hand_over(old.inner.pid, new.inner.pid, slot_fd, self.bind_port, delay, stopping) or stopping():
                    self.wrks[idx] = new
                    self._stop(old, idx)
                else:
                    log.error("granian worker-%d's replacement died or was not accepting within %d s: "
                              "killed, the old worker goes on serving", idx + 1, STARTUP_SECONDS)
                    new.kill()
                    new.join()
            self._forget_replaced_crashes()
            self._metrics.incr_spawn(len(workers))

        def _stop(self, worker, idx: int) -> None:
            worker.terminate()
            worker.join(self.workers_kill_timeout)
            if worker.is_alive():
                log.warning("granian worker-%d did not stop within %d s: killed", idx + 1,
                            self.workers_kill_timeout)
                worker.kill()
                worker.join()

        def _forget_replaced_crashes(self) -> None:
            """A worker that died during the hand-over (killed, out of memory) put its slot in
            interrupt_children, which granian's loop would take for a crash loop (the slot was
            respawned < 5.5 s ago) and exit: only slots whose current worker is dead stay."""
            self.interrupt_children[:] = [idx for idx in self.interrupt_children if not self.wrks[idx].is_alive()]
            # The dead worker's watcher woke the main loop: with nothing left to do it would spin.
            self.main_loop_interrupt.clear()
            if (self.interrupt_signal or self.reload_signal or self.interrupt_children
                    or self.lifetime_signal or self.rss_signal):
                self.main_loop_interrupt.set()

    address, _, port = args.bind.rpartition(":")
    server = Server(
        "mlapi.wsgi:application",
        address=address,
        port=int(port),
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.blocking_threads,
        workers_kill_timeout=limits.DRAIN_SECONDS,
        # A client still sending its headers after this long is cut (granian's default: 30 s).
        http1_settings=HTTP1Settings(header_read_timeout=limits.HEADERS_SECONDS * 1000),
        respawn_failed_workers=True,
        log_level=args.log_level,
        log_dictconfig=_LOGGING,
        log_access=False,  # Cloud Run logs every request; ACCESS_LOG=1 makes the app log them
    )
    # After Granian(): it configures logging, then the app does.
    _application = load_app(settings, server="granian")
    server.serve(target_loader=load_application)


if __name__ == "__main__":
    from mlapi.errors import ConfigurationError

    try:
        main(sys.argv[1:])
    except ConfigurationError as exc:
        sys.exit(f"mlapi.server.granian: {exc.message}")
