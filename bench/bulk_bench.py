"""Bulk scoring benchmark: `mlapi batch-predict` end to end against the model's own predict().

For each model, in one run:
  (a) in-process `model.predict` rows/s over the same rows already in memory, on the whole
      array and in the command's 10,000-row chunks (and predict + predict_proba, which is what
      the command computes, for reference); and, as a notebook would do it, `pandas.read_csv`
      of the file then `predict` (start-up and writing not counted);
  (b) `mlapi batch-predict --input big.csv --output out.csv` rows/s: a subprocess, wall time
      from start to exit, so Python start-up, imports and model loading are included;
  (c) that process's peak RSS, on the file and on the same rows three times (memory must not
      grow with the input);
and (b) again from the same rows as Parquet, to show what the CSV text costs.
Each is the best of --repeats runs (the machine may be shared). Prints a markdown table and
writes bench/results/bulk.json.

    .venv/bin/python bench/bulk_bench.py [--rows 1000000] [--repeats 3]

The data is breast-cancer-like (30 positive features with the real data's means and spreads),
generated with numpy from a fixed seed; the models are trained on scikit-learn's bundled
breast-cancer data. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
MLAPI = Path(sys.executable).with_name("mlapi")
CHUNK = 10_000
SEED = 20240501

# Runs the command and reports its wall time and peak RSS from a small wrapper process: a
# child of this (large) process would report our peak, as Linux keeps ru_maxrss across exec.
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-2000:]}))
"""


def make_data(rows: int, folder: Path) -> tuple[np.ndarray, Path]:
    cancer = load_breast_cancer()
    rng = np.random.default_rng(SEED)
    X = np.abs(rng.normal(cancer.data.mean(axis=0), cancer.data.std(axis=0), size=(rows, 30))).round(4)
    names = [name.replace(" ", "_") for name in cancer.feature_names]
    table = pa.table({"id": pa.array(np.arange(rows).astype(str)), **{n: X[:, i] for i, n in enumerate(names)}})
    path = folder / f"cancer-{rows}.csv"
    pcsv.write_csv(table, path)
    return np.ascontiguousarray(X), path


def train(folder: Path) -> dict[str, tuple[object, Path]]:
    cancer = load_breast_cancer()
    models = {
        "M1 scaler+logistic": Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(max_iter=5000))]),
        "M2 random forest 100": RandomForestClassifier(n_estimators=100, random_state=0),
    }
    out = {}
    for i, (label, model) in enumerate(models.items(), start=1):
        model.fit(cancer.data, cancer.target)
        path = folder / f"m{i}.joblib"
        joblib.dump(model, path)
        out[label] = (model, path)
    return out


