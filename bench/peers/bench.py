"""Side-by-side HTTP benchmark of sklearn model-serving systems on 127.0.0.1.

Run by run.sh (with the base venv's python). For each round, systems are run in a
rotated order; each (system, model) gets a fresh server launch (cold start is
measured), a correctness check, the load cells (wrk, 1 thread, Lua POST), a second
correctness check, a memory sample, and a shutdown.  Results go to --out (JSON)
and a table is printed.
"""
import argparse
import datetime
import functools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS = os.environ.get("ANCHORS_VENVS", "/tmp/anchors-venvs")
WORK = os.environ.get("ANCHORS_WORK", "/tmp/anchors-work")

CELLS = {  # name: (body kind, wrk connections)
    "single_c1": ("single", 1),
    "single_c16": ("single", 16),
    "batch100_c4": ("batch", 4),
    "single_c64": ("single", 64),
}
# The product under test: `mlapi serve` from the checkout in $MLAPI_CHECKOUT (default: the
# repository this benchmark lives in, bench/peers/../..), with the checkout's own virtualenv
# ($MLAPI_BIN, default .venv/bin/mlapi). Only the console script is run, from the checkout
# directory: nothing here imports the product's Python package, whatever it is called.
MLAPI_CHECKOUT = os.path.abspath(os.environ.get("MLAPI_CHECKOUT") or os.path.join(HERE, "..", ".."))
MLAPI_BIN = os.environ.get("MLAPI_BIN") or os.path.join(MLAPI_CHECKOUT, ".venv", "bin", "mlapi")
# "Before the change": the same systems served from a second checkout (an older commit with its
# own virtualenv, `make install-dev` there), $MLAPI_BEFORE_CHECKOUT; the *_before systems need it.
MLAPI_BEFORE_CHECKOUT = (os.path.abspath(os.environ["MLAPI_BEFORE_CHECKOUT"])
                         if os.environ.get("MLAPI_BEFORE_CHECKOUT") else None)
MLAPI_BEFORE_BIN = os.path.join(MLAPI_BEFORE_CHECKOUT, ".venv", "bin", "mlapi") if MLAPI_BEFORE_CHECKOUT else None
BATCH_ENV = {"MAX_BATCH_SIZE": "64", "MAX_BATCH_WAIT_MS": "2"}


def mlapi_env(port, model, extra=None):
    env = {"PORT": str(port), "MODELS": f"{model}={WORK}/models/{model}.joblib"}
    env.update(extra or {})
    return env
MODELS = ("m1", "m2", "m3")  # M3: DataFrame records (bench/peers/m3.py)
# One OpenMP/BLAS thread per server process for every system, as mlapi runs (its launcher sets
# the same): two processes of HistGradientBoosting's OpenMP threads on two cores collapse (the
# minimal handler served M3 at 7-23 req/s at c16, with errors, without it; issue 18).
# flask_uwsgi_p2t1_uncapped shows that collapse.
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BASE_ENV = {
    **THREAD_CAPS,
    "PYTHONUNBUFFERED": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "BENTOML_HOME": f"{WORK}/bentoml_home",
}


CLOSE = ("--add-header", "Connection: close")


def uwsgi_cmd(port, threads=1, wsgi="flask_app.py", http="--http-socket", extra=CLOSE):
    # Plain --http-socket answers HTTP/1.1 without "Connection: close" and then
    # closes the socket, which wrk (and any keep-alive client) sees as a read error
    # on the next request; so by default we add that header and clients reconnect
    # cleanly.  --http11-socket keeps connections alive in the (sync) worker, which
    # pins a worker per connection: at c16 only 2 connections get served.
    return [f"{VENVS}/base/bin/uwsgi", "--master", "--processes", "2",
            "--threads", str(threads), http, f"127.0.0.1:{port}",
            "--wsgi-file", os.path.join(HERE, wsgi), "--need-app",
            "--disable-logging", "--die-on-term", "--listen", "128", *extra]


