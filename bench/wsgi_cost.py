"""The cost of one request through the whole WSGI app (request pipeline, fast path, model),
in process: for instruction counts that the machine's load does not move.

    MODELS=m1=PATH OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=cg.N \
        .venv/bin/python bench/wsgi_cost.py mlapi N ROWS BODY.json

Run it with N requests and with 0, and divide the difference of the two totals by N: the
instructions one request costs (compare two checkouts this way; `make bench-peers` measures
wall clock, whose noise on a shared machine exceeds a few per cent). BODY.json is a request
body whose "instances" holds at least ROWS rows (the peers' bench writes them:
bench/peers/prepare.py WORKDIR → WORKDIR/bodies/flask_batch.json). Without valgrind it prints
the time per request.

BENCH_API_KEY=<key> (16 characters or more) counts the API key check too: the app is built with
API_KEYS set to that key and every request carries "Authorization: Bearer <key>". Add
RATE_LIMIT=100000000/minute (read by the app itself; with REDIS_URL the counts go to Redis) for
keys and limits together, as bench/fleet_bench.py measures them in wall clock.
"""
import importlib
import io
import json
import os
import sys
import time

package, count, rows, body_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
api_key = os.environ.get("BENCH_API_KEY")
if api_key:
    os.environ["API_KEYS"] = api_key  # before the app reads its settings, at import
application = importlib.import_module(f"{package}.wsgi").application
body = json.dumps({"instances": json.load(open(body_file))["instances"][:rows]}).encode()
statuses = []


def environ() -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "SERVER_NAME": "localhost",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.errors": sys.stderr, **({"HTTP_AUTHORIZATION": f"Bearer {api_key}"} if api_key else {})}


def start_response(status, headers, exc_info=None):
    statuses.append(status)


for _ in range(20):  # warm: first-call imports and caches are not what is measured
    b"".join(application(environ(), start_response))
assert statuses[-1].startswith("200"), statuses[-1]
started = time.perf_counter()
for _ in range(count):
    b"".join(application(environ(), start_response))
print(f"{(time.perf_counter() - started) / max(count, 1) * 1e6:.1f} µs per request", file=sys.stderr)
