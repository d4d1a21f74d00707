"""Serving benchmark: `mlapi serve` under HTTP load, next to the floors of its own stack.

Models: M1 = Pipeline(StandardScaler, LogisticRegression) and M2 = RandomForestClassifier(100
trees), both fitted on scikit-learn's bundled breast-cancer data with the peer benchmark's
recipe (bench/peers/prepare.py), and the demo text model (`mlapi demo`: tickets).
Systems: `mlapi serve` with uWSGI (`uwsgi`) and with gunicorn (`gunicorn`), and with
micro-batching on (MAX_BATCH_SIZE=64, MAX_BATCH_WAIT_MS=2): `granian_batch` (the server
`mlapi serve` picks for batching) and `uwsgi_batch`; `granian` and `gunicorn_batch` only when
asked for. For each system × model and round, a fresh server:
  cold start   process start → first correct prediction (polled every 20 ms)
  cells        c1, c16, c64: one row per request on 1, 16, 64 connections; b100_c4: 100 rows
               per request on 4 connections; each after a discarded warm-up, loaded from a
               separate process by wrk (one thread, bench/post.lua) or, without wrk, by
               bench/loadgen.py; a known 1-row and 100-row request is checked against the
               model's own predict and predict_proba before and after every cell
  memory       PSS summed over every server process, after the cells.
Floors in the same run: each system's GET /healthz (its cheapest route: the HTTP floor of the
stack) in the same cells, on the same server after its first model's cells; and in-process
predict on 1 and 100 rows (the model floor: bench/serve_floor.py).

Servers listen on 127.0.0.1 only: the server command `mlapi serve` builds is run as is, with
its bind address 0.0.0.0 swapped for 127.0.0.1 (the one change; see LAUNCH).
Writes bench/results/serve.json and serve.md (also printed); server logs go to
bench/results/logs/. Exits 1 when any request failed or any prediction was wrong.

    .venv/bin/python bench/serve_bench.py                    # ~11 min: 10 s cells, 2 s warm-up
    .venv/bin/python bench/serve_bench.py --quick            # smoke run: 2 s cells (~4 min)
    .venv/bin/python bench/serve_bench.py --systems uwsgi,uwsgi_batch --models m1 --rounds 3
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_report  # noqa: E402  (beside this file)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent

CELLS = {  # name: (rows per request, connections)
    "c1": (1, 1),
    "c16": (1, 16),
    "c64": (1, 64),
    "b100_c4": (100, 4),
}
BATCHING = {"MAX_BATCH_SIZE": "64", "MAX_BATCH_WAIT_MS": "2"}
SYSTEMS = {
    "uwsgi": dict(server="uwsgi", env={}, desc="mlapi serve: uWSGI with uwsgi.ini (one process per core)"),
    "granian_batch": dict(server="granian", env=BATCHING,
                          desc="mlapi serve, micro-batching on (MAX_BATCH_SIZE=64, MAX_BATCH_WAIT_MS=2): granian, "
                               "the server it picks then, 32 Python threads per worker"),
    "uwsgi_batch": dict(server="uwsgi", env=BATCHING,
                        desc="mlapi serve --server uwsgi, micro-batching on (as granian_batch; 32 threads per worker)"),
    "granian": dict(server="granian", env={}, desc="mlapi serve --server granian (one Python thread per worker)"),
    "gunicorn": dict(server="gunicorn", env={}, desc="mlapi serve --server gunicorn (sync workers, one per core)"),
    "gunicorn_batch": dict(server="gunicorn", env=BATCHING,
                           desc="mlapi serve --server gunicorn, micro-batching on (as granian_batch)"),
}
DEFAULT_SYSTEMS = ("uwsgi", "granian_batch", "uwsgi_batch", "gunicorn")
MODELS = ("m1", "m2", "tickets")
# What uWSGI and gunicorn log when max-requests recycles a worker (which stalls requests).
RECYCLE_MARKERS = ("is done. Seeya!", "Autorestarting worker after current request.")
SINGLE_TEXT = "I was charged twice for my plan"
# Settings a caller's environment (make exports .env) must not slip into the servers: each
# system sets exactly what it measures. Only the names are recorded, never the values.
SERVER_SETTING_PREFIXES = ("MODEL", "MAX_BATCH", "MAX_REQUEST", "PREDICTION", "FEATURE_", "SOURCE_", "PUBSUB_",
                           "STORAGE_EMULATOR", "UWSGI_", "GUNICORN_", "GRANIAN_", "SERVER", "WEB_CONCURRENCY", "PROMETHEUS_",
                           "METRICS_", "ACCESS_LOG", "LOG_", "STRICT_SKLEARN", "OMP_", "OPENBLAS_", "MKL_",
                           "PORT", "AIP_", "REDIS_", "API_KEYS", "RATE_LIMIT", "CACHE_", "CALL_LOG_", "TRUSTED_PROXY",
                           "ADMIN_TOKEN")
# `mlapi serve` itself (mlapi.cli.main: thread caps, metrics dir, batching threads, exec), with
# the bind address of the command it builds (mlapi.server.launch.server_command) moved from
# 0.0.0.0 to loopback. The `mlapi` console script is `from mlapi.cli import main`, so start-up
# costs the same.
LAUNCH = """
import sys
from mlapi import cli
from mlapi.server import launch
as_built = launch.server_command
def loopback(*args, **kwargs):
    return [a.replace("0.0.0.0:", "127.0.0.1:", 1) if a.startswith("0.0.0.0:") else a
            for a in as_built(*args, **kwargs)]