def mlserver_cmd(port, model):
    d = f"{WORK}/mlserver_run/{model}"
    os.makedirs(f"{d}/{model}", exist_ok=True)
    with open(f"{d}/settings.json", "w") as f:
        json.dump({"host": "127.0.0.1", "http_port": port, "grpc_port": port + 1,
                   "metrics_port": port + 2, "parallel_workers": 2, "debug": False}, f)
    with open(f"{WORK}/mlserver/{model}/model-settings.json") as src, \
            open(f"{d}/{model}/model-settings.json", "w") as dst:
        dst.write(src.read())
    return [f"{VENVS}/mlserver/bin/mlserver", "start", d], d


def mlapi_probabilities(answer):
    """mlapi's class probabilities, one list per row (checked against predict_proba)."""
    return answer["probabilities"]


# name -> dict(cmd=fn(port, model) -> (argv, cwd), path=fn(model), fmt=body format,
#              extract=fn(json) -> predictions | None for floors, models=tuple,
#              extract_proba=fn(json) -> probabilities (systems that send them), uncapped=True:
#              without THREAD_CAPS)
def mlflow_cmd(p, m):
    """`mlflow models serve` of model m on port p, 2 workers, from the prepared MLflow model."""
    return ([f"{VENVS}/mlflow/bin/mlflow", "models", "serve", "-m", f"{WORK}/mlflow/{m}",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p), "-w", "2"], WORK)


SYSTEMS = {
    "flask_uwsgi_p2t1": dict(
        desc="Flask + uWSGI --http-socket (+'Connection: close' header), 2 processes x 1 "
             "thread (reference)",
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_p2t1_uncapped": dict(
        desc="as the reference, without the one-native-thread cap (OpenMP/BLAS pick their own "
             "thread counts: a thread per core in each of the 2 processes)", uncapped=True,
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_http11_p2t1": dict(
        desc="Flask + uWSGI --http11-socket (keep-alive in the worker), 2 processes x 1 thread",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, http="--http11-socket", extra=()), HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "flask_uwsgi_httpsock_p2t1": dict(
        desc="Flask + uWSGI plain --http-socket (closes without a Connection header)",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, extra=()), HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "flask_uwsgi_p2t4": dict(
        desc="Flask + uWSGI --http-socket (+'Connection: close'), 2 processes x 4 threads",
        cmd=lambda p, m: (uwsgi_cmd(p, 4), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_http_p2t1": dict(
        desc="Flask + uWSGI --http router process (+--http-keepalive), 2 processes x 1 thread",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, http="--http", extra=("--http-keepalive",)), HERE),
        path=lambda m: "/predict",
        fmt="flask", extract=lambda j: j["predictions"]),
    "flask_gunicorn_w2": dict(
        desc="Flask + gunicorn -w 2 sync",
        cmd=lambda p, m: ([f"{VENVS}/base/bin/gunicorn", "-w", "2", "-k", "sync",
                           "-b", f"127.0.0.1:{p}", "flask_app:app"], HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "mlflow_w2": dict(
        desc="mlflow models serve --env-manager local -w 2 (inputs=tensor JSON; M3: dataframe_records)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow", extract=lambda j: j["predictions"]),
    "mlflow_w2_connclose": dict(
        desc="mlflow models serve -w 2, client sends 'Connection: close' (sidesteps the "
             "uvicorn --workers TCP_NODELAY/keep-alive 40 ms stall)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow", extract=lambda j: j["predictions"],
        conn_close=True),
    "mlflow_w2_df": dict(
        desc="mlflow models serve -w 2 with dataframe_split JSON (pandas path)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow_df", extract=lambda j: j["predictions"]),
    "mlserver_pw2": dict(
        desc="MLServer + mlserver-sklearn, parallel_workers=2, V2 /infer",
        cmd=mlserver_cmd, path=lambda m: f"/v2/models/{m}/infer", fmt="mlserver",
        extract=lambda j: j["outputs"][0]["data"]),
    "bentoml_w2": dict(
        desc="BentoML service(workers=2), np.ndarray api (M3: pd.DataFrame api, records)",
        cmd=lambda p, m: ([f"{VENVS}/bentoml/bin/bentoml", "serve",
                           "bento_service:Classifier", "--host", "127.0.0.1",
                           "--port", str(p)], HERE),
        path=lambda m: "/predict_records" if m == "m3" else "/predict", fmt="bentoml", extract=lambda j: j),
    "mlapi": dict(
        desc="mlapi serve (the product, default settings) from $MLAPI_CHECKOUT",
        cmd=lambda p, m: ([MLAPI_BIN, "serve"], MLAPI_CHECKOUT), env=mlapi_env,
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_before": dict(
        desc="as mlapi, served from $MLAPI_BEFORE_CHECKOUT (before the change)", before=True,
        cmd=lambda p, m: ([MLAPI_BEFORE_BIN, "serve"], MLAPI_BEFORE_CHECKOUT), env=mlapi_env,
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_batch": dict(
        desc="mlapi serve with adaptive micro-batching asked for (MAX_BATCH_SIZE=64, MAX_BATCH_WAIT_MS=2)",
        cmd=lambda p, m: ([MLAPI_BIN, "serve"], MLAPI_CHECKOUT),
        env=lambda p, m: mlapi_env(p, m, BATCH_ENV),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_batch_before": dict(
        desc="as mlapi_batch, served from $MLAPI_BEFORE_CHECKOUT (before the change)", before=True,
        cmd=lambda p, m: ([MLAPI_BEFORE_BIN, "serve"], MLAPI_BEFORE_CHECKOUT),
        env=lambda p, m: mlapi_env(p, m, BATCH_ENV),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_gunicorn": dict(
        desc="mlapi serve --server gunicorn",
        cmd=lambda p, m: ([MLAPI_BIN, "serve", "--server", "gunicorn"], MLAPI_CHECKOUT),
        env=mlapi_env, path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    # ---- HTTP floors (no model work) ----
    "floor_uwsgi_flask_noop": dict(
        desc="floor: same Flask+uWSGI p2t1 server, /noop constant JSON",
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/noop", fmt="flask",
        extract=None, models=("noop",)),
    "floor_uwsgi_raw": dict(
        desc="floor: raw uWSGI WSGI callable (no Flask), constant JSON, p2t1",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, wsgi="raw_wsgi.py"), HERE), path=lambda m: "/",
        fmt="flask", extract=None, models=("noop",)),
}
DEFAULT_SYSTEMS = ["flask_uwsgi_p2t1", "flask_gunicorn_w2", "mlflow_w2", "mlserver_pw2",
                   "bentoml_w2", "floor_uwsgi_flask_noop", "floor_uwsgi_raw"]
