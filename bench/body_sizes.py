"""Time POSTs through a running server over one keep-alive connection, by request body size
and by response size: what the transport alone costs. Found this way (docs/operations.md,
"Large responses on loopback"): behind uWSGI's HTTP router a response over its 32 KB buffer
stalls ~40 ms on loopback, and a large request body does not.

    python bench/body_sizes.py http://127.0.0.1:8080/predict --features 30
    python bench/body_sizes.py http://127.0.0.1:8080/predict --sizes 16384,1048576 --rows 0 -n 500

Body sizes: a one-row prediction ({"instances": [[0.0, ...]]}) padded with JSON whitespace to
the size, so the model's work and the response are the same for every size. Rows: that many
rows, so the response (a prediction and probabilities per row) grows with them. Prints per
case: median, 99th percentile and slowest request in ms, and how many took over 30 ms (the
stall is ~40 ms: Linux's delayed-ACK timer).
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from urllib.parse import urlsplit

DEFAULT_SIZES = (16 * 1024, 33 * 1024, 64 * 1024, 240 * 1024, 1024 * 1024)
DEFAULT_ROWS = (100, 400, 700, 1000, 4000)


def padded_body(size: int, features: int) -> bytes:
    body = rows_body(1, features)
    if len(body) > size:
        raise SystemExit(f"a body of {size} bytes cannot hold a row of {features} features")
    return body[:-1] + b" " * (size - len(body)) + b"}"


def rows_body(rows: int, features: int) -> bytes:
    return json.dumps({"instances": [[0.0] * features] * rows}).encode()


def read_response(sock: socket.socket, pending: bytes) -> tuple[int, int, bytes]:
    """The status and size of one response with a Content-Length, and what followed it."""
    while b"\r\n\r\n" not in pending:
        pending += receive(sock)
    head, _, rest = pending.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += receive(sock)
    return int(lines[0].split()[1]), len(head) + 4 + length, rest[length:]


def receive(sock: socket.socket) -> bytes:
    piece = sock.recv(65536)
    if not piece:
        raise ConnectionError("the server closed the connection")
    return piece


def measure(url: str, body: bytes, repetitions: int, warmup: int = 5) -> tuple[list[float], int]:
    """Milliseconds per request, and the response's size (headers included)."""
    parts = urlsplit(url)
    request = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    timings = []
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        pending = b""
        for number in range(warmup + repetitions):
            start = time.perf_counter()
            sock.sendall(request)
            status, response_size, pending = read_response(sock, pending)
            elapsed = (time.perf_counter() - start) * 1000
            if status != 200:
                raise SystemExit(f"a body of {len(body)} bytes: HTTP {status}")
            if number >= warmup:
                timings.append(elapsed)
    return timings, response_size


def summary(body: bytes, timings: list[float], response_size: int) -> str:
    ordered = sorted(timings)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    stalled = sum(1 for value in ordered if value > 30)
    return (f"body {len(body):>9,} B  response {response_size:>9,} B  median {statistics.median(ordered):7.2f} ms  "
            f"p99 {p99:7.2f} ms  max {ordered[-1]:7.2f} ms  over 30 ms: {stalled}/{len(ordered)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/predict")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="body sizes in bytes (0: none)")
    parser.add_argument("--rows", default=",".join(map(str, DEFAULT_ROWS)), help="rows per request (0: none)")
    parser.add_argument("--features", type=int, default=30, help="the model's number of features")
    parser.add_argument("-n", "--repetitions", type=int, default=200)
    args = parser.parse_args()
    bodies = [padded_body(int(size), args.features) for size in args.sizes.split(",") if int(size)]
    bodies += [rows_body(int(rows), args.features) for rows in args.rows.split(",") if int(rows)]
    for body in bodies:
        print(summary(body, *measure(args.url, body, args.repetitions)), flush=True)


if __name__ == "__main__":
    main()
