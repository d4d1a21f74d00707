"""Issue 17's numbers on a real `mlapi serve` (uWSGI with uwsgi.ini, one worker per core), each
ratio measured within one run, on servers this script starts (127.0.0.1 only) and stops.

  cache   The demo text model (`mlapi demo`: tickets) on POST /model/<name>/text_to_prediction:
          sequential requests on one kept-alive connection per server, median latency. A hit
          is the same text again (answered from the cache: `from_cache` true), a miss a text
          never sent before (computed, then written to the cache); both are the same sentence
          and differ only by a reference the model does not know, so they cost the model alike.
          Target: a hit costs at most half a miss, with the cache in process and in Redis.
  redis   The same medians, Redis minus in process, for hits and for misses. Target: ≤ 1 ms.
          The two servers run side by side and the four kinds of request take turns, one
          request each, so the machine's noise falls on all four alike.
  keys    M1 (serve_bench's pipeline) on POST /predict, 16 connections, wrk with
          bench/post_key.lua (every request carries the key, so both sides get the same bytes):
          API_KEYS and a RATE_LIMIT never reached (on) against the same server without them
          (off), rate limits counted in process memory, then in Redis (REDIS_URL on both sides).
          In each round a fresh pair of servers (off, on) per storage, measured back to back,
          off first in even rounds and on first in odd ones (A/B, B/A, ...); the ratio is
          computed within each round, the median over rounds reported. Target: keys and
          limits cost ≤ 10 % of req/s.

Every answer is checked: the text answers' labels are the model's own predict, the hit text's
probabilities its predict_proba (to 1e-9), a hit says `from_cache` and a miss does not; M1's
1-row answer is its predict and predict_proba before and after every load run, a server with
keys on refuses a request without one (401), and the Redis rate limits leave their counters
in Redis. Any failure, or any error or non-2xx answer under load, exits 1; a missed target is
reported FAIL in the table and does not (the other benches of `make bench` still run).

Redis is needed (REDIS_URL's; default a database no test uses, emptied of mlapi's keys before
and after): without it the script exits 2 with one line, before training anything. So is wrk.
Writes bench/results/fleet.json and fleet.md (also printed); server logs to bench/results/logs/.

    .venv/bin/python bench/fleet_bench.py                 # ~5 min: 3 rounds, 10 s wrk runs
    .venv/bin/python bench/fleet_bench.py --quick         # smoke run: 1 round, 3 s runs (~1.5 min)
    .venv/bin/python bench/fleet_bench.py --parts keys --rounds 5
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench  # noqa: E402  (beside this file: models, server launch and teardown)

HERE = serve_bench.HERE
ROOT = serve_bench.ROOT
RESULTS = serve_bench.RESULTS
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"  # the tests use database 0
API_KEY = "fleet-bench-key-0123456789abcdef"
NEVER_REACHED = "100000000/minute"  # counted on every request, never refuses one
TEXT_ROUTE = "/model/bench/text_to_prediction"  # serve_bench serves its model as "bench"
TARGETS = {"hit_over_miss": 0.5, "redis_added_ms": 1.0, "keys_cost": 0.10}
log = serve_bench.log


class BenchFailure(Exception):
    """A wrong answer, a failed request or a server that would not start: the run is void."""


# ---- services this needs ---------------------------------------------------------------------
def redis_or_exit(url: str):
    """A client of url's Redis, or SystemExit(2) with one line saying why not."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        return client
    except ImportError:
        problem = "the Python module redis is not installed (pip install mlapi[redis])"
    except Exception as exc:  # noqa: BLE001 - any reason Redis cannot be used ends the run the same way
        problem = f"Redis is not reachable at {url} ({type(exc).__name__}: {exc})"
    print(f"fleet_bench: error: {problem}: issue 17's cache and rate-limit numbers need it "
          "(start redis-server, or pass --redis-url)", file=sys.stderr)
    raise SystemExit(2)


def forget_mlapi_keys(client, pattern: str = "mlapi:*") -> int:
    """Delete what mlapi wrote to the bench's Redis database (cache entries, rate-limit
    counters, call logs): a rerun within CACHE_TTL_SECONDS must not find its misses cached."""
    keys = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    return len(keys)