REFERENCE = "flask_uwsgi_p2t1"

# Probabilities may differ from predict_proba's by sums in another order (a compiled path), no more.
PROBA_TOLERANCE = 1e-9


@functools.lru_cache(maxsize=1)
def expectations():
    """What prepare.py found the models answer: {"expected": labels, "expected_proba": ...}."""
    with open(f"{WORK}/expected.json") as f:
        return json.load(f)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def free_port(start):
    p = start
    while True:
        ok = True
        for q in (p, p + 1, p + 2):  # mlserver needs 3
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
        p += 3


def body_file(fmt, kind, model):
    """M1 and M2 share their bodies (the same rows); M3 has its own (DataFrame records)."""
    return f"{WORK}/bodies/{fmt}_m3_{kind}.json" if model == "m3" else f"{WORK}/bodies/{fmt}_{kind}.json"


def post(url, data, timeout=5.0):
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def check(sysdef, model, url):
    """Return None if both single and batch requests give the expected predictions,
    else a string describing the problem."""
    for kind in ("single", "batch"):
        try:
            st, raw = post(url, open(body_file(sysdef["fmt"], kind, model), "rb").read())
        except urllib.error.HTTPError as e:
            return f"{kind}: HTTP {e.code}: {e.read()[:300]!r}"
        except Exception as e:  # connection refused etc.
            return f"{kind}: {type(e).__name__}: {e}"
        if st != 200:
            return f"{kind}: HTTP {st}"
        if sysdef["extract"] is None:
            continue
        try:
            answer = json.loads(raw)
            got = [int(v) for v in sysdef["extract"](answer)]
            proba = sysdef["extract_proba"](answer) if "extract_proba" in sysdef else None
        except Exception as e:
            return f"{kind}: bad body {raw[:300]!r} ({e})"
        if got != expectations()["expected"][model][kind]:
            return f"{kind}: wrong predictions {got[:10]}..."
        if proba is not None:
            wrong = proba_mismatch(proba, expectations()["expected_proba"][model][kind])
            if wrong:
                return f"{kind}: {wrong}"
    return None


