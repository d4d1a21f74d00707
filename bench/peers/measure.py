"""Asking and measuring one running server: its answers checked against the model's own,
wrk load cells, the CPU and memory of its process tree, and stopping it."""
import functools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from systems import HERE, WORK

# Probabilities may differ from predict_proba's by sums in another order (a compiled path), no more.
PROBA_TOLERANCE = 1e-9


@functools.lru_cache(maxsize=1)
def expectations():
    """What prepare.py found the models answer: {"expected": labels, "expected_proba": ...}."""
    with open(f"{WORK}/expected.json") as f:
        return json.load(f)


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

