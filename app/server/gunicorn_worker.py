"""gunicorn's sync worker with a deadline on a request's headers (`mlapi serve --server
gunicorn` runs it: `--worker-class mlapi.server.gunicorn_worker.SyncWorker`).

gunicorn reads a request's headers with a blocking socket and no overall time limit, so a
client sending a header line a second held its worker for as long as it liked (measured: 2 such
clients, 2 workers, 0 of 5 other requests answered). Here the headers must be complete within
limits.HEADERS_SECONDS, or the connection is closed; the body is then the request pipeline's
to bound (REQUEST_TIMEOUT). The worker is still held while the deadline runs: gunicorn cannot
read headers without a worker (docs/operations.md, Slow clients).
"""
from __future__ import annotations

import socket
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

from mlapi.server.limits import HEADERS_SECONDS


class HeadersDeadline:
    """A client socket whose reads fail once `seconds` have passed without the end of the
    headers (a blank line) having arrived; everything else goes to the socket itself."""

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock = sock
        self._deadline: float | None = time.monotonic() + seconds
        self._tail = b""  # the last bytes read, to find a blank line split across two reads

    def recv(self, size: int) -> bytes:
        if self._deadline is None:
            return self._sock.recv(size)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise NoMoreData(f"headers not complete within {HEADERS_SECONDS} s")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            raise NoMoreData(f"headers not complete within {HEADERS_SECONDS} s") from None
        if b"\r\n\r\n" in self._tail + data:
            self._deadline = None  # headers done: blocking reads again, for the body
            self._sock.settimeout(None)
        self._tail = (self._tail + data)[-3:]
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


class SyncWorker(GunicornSyncWorker):
    def handle(self, listener, client, addr):
        super().handle(listener, HeadersDeadline(client, HEADERS_SECONDS), addr)