launch.server_command = loopback
sys.exit(cli.main(sys.argv[1:]))
"""


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# ---- models, request bodies and the answers they must get -------------------------------
def prepare(work: Path) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from mlapi.cli.demo_models import ticket_corpus

    X, y = load_breast_cancer(return_X_y=True)
    joblib.dump(Pipeline([("scaler", StandardScaler()),
                          ("lr", LogisticRegression(max_iter=1000, random_state=0))]).fit(X, y), work / "m1.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y), work / "m2.joblib")
    subprocess.run([str(BIN / "mlapi"), "demo", "--out", str(work / "demo")], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    texts = ticket_corpus(seed=11, per_label=25)[0]
    random.Random(0).shuffle(texts)
    rows = {"m1": {1: X[:1].tolist(), 100: X[:100].tolist()},  # rows 0..99 hold both classes
            "m2": {1: X[:1].tolist(), 100: X[:100].tolist()},
            "tickets": {1: [SINGLE_TEXT], 100: texts[:100]}}
    paths = {"m1": work / "m1.joblib", "m2": work / "m2.joblib", "tickets": work / "demo" / "tickets.joblib"}
    models = {}
    for name, path in paths.items():
        estimator = joblib.load(path)
        models[name] = {"path": str(path), "bodies": {}, "expected": {}}
        for n, instances in rows[name].items():
            body = work / f"{name}_{n}.json"
            body.write_text(json.dumps({"instances": instances}))
            model_input = instances if name == "tickets" else np.asarray(instances, dtype=np.float64)
            models[name]["bodies"][n] = str(body)
            models[name]["expected"][n] = {"predictions": estimator.predict(model_input).tolist(),
                                           "probabilities": estimator.predict_proba(model_input).tolist()}
    return models


def inproc_floor(models: dict, budget: float) -> dict:
    """bench/serve_floor.py's µs per call, in a fresh process with one BLAS thread, as served."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVER_SETTING_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(HERE / "serve_floor.py"), json.dumps(models), str(budget)], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout)


# ---- talking to a server -----------------------------------------------------------------
def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check(port: int, model: dict | None) -> str | None:
    """None when the server answers right: for a model, both known bodies get exactly the
    model's own predictions and its probabilities (to 1e-9); for the floor, /healthz is 200."""
    try:
        if model is None:
            status, payload = request(port, "GET", "/healthz")
            return None if status == 200 else f"/healthz: HTTP {status}"
        for n, path in model["bodies"].items():
            status, payload = request(port, "POST", "/predict", Path(path).read_bytes())
            if status != 200:
                return f"{n} rows: HTTP {status}: {payload[:200]!r}"
            got, want = json.loads(payload), model["expected"][n]
            if got.get("predictions") != want["predictions"]:
                return f"{n} rows: wrong predictions {str(got.get('predictions'))[:120]}"
            proba = np.asarray(got.get("probabilities"), dtype=float)
            if proba.shape != np.shape(want["probabilities"]) or not np.allclose(proba, want["probabilities"],
                                                                                  rtol=0, atol=1e-9):
                return f"{n} rows: wrong probabilities"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def load(port: int, path: str, body: str | None, conns: int, seconds: int, wrk: str | None,
         script: str = "post.lua", script_env: dict | None = None) -> dict:
    """One load run from a separate process; the JSON summary of post.lua / loadgen.py (or of
    another wrk script beside this file that writes it, given `script_env`)."""
    url = f"http://127.0.0.1:{port}{path}"
    method = "POST" if body else "GET"
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        if wrk:
            env = {**os.environ, **(script_env or {}), "METHOD": method, "BODY_FILE": body or "", "WRK_OUT": out.name}
            argv = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / script), url]
        else:
            env = dict(os.environ)
            argv = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--method", method,
                    "--connections", str(conns), "--duration", str(seconds), "--out", out.name]
            argv += ["--body-file", body] if body else []
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
        text = Path(out.name).read_text()
    if not text.strip():
        raise RuntimeError(f"load generator wrote nothing (rc {done.returncode}): {done.stdout[-300:]} {done.stderr[-300:]}")
    summary = json.loads(text)
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    summary["socket_errors"] = sum(summary[f"err_{k}"] for k in ("connect", "read", "write", "timeout"))
    summary["non2xx"] = summary["err_status"]
    return summary


