"""A TCP proxy the tests can cut and restore: a real network failure between the server and
a real database, without stopping the machine's shared database server."""
from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    """`reply_delay` seconds added to every answer from the target (a remote server's round trip)."""

    def __init__(self, target_host: str, target_port: int, reply_delay: float = 0.0):
        self.target = (target_host, target_port)
        self.reply_delay = reply_delay
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._listener.listen(64)
        self._open = True
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()  # the "database" is down: refuse the session
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._connections += [client, upstream]
            for a, b, delay in ((client, upstream, 0.0), (upstream, client, self.reply_delay)):
                threading.Thread(target=self._pipe, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay: float = 0.0) -> None:
        try:
            while data := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        with self._lock:
            self._open = False
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self._connections.clear()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()