# ---- servers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def serving(ctx: dict, model: str, settings: dict, label: str):
    """`mlapi serve` (uWSGI) for one model with exactly `settings` of issue 17; yields its
    port and process once it is ready, stops its whole process tree after."""
    port = serve_bench.free_port()
    # server_env drops every setting the caller's environment holds (make exports .env): each
    # server runs with exactly the ones it measures.
    env = {**serve_bench.server_env("uwsgi", port, ctx["models"][model], ctx["work"], None), **settings}
    argv = [sys.executable, "-c", serve_bench.LAUNCH, "serve", "--server", "uwsgi"]
    argv += ["--ini", str(ctx["ini"])] if ctx["ini"] else []
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / "logs" / f"fleet_{label}.log"
    with open(log_path, "w") as server_log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while _status(port, "/readyz") != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchFailure(f"{label}: the server did not become ready (log: {log_path.relative_to(ROOT)})")
                time.sleep(0.05)
            yield port, proc
        finally:
            serve_bench.stop(proc)


def _status(port: int, path: str) -> int | None:
    try:
        return serve_bench.request(port, "GET", path, timeout=2)[0]
    except (OSError, http.client.HTTPException):
        return None


class Connection:
    """One kept-alive HTTP connection to a server (reopened if the server closes it)."""

    def __init__(self, port: int, headers: dict | None = None):
        self.port, self.conn = port, None
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def post(self, path: str, body: bytes) -> tuple[float, int, bytes]:
        """(seconds from sending to the whole answer read, status, answer)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.connect()  # not timed: a kept-alive connection is what is measured
        started = time.perf_counter()
        self.conn.request("POST", path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - started
        if response.will_close:
            self.close()
        return elapsed, response.status, payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---- cache: hits and misses on the text route, in process and in Redis -------------------------
def text_cases(tickets, run_id: str, count: int) -> dict:
    """The hit text and `count` miss texts (never sent before: the run id is in each), with the
    model's own labels; the hit text's probabilities too."""
    base = serve_bench.SINGLE_TEXT
    hit = f"{base} (ref {run_id} h)"
    misses = [f"{base} (ref {run_id} {i})" for i in range(count)]
    return {"hit": hit, "hit_label": tickets.predict([hit])[0], "hit_proba": tickets.predict_proba([hit])[0],
            "classes": [str(c) for c in tickets.classes_], "misses": misses,
            "miss_labels": list(tickets.predict(misses))}


def checked_text_answer(status: int, payload: bytes, label, from_cache: bool, cases: dict | None,
                        server: str = "") -> None:
    if status != 200:
        raise BenchFailure(f"{server}{TEXT_ROUTE}: HTTP {status}: {payload[:200]!r}")
    answer = json.loads(payload)
    if answer["top"]["label"] != label:
        raise BenchFailure(f"{server}{TEXT_ROUTE}: label {answer['top']['label']!r}, the model's is {label!r}")
    if answer["from_cache"] is not from_cache:
        raise BenchFailure(f"{server}{TEXT_ROUTE}: from_cache {answer['from_cache']}, expected {from_cache} "
                           f"({'a repeated' if from_cache else 'a new'} text)")
    if cases is not None:  # the hit text: every probability, as the model computes it
        proba = [answer["prediction"][c] for c in cases["classes"]]
        if not np.allclose(proba, cases["hit_proba"], rtol=0, atol=1e-9):
            raise BenchFailure(f"{server}{TEXT_ROUTE}: probabilities {proba} are not the model's {list(cases['hit_proba'])}")


def cache_round(ctx: dict, rnd: int, args) -> dict:
    """Both servers side by side; hits and misses on each, taking turns one request at a time."""
    cases = text_cases(ctx["tickets"], f"{ctx['run_id']}r{rnd}", args.requests + args.text_warmup)
    backends = {"process": {}, "redis": {"REDIS_URL": args.redis_url}}
    with contextlib.ExitStack() as stack:
        conns = {}
        for backend, settings in backends.items():
            port, _ = stack.enter_context(serving(ctx, "tickets", settings, f"cache_{backend}_r{rnd}"))
            conns[backend] = stack.enter_context(contextlib.closing(Connection(port)))
        hit_body = json.dumps({"text": cases["hit"]}).encode()
        miss_bodies = [json.dumps({"text": text}).encode() for text in cases["misses"]]
        kinds = [(backend, kind) for backend in backends for kind in ("hit", "miss")]
        samples = {f"{backend}_{kind}": [] for backend, kind in kinds}
        for backend, conn in conns.items():  # the hit text's first answers are misses, one per worker
            _, status, payload = conn.post(TEXT_ROUTE, hit_body)
            checked_text_answer(status, payload, cases["hit_label"], False, cases)
        for i in range(args.text_warmup + args.requests):
            shift = i % len(kinds)  # each kind goes first as often as each other
            for backend, kind in kinds[shift:] + kinds[:shift]:
                body, label = ((hit_body, cases["hit_label"]) if kind == "hit"
                               else (miss_bodies[i], cases["miss_labels"][i]))
                elapsed, status, payload = conns[backend].post(TEXT_ROUTE, body)
                if i < args.text_warmup:  # in process, each worker meets the hit text once: a miss
                    if status != 200:
                        checked_text_answer(status, payload, label, False, None)
                    continue
                checked_text_answer(status, payload, label, kind == "hit", cases if kind == "hit" else None,
                                    f"{backend} cache, request {i}: ")
                samples[f"{backend}_{kind}"].append(elapsed)
    medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    result = {"round": rnd, "requests_per_kind": args.requests, "p50_ms": medians,
              "p90_ms": {name: float(np.percentile(values, 90)) * 1e3 for name, values in samples.items()}}
    log(f"  cache round {rnd + 1}: " + "  ".join(f"{name} {ms:.3f} ms" for name, ms in medians.items()))
    return result


# ---- keys and limits: M1's c16 throughput with and without -----------------------------------------
def wrk_run(port: int, body: str, seconds: int) -> dict:
    """16 connections on POST /predict, every request with the key (bench/post_key.lua)."""
    summary = serve_bench.load(port, "/predict", body, 16, seconds, shutil.which("wrk"), script="post_key.lua",
                               script_env={"API_KEY": API_KEY})
    summary["errors"] = summary["socket_errors"] + summary["non2xx"]
    return summary


def check_m1(port: int, model: dict, keys_on: bool) -> None:
    """The 1-row body gets exactly M1's own answer (with the key); with keys on, none is a 401."""
    conn = Connection(port, {"Authorization": f"Bearer {API_KEY}"})
    try:
        _, status, payload = conn.post("/predict", Path(model["bodies"][1]).read_bytes())
    finally:
        conn.close()
    want = model["expected"][1]
    got = json.loads(payload) if status == 200 else {}
    if status != 200 or got.get("predictions") != want["predictions"] or not np.allclose(
            got.get("probabilities"), want["probabilities"], rtol=0, atol=1e-9):
        raise BenchFailure(f"/predict: HTTP {status}, not M1's answer: {payload[:200]!r}")
    if keys_on:
        status, payload = serve_bench.request(port, "POST", "/predict", Path(model["bodies"][1]).read_bytes())
        if status != 401:
            raise BenchFailure(f"/predict without a key: HTTP {status}, not 401: keys are not on")


