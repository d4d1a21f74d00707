"""The load generator serve_bench.py falls back on when wrk is not installed.

Like `wrk -t1 -cN -dS`: one process, N connections, each sending the same request back to back
until the time is up, reconnecting whenever the server closes the connection (mlapi's uWSGI
and gunicorn both answer `Connection: close`). Latency runs from writing the request to
reading the whole response, connecting excluded, as wrk measures it. Writes the same JSON
summary as bench/post.lua's done(). It costs more CPU per request than wrk, and that CPU is
taken from the server on the same machine: compare its numbers only with its own.

    python bench/loadgen.py --url http://127.0.0.1:8080/predict --body-file body.json \
        --connections 16 --duration 10 --out summary.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.parse


class Tally:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


def build_request(method: str, url: urllib.parse.SplitResult, body: bytes | None) -> bytes:
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    head = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", "User-Agent: mlapi-loadgen"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, bytes read, whether the connection may be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    keep = version == "HTTP/1.1" and headers.get("connection") != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # no length: the body runs to the end of the connection
        body = await reader.read()
        keep = False
    return int(status), len(head) + len(body), keep


async def connection(host: str, port: int, request: bytes, deadline: float, timeout: float, tally: Tally) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError):
                tally.errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
        started = time.perf_counter()
        try:
            writer.write(request)
            await writer.drain()
        except OSError:
            tally.errors["write"] += 1
            writer.close()
            writer = None
            continue
        try:
            status, size, keep = await asyncio.wait_for(read_response(reader), timeout)
        except asyncio.TimeoutError:
            tally.errors["timeout"] += 1
            keep, status = False, None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.errors["read"] += 1
            keep, status = False, None
        if status is not None:
            tally.latencies_us.append((time.perf_counter() - started) * 1e6)
            tally.bytes += size
            if status > 399:  # what wrk counts as a status error
                tally.errors["status"] += 1
        if not keep:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def run(args) -> dict:
    url = urllib.parse.urlsplit(args.url)
    body = open(args.body_file, "rb").read() if args.body_file else None
    request = build_request(args.method, url, body)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(*(connection(url.hostname, url.port or 80, request, deadline, args.timeout, tally)
                           for _ in range(args.connections)))
    elapsed = time.monotonic() - started
    lat = sorted(tally.latencies_us)
    return {"tool": "python-loadgen", "duration_us": int(elapsed * 1e6), "requests": len(lat),
            "bytes": tally.bytes, **{f"err_{k}": v for k, v in tally.errors.items()},
            "lat_mean_us": sum(lat) / len(lat) if lat else 0.0,
            "lat_p50_us": percentile(lat, 50), "lat_p90_us": percentile(lat, 90),
            "lat_p99_us": percentile(lat, 99), "lat_max_us": lat[-1] if lat else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body-file", help="JSON request body (none: no body)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request, as wrk --timeout")
    parser.add_argument("--out", help="write the JSON summary here (default: stdout)")
    args = parser.parse_args()
    summary = json.dumps(asyncio.run(run(args)))
    if args.out:
        with open(args.out, "w") as out:
            out.write(summary + "\n")
    else:
        print(summary)


if __name__ == "__main__":
    main()