def best_rate(rows: int, run, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return {"rows_per_s": rows / min(seconds), "seconds": seconds,
            "median_rows_per_s": rows / statistics.median(seconds)}


def in_process(model, X: np.ndarray, source: Path, repeats: int) -> dict:
    chunks = [X[i:i + CHUNK] for i in range(0, len(X), CHUNK)]
    model.predict(chunks[0])  # warm up: first-call imports and allocations
    import pandas as pd

    def read_then_predict():
        frame = pd.read_csv(source)
        model.predict(frame.drop(columns="id").to_numpy())

    rates = {
        "read_csv_then_predict": best_rate(len(X), read_then_predict, repeats),
        "whole": best_rate(len(X), lambda: model.predict(X), repeats),
        "chunked": best_rate(len(X), lambda: [model.predict(c) for c in chunks], repeats),
        "chunked_predict_and_proba": best_rate(len(X), lambda: [(model.predict(c), model.predict_proba(c))
                                                                for c in chunks], repeats),
    }
    if "n_jobs" in model.get_params():
        # The command scores chunks on every CPU; the model's own parallelism is the fair
        # comparison for that (a forest's trees on all cores).
        parallel = copy.deepcopy(model).set_params(n_jobs=-1)
        rates["whole_all_cores"] = best_rate(len(X), lambda: parallel.predict(X), repeats)
    return rates


def command(name: str, source: Path, output: Path, env: dict) -> dict:
    args = [str(MLAPI), "batch-predict", "--model", name, "--input", str(source), "--output", str(output)]
    result = json.loads(subprocess.run([sys.executable, "-c", MEASURE, *args], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    if result["code"] != 0:
        raise SystemExit(f"mlapi batch-predict failed:\n{result['stderr']}")
    return result


def end_to_end(name: str, source: Path, rows: int, folder: Path, env: dict, repeats: int) -> dict:
    output = folder / ("out" + source.suffix)  # CSV → CSV, Parquet → Parquet
    runs = [command(name, source, output, env) for _ in range(repeats)]
    assert f"scored {rows} rows" in runs[0]["stdout"], runs[0]["stdout"]
    seconds = [r["seconds"] for r in runs]
    # The command reports its time after start-up (imports, loading the model).
    scoring = [float(re.search(r" in ([0-9.]+)s after start-up", r["stdout"]).group(1)) for r in runs]
    return {"rows_per_s": rows / min(seconds), "median_rows_per_s": rows / statistics.median(seconds),
            "seconds": seconds, "scoring_seconds": scoring,
            "startup_seconds": [total - scored for total, scored in zip(seconds, scoring)],
            "rows_per_s_after_startup": rows / min(scoring), "peak_rss_mb": max(r["peak_kb"] for r in runs) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mlapi-bulk-bench-") as tmp:
        folder = Path(tmp)
        X, source = make_data(args.rows, folder)
        triple = folder / "triple.csv"  # the same rows three times: memory must not follow
        header, body = source.read_bytes().split(b"\n", 1)
        triple.write_bytes(header + b"\n" + body * 3)
        del header, body
        parquet = folder / "cancer.parquet"  # the same rows, for the format's share of the cost
        pq.write_table(pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(column_types={"id": pa.string()})),
                       parquet)
        models = train(folder)
        env = {**os.environ, "MODELS": ",".join(f"m{i}={path}" for i, (_, path) in enumerate(models.values(), 1))}
        results = {}
        for i, (label, (model, _)) in enumerate(models.items(), start=1):
            print(f"{label}: in-process predict ...", file=sys.stderr)
            a = in_process(model, X, source, args.repeats)
            print(f"{label}: mlapi batch-predict ...", file=sys.stderr)
            b = end_to_end(f"m{i}", source, args.rows, folder, env, args.repeats)
            large = end_to_end(f"m{i}", triple, 3 * args.rows, folder, env, 1)
            columnar = end_to_end(f"m{i}", parquet, args.rows, folder, env, args.repeats)
            a_best = max(a["whole"]["rows_per_s"], a["chunked"]["rows_per_s"])
            results[label] = {"in_process": a, "batch_predict": b, "ratio_b_over_a": b["rows_per_s"] / a_best,
                              "peak_rss_mb_three_times_the_rows": large["peak_rss_mb"],
                              "batch_predict_parquet": columnar,
                              "ratio_parquet_over_a": columnar["rows_per_s"] / a_best,
                              "ratio_b_over_read_csv_then_predict":
                                  b["rows_per_s"] / a["read_csv_then_predict"]["rows_per_s"]}
        report = {
            "rows": args.rows, "chunk_size": CHUNK, "repeats": args.repeats, "input_bytes": source.stat().st_size,
            "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "python": platform.python_version(), "sklearn": sklearn.__version__, "pyarrow": pa.__version__,
            "models": results,
        }
    out = ROOT / "bench" / "results" / "bulk.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\n(JSON: {out.relative_to(ROOT)})")


def markdown(report: dict) -> str:
    k = lambda rate: f"{rate / 1000:,.0f}k"  # noqa: E731
    lines = [
        f"{report['rows']:,} rows × 30 features, CSV {report['input_bytes'] / 2**20:,.0f} MiB, chunks of "
        f"{report['chunk_size']:,}; {report['cpus']} CPUs, load average {report['load_average_before'][0]:.1f} "
        f"before / {report['load_average_after'][0]:.1f} after; best of {report['repeats']}.",
        "",
        "| model | (a) `predict` in memory, whole / 10k chunks | predict + predict_proba, 10k chunks "
        "| predict, all cores | (b) `mlapi batch-predict` CSV → CSV, wall (start-up) | b / a "
        "| b after start-up | (c) peak RSS, the rows / 3 × the rows | Parquet → Parquet (b / a) "
        "| `read_csv` + `predict` in process (b / it) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in report["models"].items():
        a, b = r["in_process"], r["batch_predict"]
        cores = k(a["whole_all_cores"]["rows_per_s"]) if "whole_all_cores" in a else "—"
        lines.append(
            f"| {label} | {k(a['whole']['rows_per_s'])} / {k(a['chunked']['rows_per_s'])} "
            f"| {k(a['chunked_predict_and_proba']['rows_per_s'])} | {cores} "
            f"| {k(b['rows_per_s'])} ({min(b['seconds']):.1f} s, of which {min(b['startup_seconds']):.1f} s start-up) "
            f"| **{r['ratio_b_over_a']:.0%}** | {k(b['rows_per_s_after_startup'])} "
            f"| {b['peak_rss_mb']:.0f} / {r['peak_rss_mb_three_times_the_rows']:.0f} MiB "
            f"| {k(r['batch_predict_parquet']['rows_per_s'])} ({r['ratio_parquet_over_a']:.0%}) "
            f"| {k(a['read_csv_then_predict']['rows_per_s'])} ({r['ratio_b_over_read_csv_then_predict']:.0%}) |")
    lines.append("\nrows/s; b / a compares (b) with the faster of the two (a) figures.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