def keys_settings(storage: str, keys_on: bool, args) -> dict:
    settings = {"PREDICTION_CACHE_SIZE": "0"}  # M1's answers computed, whatever routes the cache covers
    if storage == "redis":
        settings["REDIS_URL"] = args.redis_url
    if keys_on:
        settings.update(API_KEYS=API_KEY, RATE_LIMIT=NEVER_REACHED)
    return settings


def measure_side(port: int, pid: int, ctx: dict, label: str, keys_on: bool, args) -> dict:
    """Warm-up, then the measured c16 run, M1's answer checked before and after."""
    model = ctx["models"]["m1"]
    check_m1(port, model, keys_on)
    wrk_run(port, model["bodies"][1], args.warmup)
    loadavg, cpu_before, redis_before = os.getloadavg()[0], serve_bench.cpu_seconds(pid), redis_cpu_seconds(ctx)
    result = wrk_run(port, model["bodies"][1], args.duration)
    requests = max(1, result["requests"])
    result["server_cpu_us_per_req"] = (serve_bench.cpu_seconds(pid) - cpu_before) / requests * 1e6
    result["redis_cpu_us_per_req"] = (redis_cpu_seconds(ctx) - redis_before) / requests * 1e6
    check_m1(port, model, keys_on)
    if result["errors"]:
        raise BenchFailure(f"{label}: {result['errors']} failed requests under load (non-2xx included)")
    result["loadavg1_before"] = loadavg
    log(f"  {label:22} {result['rps']:7.0f} req/s  p50 {result['lat_p50_us'] / 1e3:5.2f} ms  "
        f"p99 {result['lat_p99_us'] / 1e3:5.2f} ms  CPU µs/req: server {result['server_cpu_us_per_req']:.0f}, "
        f"Redis {result['redis_cpu_us_per_req']:.0f}")
    return result


