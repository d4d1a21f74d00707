"""Side-by-side HTTP benchmark of sklearn model-serving systems on 127.0.0.1.

Run by run.sh (with the base venv's python). For each round, systems are run in a
rotated order; each (system, model) gets a fresh server launch (cold start is
measured), a correctness check, the load cells (wrk, 1 thread, Lua POST), a second
correctness check, a memory sample, and a shutdown.  Results go to --out (JSON)
and a table is printed.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from measure import body_file, check, free_port, memory, stop, tree_cpu, wrk
from summary import fmt_table, summarize
from systems import (BASE_ENV, CELLS, DEFAULT_SYSTEMS, HERE, MLAPI_BEFORE_BIN, MLAPI_BEFORE_CHECKOUT,
                     MLAPI_BIN, MLAPI_CHECKOUT, MODELS, SYSTEMS, THREAD_CAPS, VENVS, WORK)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


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
