"""How a granian worker is replaced without losing a request (app/server/granian.py's
launcher calls hand_over; its module docstring says why each step): the new worker starts and
polls the slot's listening socket (accepting), the old one retires (Retirement: it stops
polling it and answers `Connection: close`), and once it holds no client connection
(client_connections) it can be stopped. Everything here reads the processes' state in /proc
(Linux, as granian's per-worker sockets are).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import time

RETIRE_SIGNAL = signal.SIGUSR1
STARTUP_SECONDS = 10.0  # a new worker not accepting by then is killed; the old one serves on


class Retirement:
    """A worker being replaced hands its clients over before it is stopped (module docstring).

    The launcher sends it RETIRE_SIGNAL. The worker then answers every request with `Connection:
    close` (CloseWhenRetiring), and stops accepting: granian's accept loop (Rust) polls the
    inherited listening socket by its descriptor number, and that number is made to name an idle
    listening socket that nobody connects to, so the loop finds nothing more to accept while the
    slot's queue is left to the worker replacing it. (The loop's wake-ups on the slot socket's
    new connections remain: each ends in EAGAIN.)"""

    def __init__(self):
        self.retiring = False
        # The worker's slot socket: set by the launcher before each fork, inherited with it.
        self.listener_fd: int | None = None
        self.slot_sockets: list[socket.socket] = []  # the launcher's, every slot's

    # ---- in the launcher -----------------------------------------------------------------------
    @staticmethod
    def ignore_until_listening() -> None:
        """Inherited by every worker until its loader listens for the signal: a worker still
        starting must not die of it (granian would then see a crash)."""
        signal.signal(RETIRE_SIGNAL, signal.SIG_IGN)

    @staticmethod
    def retire(pid: int) -> None:
        try:
            os.kill(pid, RETIRE_SIGNAL)
        except ProcessLookupError:
            pass

    # ---- in a worker ---------------------------------------------------------------------------
    def listen(self) -> None:
        """In a new worker: listen for the signal, and keep only its own slot's socket of those
        the fork copied (another slot's, held here, would outlive that slot's workers)."""
        signal.signal(RETIRE_SIGNAL, self._retire)
        for slot_socket in self.slot_sockets:
            if slot_socket.fileno() != self.listener_fd:
                slot_socket.close()

    def _retire(self, signum, frame) -> None:
        self.retiring = True
        if self.listener_fd is None:  # not forked from the launcher: nothing of its to give back
            return
        idle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        idle.setblocking(False)  # the accept loop's accept must fail at once, never wait on it
        idle.bind(("127.0.0.1", 0))
        idle.listen(1)
        os.dup2(idle.fileno(), self.listener_fd, inheritable=False)  # atomic: no moment without one
        idle.close()


class CloseWhenRetiring:
    """The app as a worker serves it: once the worker retires, every answer carries `Connection:
    close`, which hyper honours by closing the connection after that answer, so the client opens
    its next one to a worker that stays. (A hop-by-hop header, which PEP 3333 leaves to the
    server: this wrapper belongs to the granian launcher, not to the app.)"""

    def __init__(self, app, retirement: Retirement):
        self.app = app
        self.retirement = retirement

    def __call__(self, environ, start_response):
        if not self.retirement.retiring:
            return self.app(environ, start_response)

        def closing(status, headers, exc_info=None):
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        return self.app(environ, closing)


def accepting(pid: int, listener_fd: int) -> bool:
    """Whether worker `pid` polls its slot's listening socket yet (its accept loop has started):
    the socket's descriptor is in one of its epoll sets (/proc/PID/fdinfo, "tfd:" lines)."""
    registered = re.compile(rf"^tfd:\s+{listener_fd}\s", re.M)
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    if registered.search(info.read()):
                        return True
            except OSError:
                continue
    except OSError:
        pass
    return False


def shares_listener(pid: int, listener_fd: int) -> bool:
    """Whether `pid`'s descriptor `listener_fd` is still this process's listening socket (a
    retired worker's names its idle one)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{listener_fd}") == os.readlink(f"/proc/self/fd/{listener_fd}")
    except OSError:  # it has exited
        return False


def wait_until(condition, seconds: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(interval)


def running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has: its state is Z)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def hand_over(old: int, new: int, slot_fd: int, port: int, longest: float, stopping,
              startup_seconds: float = STARTUP_SECONDS) -> bool:
    """Steps 1 and 2 of a worker's replacement (module docstring): once the new worker `new`
    polls the slot's socket, the old one retires and its clients leave it (at most `longest`
    seconds). False, with the old worker left serving, if the new one dies or is not polling
    within `startup_seconds` (the slot's queue would wait on a worker that never takes from it).
    `stopping()` true (the launcher got SIGTERM) cuts every wait short."""
    wait_until(lambda: stopping() or accepting(new, slot_fd) or not running(new), startup_seconds)
    if not accepting(new, slot_fd):
        return False
    Retirement.retire(old)
    wait_until(lambda: stopping() or not shares_listener(old, slot_fd), longest)  # its handler has run
    wait_until(lambda: stopping() or not client_connections(old, port), longest)
    return True


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds ("socket:[INODE]" links in /proc/PID/fd)."""
    inodes = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # it has exited
        return inodes
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def client_connections(pid: int, port: int) -> int:
    """The established TCP connections on `port` that process `pid` holds."""
    inodes = socket_inodes(pid)
    if not inodes:
        return 0
    count, local_port = 0, f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as rows:
                for row in rows.readlines()[1:]:
                    fields = row.split()
                    # local address, state 01 (ESTABLISHED), inode
                    if fields[1].endswith(local_port) and fields[3] == "01" and fields[9] in inodes:
                        count += 1
        except OSError:
            continue
    return count