def redis_cpu_seconds(ctx: dict) -> float:
    """redis-server's CPU time so far: its work is part of a request's on a shared machine (anyone
    else using that Redis meanwhile counts too)."""
    cpu = ctx["redis"].info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def keys_round(ctx: dict, rnd: int, args) -> list[dict]:
    """Per storage, a fresh pair of servers (keys and limits off, on), measured back to back:
    off first in even rounds, on first in odd ones, so neither always meets the fresher machine."""
    order = (False, True) if rnd % 2 == 0 else (True, False)
    runs = []
    for storage in ("process", "redis"):
        if storage == "redis":  # this round's counters, and no earlier one's, must be found after
            forget_mlapi_keys(ctx["redis"], "mlapi:ratelimit*")
        with contextlib.ExitStack() as stack:
            labels = {keys_on: f"keys_{storage}_{'on' if keys_on else 'off'}_r{rnd}" for keys_on in order}
            servers = {keys_on: stack.enter_context(serving(ctx, "m1", keys_settings(storage, keys_on, args),
                                                            labels[keys_on])) for keys_on in order}
            for keys_on in order:
                port, proc = servers[keys_on]
                result = measure_side(port, proc.pid, ctx, labels[keys_on], keys_on, args)
                runs.append({**result, "storage": storage, "keys_on": keys_on, "round": rnd})
        if storage == "redis" and not next(ctx["redis"].scan_iter(match="mlapi:ratelimit*"), None):
            raise BenchFailure(f"round {rnd + 1}: no rate-limit counter in Redis: the limits were not counted there")
    return runs


# ---- the report ------------------------------------------------------------------------------
def summarize(cache_rounds: list[dict], keys_runs: list[dict]) -> list[dict]:
    """One row per target: what it asks, the number measured (median over the rounds of the
    ratio each round measured), the numbers behind it, PASS or FAIL."""
    rows = []
    if cache_rounds:
        def per_round(fn):
            values = [fn(r["p50_ms"]) for r in cache_rounds]
            return statistics.median(values), values

        for backend, name in (("process", "in process"), ("redis", "Redis")):
            ratio, values = per_round(lambda m: m[f"{backend}_hit"] / m[f"{backend}_miss"])
            hit = statistics.median(r["p50_ms"][f"{backend}_hit"] for r in cache_rounds)
            miss = statistics.median(r["p50_ms"][f"{backend}_miss"] for r in cache_rounds)
            rows.append(dict(target=f"cache hit ÷ miss, {name}, text route p50 (≤ {TARGETS['hit_over_miss']})",
                             value=f"{ratio:.2f}", detail=f"hit {hit:.3f} ms, miss {miss:.3f} ms; rounds "
                             + " / ".join(f"{v:.2f}" for v in values), met=ratio <= TARGETS["hit_over_miss"]))
        for kind in ("hit", "miss"):
            added, values = per_round(lambda m: m[f"redis_{kind}"] - m[f"process_{kind}"])
            rows.append(dict(target=f"Redis − in process, {kind} p50 (≤ {TARGETS['redis_added_ms']:g} ms)",
                             value=f"{added:+.3f} ms", detail="rounds " + " / ".join(f"{v:+.3f}" for v in values),
                             met=added <= TARGETS["redis_added_ms"]))
    for storage, name in (("process", "in process"), ("redis", "Redis")):
        rounds = sorted({r["round"] for r in keys_runs if r["storage"] == storage})
        if not rounds:
            continue
        side = {(r["round"], r["keys_on"]): r for r in keys_runs if r["storage"] == storage}
        costs = [1 - side[(n, True)]["rps"] / side[(n, False)]["rps"] for n in rounds]
        cost = statistics.median(costs)
        off = statistics.median(side[(n, False)]["rps"] for n in rounds)
        on = statistics.median(side[(n, True)]["rps"] for n in rounds)
        cpu_off = statistics.median(side[(n, False)]["server_cpu_us_per_req"] for n in rounds)
        cpu_on = statistics.median(side[(n, True)]["server_cpu_us_per_req"] for n in rounds)
        redis_off = statistics.median(side[(n, False)]["redis_cpu_us_per_req"] for n in rounds)
        redis_on = statistics.median(side[(n, True)]["redis_cpu_us_per_req"] for n in rounds)
        rows.append(dict(target=f"keys + limits cost, limits {name}, M1 c16 req/s (≤ {TARGETS['keys_cost']:.0%})",
                         value=f"{cost:.1%}",
                         detail=f"{off:,.0f} → {on:,.0f} req/s; CPU µs/req: server {cpu_off:.0f} → {cpu_on:.0f}, "
                                f"Redis {redis_off:.0f} → {redis_on:.0f}; "
                                "rounds " + " / ".join(f"{c:.1%}" for c in costs),
                         met=cost <= TARGETS["keys_cost"]))
    return rows


