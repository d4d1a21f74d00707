"""Slow clients on demand, for the slow-client tests and for measuring a server by hand.

A slow client opens a connection and then sends its request at a trickle: one header line a
second ("headers"), or complete headers and then its body one byte a second ("body"), or
complete headers and the body's first bytes, then nothing ("pause"; "pause-chunked" with a
chunked body). Each
one is a thread that keeps trickling until it is stopped or the server closes its connection
(then `cut_after` says when). Meanwhile `answered` counts how many ordinary requests from
another client get an answer in time.

    python tests/server/slow_clients.py PORT headers|body N   # prints answered / sent
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time

import requests

IRIS_ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


class SlowClient(threading.Thread):
    def __init__(self, port: int, mode: str, path: str = "/predict"):
        super().__init__(daemon=True)
        self.port, self.mode, self.path = port, mode, path
        self.stopping = threading.Event()
        self.started_at = time.monotonic()
        self.cut_after: float | None = None  # seconds from connecting to the server closing it
        self.response = b""

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                self.started_at = time.monotonic()
                sock.sendall(f"POST {self.path} HTTP/1.1\r\nHost: x\r\n".encode())
                if self.mode in ("body", "pause"):
                    sock.sendall(b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                if self.mode == "pause":
                    sock.sendall(b'{"instances": [')
                if self.mode == "pause-chunked":
                    sock.sendall(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b'f\r\n{"instances": [\r\n')
                line = 0
                while not self.stopping.wait(1):
                    line += 1
                    if self.mode.startswith("pause"):
                        if self._closed(sock):
                            break
                        continue
                    piece = b" " if self.mode == "body" else f"X-Slow-{line}: a\r\n".encode()
                    try:
                        sock.sendall(piece)
                    except OSError:
                        break
                    if self._closed(sock):
                        break
                self.cut_after = None if self.stopping.is_set() else time.monotonic() - self.started_at
        except OSError:
            self.cut_after = time.monotonic() - self.started_at

    def _closed(self, sock: socket.socket) -> bool:
        """True once the server answered or closed the connection (read without waiting)."""
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            sock.setblocking(True)
            sock.settimeout(2)
        self.response += data
        return True

    def stop(self) -> None:
        self.stopping.set()


def start_slow_clients(port: int, mode: str, count: int) -> list[SlowClient]:
    clients = [SlowClient(port, mode) for _ in range(count)]
    for client in clients:
        client.start()
    time.sleep(1.5)  # connected and past their first bytes: a worker would be holding each by now
    return clients


def answered(url: str, requests_sent: int, timeout: float = 3.0, body: dict = IRIS_ROW) -> int:
    """How many of `requests_sent` ordinary predictions, one after another, get a 200 in time."""
    ok = 0
    for _ in range(requests_sent):
        try:
            ok += requests.post(f"{url}/predict", json=body, timeout=timeout).status_code == 200
        except requests.RequestException:
            pass
    return ok


if __name__ == "__main__":
    port, mode, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    clients = start_slow_clients(port, mode, count)
    started = time.monotonic()
    result = answered(f"http://127.0.0.1:{port}", 5)
    time.sleep(max(0.0, 25 - (time.monotonic() - started)))  # then see whether they get cut
    print(json.dumps({"mode": mode, "slow": count, "answered": result, "of": 5,
                      "cut_after": sorted(round(c.cut_after, 1) for c in clients if c.cut_after is not None),
                      "still_open": sum(c.cut_after is None for c in clients)}))
    for client in clients:
        client.stop()