def proba_mismatch(got, want, tolerance=PROBA_TOLERANCE):
    """None when every row's probabilities are the model's own predict_proba's within
    `tolerance`, else what differs."""
    if len(got) != len(want) or any(len(g) != len(w) for g, w in zip(got, want)):
        return f"probabilities of shape {len(got)}x{len(got[0]) if got else 0}, not {len(want)}x{len(want[0])}"
    worst = max(abs(g - w) for gs, ws in zip(got, want) for g, w in zip(gs, ws))
    return None if worst <= tolerance else f"probabilities off by up to {worst:.3g} (> {tolerance:g})"


def proc_tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def memory(root):
    rss = pss = 0
    pids = proc_tree(root)
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "nprocs": len(pids)}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root):
    """user+system CPU seconds consumed so far by the live process tree under root."""
    t = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            t += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return t / CLK_TCK


def stop(proc):
    pids = proc_tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
    time.sleep(0.3)
    for p in pids:  # stragglers that left the process group (only our own tree)
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wrk(url, body, conns, seconds, out_json, conn_close=False):
    env = dict(os.environ, BODY_FILE=body, WRK_OUT=out_json,
               CONN_CLOSE="1" if conn_close else "0")
    if os.path.exists(out_json):
        os.remove(out_json)
    r = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                        "-s", os.path.join(HERE, "post.lua"), url],
                       env=env, capture_output=True, text=True, timeout=seconds + 60)
    if not os.path.exists(out_json):
        raise RuntimeError(f"wrk failed: {r.stdout} {r.stderr}")
    d = json.load(open(out_json))
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["errors"] = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
    d["non2xx"] = d["err_status"]
    return d