def markdown(meta: dict, rows: list[dict], keys_runs: list[dict]) -> str:
    lines = [f"fleet_bench {meta['started']} UTC, commit {meta['commit']}, {meta['rounds']} rounds, "
             f"{meta['requests']} requests per kind and round, wrk {meta['duration_s']} s (+{meta['warmup_s']} s warm-up), "
             f"load average {meta['loadavg_start'][0]:.2f} at the start", "",
             "| target | measured | | behind it |", "|---|--:|---|---|"]
    lines += [f"| {r['target']} | {r['value']} | {'PASS' if r['met'] else 'FAIL'} | {r['detail']} |" for r in rows]
    if keys_runs:
        lines += ["", "| M1 c16 | round | req/s | p50 ms | p99 ms | server CPU µs/req | Redis CPU µs/req |",
                  "|---|--:|--:|--:|--:|--:|--:|"]
        lines += [f"| limits {r['storage']}, keys+limits {'on' if r['keys_on'] else 'off'} | {r['round'] + 1} | "
                  f"{r['rps']:,.0f} | {r['lat_p50_us'] / 1e3:.2f} | {r['lat_p99_us'] / 1e3:.2f} | "
                  f"{r['server_cpu_us_per_req']:.0f} | {r['redis_cpu_us_per_req']:.0f} |" for r in keys_runs]
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="cache,keys", help="comma-separated, of cache (cache and redis), keys")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, fresh servers in each (default 3)")
    parser.add_argument("--requests", type=int, default=2000, help="measured text requests per kind and round")
    parser.add_argument("--text-warmup", type=int, default=100, help="unmeasured text requests per kind first")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded load before each (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 500 requests, 3 s runs")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help=f"the Redis the servers share (default {DEFAULT_REDIS_URL}; mlapi:* keys there are deleted)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.duration, args.warmup = 1, 500, 3, 1
    args.parts = [p for p in args.parts.split(",") if p]
    if set(args.parts) - {"cache", "keys"}:
        parser.error(f"unknown part: {', '.join(sorted(set(args.parts) - {'cache', 'keys'}))}")
    return args


def commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv=None) -> int:
    args = parse_args(argv)
    redis_client = redis_or_exit(args.redis_url)
    if "keys" in args.parts and not shutil.which("wrk"):
        print("fleet_bench: error: wrk is not installed (apt-get install wrk): the keys part loads the server with it",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every finally stops its server
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "commit": commit(),
            "rounds": args.rounds, "requests": args.requests, "duration_s": args.duration, "warmup_s": args.warmup,
            "parts": args.parts, "redis_url": args.redis_url, "loadavg_start": os.getloadavg(), "cpus": os.cpu_count(),
            "versions": serve_bench.versions(shutil.which("wrk"))}
    cache_rounds, keys_runs = [], []
    forget_mlapi_keys(redis_client)
    try:
        with tempfile.TemporaryDirectory(prefix="mlapi-fleet-bench-") as tmp:
            work = Path(tmp)
            log("training M1, M2 and the demo models")
            models = serve_bench.prepare(work)
            ctx = {"work": work, "models": models, "ini": serve_bench.loopback_ini(work), "run_id": uuid.uuid4().hex[:8], "redis": redis_client,
                   "tickets": joblib.load(models["tickets"]["path"])}
            for rnd in range(args.rounds):
                log(f"round {rnd + 1}/{args.rounds} (load average {os.getloadavg()[0]:.2f})")
                if "cache" in args.parts:
                    cache_rounds.append(cache_round(ctx, rnd, args))
                if "keys" in args.parts:
                    keys_runs += keys_round(ctx, rnd, args)
    except (BenchFailure, RuntimeError, OSError, http.client.HTTPException, subprocess.TimeoutExpired) as exc:
        # RuntimeError: serve_bench.load's wrk wrote nothing; OSError: a server stopped answering
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        forget_mlapi_keys(redis_client)
    meta["loadavg_end"] = os.getloadavg()
    rows = summarize(cache_rounds, keys_runs)
    report = markdown(meta, rows, keys_runs)
    (RESULTS / "fleet.json").write_text(json.dumps({"meta": meta, "targets": rows, "cache_rounds": cache_rounds,
                                                     "keys_runs": keys_runs}, indent=1, default=str))
    (RESULTS / "fleet.md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
