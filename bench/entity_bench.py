"""Predict by id vs POST predict with the same features inline, on a real `mlapi serve`.

For SQLite and PostgreSQL (when reachable): stores iris rows in the online store, serves the
demo iris model, then alternates GET /predict/<id> and POST /predict with that record's
features (interleaved, so machine noise hits both alike) and reports the median added latency.
Target (issue 3): predict-by-id adds at most 1 ms median.

    .venv/bin/python bench/entity_bench.py [--requests 2000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(port: int, method: str, path: str, body: bytes | None = None) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {path} → {response.status}: {payload[:300]!r}")
    return elapsed


def stock(url: str) -> list[tuple[str, list[float]]]:
    from sklearn.datasets import load_iris

    from mlapi.store.database import make_engine
    from mlapi.store.ingest import import_rows

    data = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [{"id": str(i + 1), **dict(zip(names, map(float, x)))} for i, x in enumerate(data.data)]
    engine = make_engine(url)
    import_rows(engine, "features", "id", ((i, r) for i, r in enumerate(rows)))
    engine.dispose()
    return [(r["id"], [r[n] for n in names]) for r in rows]


def run(url: str, label: str, n: int, models_dir: Path) -> dict:
    records = stock(url)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "MODELS": f"iris={models_dir / 'iris.joblib'}",
           "FEATURE_STORE_URL": url, "PREDICTIONS_DB_URL": f"sqlite:///{models_dir}/p.db", "UWSGI_PROCESSES": "2"}
    server = subprocess.Popen([str(BIN / "mlapi"), "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            try:
                timed(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        by_id, inline = [], []
        for i in range(n + 100):
            entity_id, features = records[i % len(records)]
            body = json.dumps({"instances": [features]}).encode()
            pair = (timed(port, "GET", f"/predict/{entity_id}"), timed(port, "POST", "/predict", body))
            if i >= 100:  # warm-up: pools, caches
                by_id.append(pair[0])
                inline.append(pair[1])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
    med_id, med_inline = statistics.median(by_id) * 1e3, statistics.median(inline) * 1e3
    return {"store": label, "requests": n, "by_id_p50_ms": round(med_id, 3), "inline_p50_ms": round(med_inline, 3),
            "added_p50_ms": round(med_id - med_inline, 3), "target_ms": 1.0, "met": med_id - med_inline <= 1.0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([str(BIN / "mlapi"), "demo", "--out", str(tmp)], check=True, capture_output=True)
        results.append(run(f"sqlite:///{tmp}/fs.db", "SQLite", args.requests, tmp))
        try:
            import sqlalchemy as sa

            name = f"mlapi_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
            try:
                results.append(run(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "PostgreSQL",
                                   args.requests, tmp))
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        except Exception as exc:  # noqa: BLE001 - the bench reports what it could not run
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    print("| store | GET /predict/<id> p50 | POST /predict p50 | added | target ≤ 1 ms |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['store']} | {r['by_id_p50_ms']} ms | {r['inline_p50_ms']} ms | {r['added_p50_ms']} ms | "
              f"{'met' if r['met'] else 'NOT met'} |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "entity.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