def run_system(name, model, rnd, args, results):
    sysdef = SYSTEMS[name]
    port = free_port(args.port_base)
    argv, cwd = sysdef["cmd"](port, model)
    env = dict(os.environ, **BASE_ENV)
    if sysdef.get("uncapped"):
        for cap in THREAD_CAPS:
            env.pop(cap, None)
    # "activate" the venv the server comes from (mlflow execs `uvicorn` via PATH)
    venv_bin = os.path.dirname(argv[0])
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = os.path.dirname(venv_bin)
    if model in MODELS:
        env["MODEL_PATH"] = f"{WORK}/models/{model}.joblib"
    else:
        env["MODEL_PATH"] = f"{WORK}/models/m1.joblib"
    if "env" in sysdef:
        env.update(sysdef["env"](port, model if model in MODELS else "m1"))
    url = f"http://127.0.0.1:{port}{sysdef['path'](model)}"
    logf = open(f"{WORK}/logs/{name}_{model}_r{rnd}.log", "w")
    rec = {"system": name, "model": model, "round": rnd, "port": port, "argv": argv}
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as e:
        rec["error"] = f"cannot start {argv[0]}: {e}"
        log(f"  {name}/{model}: FAILED {rec['error']}")
        results["runs"].append(rec)
        return
    try:
        err = "not started"
        while time.perf_counter() - t0 < args.start_timeout:
            if proc.poll() is not None:
                err = f"exited rc={proc.returncode}"
                break
            err = check(sysdef, model if model in MODELS else "m1", url)
            if err is None:
                break
            time.sleep(0.05)
        if err is not None:
            rec["error"] = f"no correct response: {err} (see {logf.name})"
            log(f"  {name}/{model}: FAILED {rec['error']}")
            results["runs"].append(rec)
            return
        rec["cold_start_s"] = time.perf_counter() - t0
        rec["mem_idle"] = memory(proc.pid)
        rec["cells"] = {}
        for cell, (kind, conns) in CELLS.items():
            if cell not in args.cells:
                continue
            cc = sysdef.get("conn_close", False)
            body = body_file(sysdef["fmt"], kind, model)
            wrk(url, body, conns, args.warmup, f"{WORK}/wrk_warm.json", cc)
            load0, cpu0 = os.getloadavg()[0], tree_cpu(proc.pid)
            d = wrk(url, body, conns, args.duration, f"{WORK}/wrk_out.json", cc)
            cpu1 = tree_cpu(proc.pid)
            d["loadavg1_before"] = load0
            d["server_cpu_s"] = cpu1 - cpu0
            d["server_cpu_us_per_req"] = (cpu1 - cpu0) / max(1, d["requests"]) * 1e6
            d["rows_per_s"] = d["rps"] * (100 if kind == "batch" else 1)
            rec["cells"][cell] = d
            log(f"  {name}/{model} {cell}: {d['rps']:.0f} req/s p50 "
                f"{d['lat_p50_us']/1000:.2f} ms p99 {d['lat_p99_us']/1000:.2f} ms "
                f"non2xx {d['non2xx']} sockerr {d['errors']} "
                f"srv-cpu {d['server_cpu_us_per_req']:.0f} us/req")
        post_err = check(sysdef, model if model in MODELS else "m1", url)
        rec["post_check"] = post_err or "ok"
        rec["mem_after_load"] = memory(proc.pid)
        log(f"  {name}/{model}: cold start {rec['cold_start_s']:.2f}s, "
            f"RSS {rec['mem_after_load']['rss_mb']:.0f} MB PSS "
            f"{rec['mem_after_load']['pss_mb']:.0f} MB in {rec['mem_after_load']['nprocs']} procs,"
            f" post-check {rec['post_check']}")
    finally:
        stop(proc)
        logf.close()
    results["runs"].append(rec)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(results):
    runs = results["runs"]
    summ = {}
    keys = sorted({(r["system"], r["model"]) for r in runs},
                  key=lambda k: (list(SYSTEMS).index(k[0]), k[1]))
    for sysname, model in keys:
        rs = [r for r in runs if r["system"] == sysname and r["model"] == model]
        ok = [r for r in rs if "error" not in r]
        s = {"rounds_ok": len(ok), "rounds": len(rs),
             "errors": [r["error"] for r in rs if "error" in r]}
        if ok:
            s["cold_start_s"] = med([r["cold_start_s"] for r in ok])
            s["rss_mb"] = med([r["mem_after_load"]["rss_mb"] for r in ok])
            s["pss_mb"] = med([r["mem_after_load"]["pss_mb"] for r in ok])
            s["nprocs"] = med([r["mem_after_load"]["nprocs"] for r in ok])
            s["post_check_failures"] = sum(r["post_check"] != "ok" for r in ok)
            for cell in CELLS:
                cs = [r["cells"][cell] for r in ok if cell in r.get("cells", {})]
                if not cs:
                    continue
                s[cell] = {k: med([c[k] for c in cs]) for k in
                           ("rps", "rows_per_s", "lat_p50_us", "lat_p99_us",
                            "server_cpu_us_per_req")}
                s[cell]["rps_all_rounds"] = [round(c["rps"], 1) for c in cs]
                s[cell]["non2xx_total"] = sum(c["non2xx"] for c in cs)
                s[cell]["sockerr_total"] = sum(c["errors"] for c in cs)
        summ[f"{sysname}/{model}"] = s
    # ratios vs reference (same model) and vs floors
    for key, s in summ.items():
        sysname, model = key.split("/")
        ref = summ.get(f"{REFERENCE}/{model}")
        for cell in CELLS:
            if cell not in s:
                continue
            if ref and cell in ref:
                s[cell]["rps_vs_ref"] = s[cell]["rps"] / ref[cell]["rps"]
                s[cell]["p50_vs_ref"] = s[cell]["lat_p50_us"] / ref[cell]["lat_p50_us"]
            for fl in ("floor_uwsgi_flask_noop", "floor_uwsgi_raw"):
                f = summ.get(f"{fl}/noop")
                if f and cell in f:
                    s[cell][f"rps_vs_{fl}"] = s[cell]["rps"] / f[cell]["rps"]
    inp = results.get("inproc", [])
    if inp:
        summ["inproc"] = {k: {m: med([r[k][m] for r in inp]) for m in inp[0][k]}
                          for k in inp[0]}
    results["summary"] = summ