# ---- server processes ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(system: str, port: int, model: dict, work: Path, processes: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVER_SETTING_PREFIXES)}
    env.update(PORT=str(port), MODELS=f"bench={model['path']}", PYTHONUNBUFFERED="1",
               FEATURE_STORE_URL=f"sqlite:///{work}/features.db", PREDICTIONS_DB_URL=f"sqlite:///{work}/predictions.db",
               **SYSTEMS[system]["env"])
    if processes:
        env.update(UWSGI_PROCESSES=str(processes), WEB_CONCURRENCY=str(processes))
    return env


def loopback_ini(work: Path) -> Path | None:
    """uwsgi.ini with its listener (the HTTP router's `http =` line) on 127.0.0.1 (None, and
    0.0.0.0, if the line moved)."""
    text = (ROOT / "uwsgi.ini").read_text()
    line = "http = 0.0.0.0:$(PORT)"
    if text.count(line) != 1:
        log(f"warning: uwsgi.ini has no single '{line}' line: uWSGI will listen as configured")
        return None
    path = work / "uwsgi-loopback.ini"
    path.write_text(text.replace(line, "http = 127.0.0.1:$(PORT)"))
    return path


def proc_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
            except (OSError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_mb(root: int) -> tuple[float, int]:
    total, pids = 0, proc_tree(root)
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024, len(pids)


def cpu_seconds(root: int) -> float:
    """CPU time of the server's processes so far, workers recycled by max-requests included
    (a parent that reaps a child adds the child's time to its own cutime and cstime)."""
    ticks = 0
    for pid in proc_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    pids = proc_tree(proc.pid)
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in pids[1:]:  # workers that outlived their master (only our own tree)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---- one launch: cold start, cells, memory --------------------------------------------------
def recycles(server_log: Path) -> int:
    text = server_log.read_text(errors="replace")
    return sum(text.count(marker) for marker in RECYCLE_MARKERS)


def run_cells(port: int, pid: int, model: dict | None, server_log: Path, args) -> dict:
    cells = {}
    for cell in args.cells:
        rows, conns = CELLS[cell]
        body = model["bodies"][rows] if model else None
        path = "/predict" if model else "/healthz"
        before, recycled = check(port, model), recycles(server_log)
        load(port, path, body, conns, args.warmup, args.wrk)
        loadavg, cpu0 = os.getloadavg()[0], cpu_seconds(pid)
        result = load(port, path, body, conns, args.duration, args.wrk)
        result["server_cpu_us_per_req"] = (cpu_seconds(pid) - cpu0) / max(1, result["requests"]) * 1e6
        result.update(rows_per_request=rows if model else None, connections=conns,
                      rows_per_s=result["rps"] * rows if model else None,
                      loadavg1_before=loadavg, worker_recycles=recycles(server_log) - recycled,
                      check_before=before or "ok", check_after=check(port, model) or "ok")
        cells[cell] = result
        log(f"    {cell:8} {result['rps']:7.0f} req/s  p50 {result['lat_p50_us'] / 1000:6.2f} ms  "
            f"p99 {result['lat_p99_us'] / 1000:6.2f} ms  errors {result['socket_errors'] + result['non2xx']}  "
            f"checks {result['check_before']}/{result['check_after']}  recycled workers {result['worker_recycles']}")
    return cells


def first_prediction(proc: subprocess.Popen, port: int, model: dict, started: float, timeout: float) -> str | None:
    """Poll until the server predicts right (None), or say why it did not within timeout."""
    problem = "not answering"
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        problem = check(port, model)
        if problem is None:
            return None
        time.sleep(0.02)
    return f"{problem} after {timeout:.0f} s"


def measured(record: dict, cells) -> bool:
    """record["cells"] = cells(), or record["error"] when the load could not be run."""
    try:
        record["cells"] = cells()
        return True
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        log(f"    FAILED: {record['error']}")
        return False


def run_launch(system: str, model_name: str, rnd: int, with_floor: bool, ctx: dict, args) -> list[dict]:
    """One fresh server for one model: cold start, the cells, PSS; then, if asked, the
    /healthz floor on the same server. Returns the records of both."""
    model = ctx["models"][model_name]
    port = free_port()
    argv = [sys.executable, "-c", LAUNCH, "serve", "--server", SYSTEMS[system]["server"]]
    if SYSTEMS[system]["server"] == "uwsgi" and ctx["ini"]:
        argv += ["--ini", str(ctx["ini"])]
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / "logs" / f"serve_{system}_{model_name}_r{rnd}.log"
    record = {"system": system, "model": model_name, "round": rnd, "port": port}
    log(f"  {system} / {model_name}")
    with open(log_path, "w") as server_log:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=server_env(system, port, model, ctx["work"], args.processes),
                                stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            problem = first_prediction(proc, port, model, started, args.start_timeout)
            if problem is not None:
                record["error"] = f"no correct prediction: {problem} (log: {log_path.relative_to(ROOT)})"
                log(f"    FAILED: {record['error']}")
                return [record]
            record["cold_start_s"] = time.perf_counter() - started
            record["pss_idle_mb"] = pss_mb(proc.pid)[0]
            log(f"    cold start {record['cold_start_s']:.2f} s")
            if not measured(record, lambda: run_cells(port, proc.pid, model, log_path, args)):
                return [record]
            record["pss_mb"], record["processes"] = pss_mb(proc.pid)
            log(f"    PSS {record['pss_mb']:.0f} MB in {record['processes']} processes")
            runs = [record]
            if with_floor:  # after the model's cells, so every model meets a server in the same state
                log("    floor: GET /healthz")
                floor = {"system": system, "model": "noop", "round": rnd}
                measured(floor, lambda: run_cells(port, proc.pid, None, log_path, args))
                runs.append(floor)
            return runs
        finally:
            stop(proc)


# ---- main ------------------------------------------------------------------------------------
def versions(wrk: str | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("scikit-learn", "numpy", "flask", "uwsgi", "gunicorn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    if wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        found["wrk"] = (probe.stdout + probe.stderr).split(" [")[0].strip()
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per cell (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded load before each cell (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="fresh servers per system and model; medians (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s cells, 1 s warm-up, 1 round")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)} (default {','.join(DEFAULT_SYSTEMS)})")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    parser.add_argument("--processes", type=int, help="server worker processes (default: one per core, as served)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk when installed, else bench/loadgen.py")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds to the first correct prediction")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 2, 1, 1
    args.systems = [s for s in args.systems.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    cells = [c for c in args.cells.split(",") if c]
    args.cells = [c for c in CELLS if c in cells]  # in the table's order
    unknown = sorted(set(args.systems) - set(SYSTEMS)) + sorted(set(args.models) - set(MODELS)) + sorted(set(cells) - set(CELLS))
    if unknown:
        parser.error(f"unknown system, model or cell: {', '.join(unknown)}")
    args.wrk = shutil.which("wrk") if args.loadgen != "python" else None
    if args.loadgen == "wrk" and not args.wrk:
        parser.error("wrk is not installed")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every finally stops its server
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {"meta": {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).relative_to(ROOT).as_posix() if Path(sys.executable).is_relative_to(ROOT)
                             else sys.executable, *sys.argv]),
        "quick": args.quick, "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
        "loadgen": "wrk (1 thread, bench/post.lua)" if args.wrk else "bench/loadgen.py (wrk is not installed)",
        "processes": args.processes or "one per core", "cpus": os.cpu_count(), "host": platform.node(),
        "loadavg_start": os.getloadavg(), "cells": CELLS,
        "systems": {s: SYSTEMS[s]["desc"] for s in args.systems},
        "ignored_environment": sorted(k for k in os.environ if k.startswith(SERVER_SETTING_PREFIXES)),
        "versions": versions(args.wrk)}, "runs": [], "inproc": []}
    with tempfile.TemporaryDirectory(prefix="mlapi-serve-bench-") as tmp:
        work = Path(tmp)
        log("training M1, M2 and the demo models")
        ctx = {"work": work, "models": {k: v for k, v in prepare(work).items() if k in args.models},
               "ini": loopback_ini(work)}
        for rnd in range(args.rounds):
            log(f"round {rnd + 1}/{args.rounds} (load average {os.getloadavg()[0]:.2f}): in-process floor")
            paths = {k: {"path": m["path"], "bodies": m["bodies"]} for k, m in ctx["models"].items()}
            results["inproc"].append(inproc_floor(paths, 0.3))
            shift = rnd % len(args.systems)
            for system in args.systems[shift:] + args.systems[:shift]:
                for index, model in enumerate(args.models):
                    results["runs"] += run_launch(system, model, rnd, index == 0, ctx, args)
    results["meta"].update(elapsed_s=round(time.time() - started), loadavg_end=os.getloadavg())
    results["summary"] = serve_report.summarize(results, CELLS)
    markdown = serve_report.markdown(results, CELLS)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=1))
    (RESULTS / "serve.md").write_text(markdown + "\n")
    print(markdown)
    problems = serve_report.problems(results)
    for problem in problems:
        log(f"problem: {problem}")
    log(f"{time.time() - started:.0f} s; wrote {(RESULTS / 'serve.json').relative_to(ROOT)} and serve.md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