def fmt_table(results):
    summ = results["summary"]
    lines = []
    hdr = (f"{'system/model':34} {'c1 rps':>7} {'p50ms':>6} {'p99ms':>6} | {'c16 rps':>7} "
           f"{'p50ms':>6} {'p99ms':>6} | {'b100c4 rps':>10} {'rows/s':>7} {'p50ms':>6} "
           f"{'p99ms':>6} | {'x ref c1/c16/b':>15} | {'non2xx':>6} {'RSS MB':>7} "
           f"{'PSS MB':>7} {'cold s':>6}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for key, s in summ.items():
        if key == "inproc":
            continue
        if not s.get("rounds_ok"):
            lines.append(f"{key:34} FAILED: {s['errors'][0][:150] if s['errors'] else '?'}")
            continue
        row = f"{key:34}"
        ratios = []
        for cell in CELLS:
            c = s.get(cell)
            if not c:
                row += f" {'-':>7} {'-':>6} {'-':>6} |" if cell != "batch100_c4" else \
                    f" {'-':>10} {'-':>7} {'-':>6} {'-':>6} |"
                ratios.append("-")
                continue
            if cell == "batch100_c4":
                row += (f" {c['rps']:10.0f} {c['rows_per_s']:7.0f} {c['lat_p50_us']/1000:6.2f}"
                        f" {c['lat_p99_us']/1000:6.2f} |")
            else:
                row += (f" {c['rps']:7.0f} {c['lat_p50_us']/1000:6.2f}"
                        f" {c['lat_p99_us']/1000:6.2f} |")
            ratios.append(f"{c['rps_vs_ref']:.2f}" if "rps_vs_ref" in c else "-")
        non2xx = sum(s[c]["non2xx_total"] + s[c]["sockerr_total"] for c in CELLS if c in s)
        row += (f" {'/'.join(ratios):>15} | {non2xx:6d} {s['rss_mb']:7.0f} {s['pss_mb']:7.0f}"
                f" {s['cold_start_s']:6.2f}")
        lines.append(row)
    lines.append("")
    lines.append("server CPU per request (µs, all server processes, median) and req/s "
                 "relative to the HTTP floors (noop = Flask /noop on uWSGI, raw = bare WSGI)")
    lines.append(f"{'system/model':34} {'cpu c1':>7} {'cpu c16':>7} {'cpu b100':>8} | "
                 f"{'c1 /noop':>8} {'c16 /noop':>9} {'b /noop':>8} | {'c1 /raw':>8} "
                 f"{'c16 /raw':>8} {'b /raw':>7}")
    for key, s in summ.items():
        if key == "inproc" or not s.get("rounds_ok"):
            continue
        row = f"{key:34}"
        for cell, w in zip(CELLS, (7, 7, 8)):
            c = s.get(cell)
            row += f" {c['server_cpu_us_per_req']:{w}.0f}" if c else f" {'-':>{w}}"
        row += " |"
        for fl in ("floor_uwsgi_flask_noop", "floor_uwsgi_raw"):
            for cell, w in zip(CELLS, (8, 9, 8) if fl.endswith("noop") else (8, 8, 7)):
                c = s.get(cell, {})
                v = c.get(f"rps_vs_{fl}")
                row += f" {v:{w}.3f}" if v is not None else f" {'-':>{w}}"
            row += " |" if fl.endswith("noop") else ""
        lines.append(row)
    if "inproc" in summ:
        lines.append("")
        lines.append("in-process floors (median µs per call): predict | handler(json+np+predict+json)"
                     " | Flask test_client")
        for k, v in summ["inproc"].items():
            lines.append(f"  {k:10} " + "  ".join(f"{m}={x:.0f}" for m, x in v.items()))
    return "\n".join(lines)


VERSIONS_CODE = ("import importlib.metadata as m, json, sys\n"
                 "names=['scikit-learn','numpy','scipy','joblib','flask','uwsgi','gunicorn','mlflow',"
                 "'fastapi','uvicorn','uvloop','httptools','mlserver','mlserver-sklearn','bentoml',"
                 "'pandas','starlette','granian','mlapi']\n"
                 "d={}\n"
                 "for n in names:\n"
                 "    try: d[n]=m.version(n)\n"
                 "    except Exception: pass\n"
                 "print(json.dumps(d))")


def venv_versions(python):
    try:
        return json.loads(subprocess.run([python, "-c", VERSIONS_CODE],
                                         capture_output=True, text=True).stdout)
    except Exception as e:
        return str(e)


def versions():
    out = {}
    for v in ("base", "mlflow", "mlserver", "bentoml"):
        out[v] = venv_versions(f"{VENVS}/{v}/bin/python")
    wv = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    out["wrk"] = (wv.stdout + wv.stderr).splitlines()[0]
    out["python"] = platform.python_version()
    return out


def checkout_info(checkout, binary):
    """Which code an mlapi system runs: the checkout's commit, whether its tree is dirty."""
    def git(*a):
        r = subprocess.run(["git", "-C", checkout, *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"checkout": checkout, "bin": binary, "commit": git("rev-parse", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "dirty": None if status is None else bool(status),
            "versions": venv_versions(os.path.join(os.path.dirname(binary), "python"))}


def mlapi_checkouts(systems):
    """Checkouts behind the chosen mlapi systems (for the results' meta); exits when a
    *_before system is chosen without a usable $MLAPI_BEFORE_CHECKOUT."""
    out = {}
    if any(s.startswith("mlapi") and not SYSTEMS[s].get("before") for s in systems):
        out["after"] = checkout_info(MLAPI_CHECKOUT, MLAPI_BIN)
    before = [s for s in systems if SYSTEMS[s].get("before")]
    if before:
        if not MLAPI_BEFORE_CHECKOUT:
            sys.exit(f"{', '.join(before)}: set MLAPI_BEFORE_CHECKOUT to a second checkout "
                     "(with its own .venv: make install-dev there); see bench/peers/README.md")
        if not os.access(MLAPI_BEFORE_BIN, os.X_OK):
            sys.exit(f"{', '.join(before)}: {MLAPI_BEFORE_BIN} is missing: run make install-dev "
                     f"in {MLAPI_BEFORE_CHECKOUT}")
        out["before"] = checkout_info(MLAPI_BEFORE_CHECKOUT, MLAPI_BEFORE_BIN)
        if MLAPI_BEFORE_CHECKOUT == MLAPI_CHECKOUT:
            log(f"warning: MLAPI_BEFORE_CHECKOUT is MLAPI_CHECKOUT ({MLAPI_CHECKOUT}): "
                "before and after run the same code")
    for side, info in out.items():
        log(f"mlapi {side}: {info['checkout']} at {(info['commit'] or '?')[:10]}"
            f"{' (uncommitted changes)' if info['dirty'] else ''}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--port-base", type=int, default=18700)
    ap.add_argument("--start-timeout", type=float, default=120)
    ap.add_argument("--out", default="/tmp/anchors-results.json")
    args = ap.parse_args()
    args.cells = args.cells.split(",")
    systems = args.systems.split(",")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    models = args.models.split(",")
    checkouts = mlapi_checkouts(systems)
    os.makedirs(f"{WORK}/logs", exist_ok=True)
    results = {"meta": {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "config": {k: v for k, v in vars(args).items()},
        "cells": CELLS, "systems": {s: SYSTEMS[s]["desc"] for s in systems},
        "versions": versions(), "mlapi_checkouts": checkouts}, "runs": [], "inproc": []}
    t_start = time.time()
    for rnd in range(args.rounds):
        order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
        log(f"=== round {rnd + 1}/{args.rounds}: {' '.join(order)} (load {os.getloadavg()[0]:.2f})")
        r = subprocess.run([f"{VENVS}/base/bin/python", os.path.join(HERE, "inproc.py"), WORK],
                           capture_output=True, text=True, env=dict(os.environ, **THREAD_CAPS))
        if r.returncode == 0:
            results["inproc"].append(json.loads(r.stdout))
        else:
            log("inproc failed", r.stderr[-500:])
        for name in order:
            for model in SYSTEMS[name].get("models", models):
                if model != "noop" and model not in models:
                    continue
                run_system(name, model, rnd, args, results)
        summarize(results)
        results["meta"]["elapsed_s"] = time.time() - t_start
        results["meta"]["loadavg_end"] = os.getloadavg()
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print()
    print(fmt_table(results))
    log(f"total {time.time() - t_start:.0f}s; results in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
