"""Markdown tables from `make bench-peers` (bench/results/peers.json): every system's cells,
then mlapi's ratios against the minimal Flask + uWSGI handler and the best peer, next to the
targets of the performance issue (M1, M2) and of issue 18 (M3, the ColumnTransformer +
HistGradientBoosting pipeline fed DataFrame records). All ratios come from the one run in the file.

usage: python bench/peers_report.py [bench/results/peers.json]  (writes bench/results/peers.md)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REFERENCE = "flask_uwsgi_p2t1"
PEERS = ("mlserver_pw2", "bentoml_w2", "mlflow_w2_connclose", "mlflow_w2", "flask_gunicorn_w2")
PEER_NAMES = {"mlserver_pw2": "MLServer", "bentoml_w2": "BentoML", "mlflow_w2_connclose": "MLflow*",
              "mlflow_w2": "MLflow", "flask_gunicorn_w2": "Flask+gunicorn"}
OURS = ("mlapi", "mlapi_batch", "mlapi_gunicorn")
CELLS = ("single_c1", "single_c16", "single_c64", "batch100_c4")
CELL_NAMES = {"single_c1": "c1", "single_c16": "c16", "single_c64": "c64", "batch100_c4": "b100 c4"}


def main(path: str) -> int:
    summary = json.loads(Path(path).read_text())["summary"]
    lines = ["| system | model | " + " | ".join(f"{CELL_NAMES[c]} req/s (p50 / p99 ms)" for c in CELLS)
             + " | cold start s | PSS MB |", "|---|---|" + "--:|" * (len(CELLS) + 2)]
    for key, s in summary.items():
        if key == "inproc" or not s.get("rounds_ok"):
            continue
        system, model = key.split("/")
        cells = [f"{s[c]['rps']:,.0f} ({s[c]['lat_p50_us'] / 1000:.2f} / {s[c]['lat_p99_us'] / 1000:.2f})"
                 if c in s else "–" for c in CELLS]
        lines.append(f"| {system} | {model} | " + " | ".join(cells) + f" | {s['cold_start_s']:.2f} | {s['pss_mb']:.0f} |")
    lines += ["", *targets(summary), "", *m3_targets(summary), *before_and_after(summary)]
    text = "\n".join(lines) + "\n"
    Path(path).with_suffix(".md").write_text(text)
    print(text)
    return 0


def targets(summary: dict) -> list[str]:
    def cell(system, model, name):
        return summary.get(f"{system}/{model}", {}).get(name)

    def ratio(value, floor):
        return f"{value / floor:.2f}×" if value is not None and floor else "–"

    rows = ["| target | M1 | M2 |", "|---|--:|--:|"]

    def add(label, compute):
        rows.append(f"| {label} | {compute('m1')} | {compute('m2')} |")

    def rps(system, name):
        return lambda m: ratio((cell(system, m, name) or {}).get("rps"), (cell(REFERENCE, m, name) or {}).get("rps"))

    add("mlapi ÷ minimal, c16 req/s (≥ 0.9×, M1)", rps("mlapi", "single_c16"))
    add("mlapi_batch ÷ minimal, c64 req/s (≥ 3× M1, ≥ 5× M2)", rps("mlapi_batch", "single_c64"))
    add("mlapi_batch ÷ minimal, c64 p99 (≤ 2×)", lambda m: ratio(
        (cell("mlapi_batch", m, "single_c64") or {}).get("lat_p99_us"),
        (cell(REFERENCE, m, "single_c64") or {}).get("lat_p99_us")))
    for system in ("mlapi", "mlapi_batch"):
        add(f"{system} ÷ minimal, c1 p50 (≤ 1.1×)", lambda m, system=system: ratio(
            (cell(system, m, "single_c1") or {}).get("lat_p50_us"),
            (cell(REFERENCE, m, "single_c1") or {}).get("lat_p50_us")))
    add("mlapi ÷ minimal, b100 c4 rows/s (≥ 1.5×, M1)", rps("mlapi", "batch100_c4"))
    for name in CELLS:
        add(f"best mlapi ÷ best peer, {CELL_NAMES[name]} req/s (≥ 3×)", lambda m, name=name: best_vs_peer(summary, m, name))
    for field, label in (("cold_start_s", "cold start"), ("pss_mb", "PSS")):
        add(f"mlapi ÷ minimal, {label} (≤ 1.2×)", lambda m, field=field: ratio(
            summary.get(f"mlapi/{m}", {}).get(field), summary.get(f"{REFERENCE}/{m}", {}).get(field)))
    return rows


def best_rps(summary: dict, systems, model: str, name: str) -> tuple[float, str] | None:
    """(req/s, system) of the fastest of `systems` that served `model` in cell `name`."""
    found = [(summary[f"{s}/{model}"][name]["rps"], s) for s in systems
             if name in summary.get(f"{s}/{model}", {})]
    return max(found) if found else None


def best_vs_peer(summary: dict, model: str, name: str) -> str:
    ours, peer = best_rps(summary, OURS, model, name), best_rps(summary, PEERS, model, name)
    if not ours or not peer:
        return "–"
    return f"{ours[0] / peer[0]:.2f}× ({ours[1]} vs {PEER_NAMES[peer[1]]})"


# Issue 18's throughput targets for M3, mlapi ÷ the minimal handler: (label, cell, field, at least).
M3_TARGETS = (
    ("mlapi ÷ minimal, c1 req/s", "single_c1", "rps", 10.0),
    ("mlapi ÷ minimal, c16 req/s", "single_c16", "rps", 10.0),
    ("mlapi ÷ minimal, b100 c4 rows/s", "batch100_c4", "rows_per_s", 5.0),
)


def m3_targets(summary: dict) -> list[str]:
    """mlapi on M3 against the minimal handler and the best peer, each ratio beside its target
    (✓ met, ✗ missed, – a side missing from the run)."""
    mlapi, minimal = summary.get("mlapi/m3", {}), summary.get(f"{REFERENCE}/m3", {})
    rows = ["| M3 target (issue 18) | ratio | target | met |", "|---|--:|--:|:-:|"]

    def add(label, value, floor, target, at_least=True):
        if value is None or not floor:
            rows.append(f"| {label} | – | {'≥' if at_least else '≤'} {target:g}× | – |")
            return
        ratio = value / floor
        met = ratio >= target if at_least else ratio <= target
        rows.append(f"| {label} | {ratio:.2f}× | {'≥' if at_least else '≤'} {target:g}× | {'✓' if met else '✗'} |")

    for label, cell, field, target in M3_TARGETS:
        add(label, (mlapi.get(cell) or {}).get(field), (minimal.get(cell) or {}).get(field), target)
    peer = best_rps(summary, PEERS, "m3", "single_c16")
    add(f"mlapi ÷ best peer ({PEER_NAMES[peer[1]] if peer else 'none ran'}), c16 req/s",
        (mlapi.get("single_c16") or {}).get("rps"), peer[0] if peer else None, 5.0)
    for field, label in (("cold_start_s", "cold start"), ("pss_mb", "PSS")):
        add(f"mlapi ÷ minimal, {label}", mlapi.get(field), minimal.get(field), 1.2, at_least=False)
    batch = best_rps(summary, ("mlapi_batch",), "m3", "single_c16")
    if batch and (minimal.get("single_c16") or {}).get("rps"):
        rows.append(f"| (mlapi_batch ÷ minimal, c16 req/s: not a target) | "
                    f"{batch[0] / minimal['single_c16']['rps']:.2f}× | | |")
    return rows


def before_and_after(summary: dict) -> list[str]:
    """With `<system>_before` systems (MLAPI_BEFORE_CHECKOUT): this code ÷ the code before the
    change, per cell, from the same interleaved run. req/s higher is better, latency and
    start-up lower; a ⚠ marks a cell more than 5 % worse."""
    pairs = [s for s in OURS if any(key.startswith(f"{s}_before/") for key in summary)]
    if not pairs:
        return []
    rows = ["", "| after ÷ before | model | " + " | ".join(f"{CELL_NAMES[c]} req/s · p50 · p99" for c in CELLS)
            + " | cold start | PSS |", "|---|---|" + "--:|" * (len(CELLS) + 2)]

    def mark(value, worse_above):
        if value is None:
            return "–"
        worse = value > worse_above if worse_above > 1 else value < worse_above
        return f"{value:.2f}{' ⚠' if worse else ''}"

    for system in pairs:
        for model in ("m1", "m2"):
            after, before = summary.get(f"{system}/{model}", {}), summary.get(f"{system}_before/{model}", {})
            if not after.get("rounds_ok") or not before.get("rounds_ok"):
                continue

            def ratio(name, field):
                a, b = (after.get(name) or {}).get(field), (before.get(name) or {}).get(field)
                return a / b if a is not None and b else None

            cells = [" · ".join((mark(ratio(c, "rps"), 0.95), mark(ratio(c, "lat_p50_us"), 1.05),
                                 mark(ratio(c, "lat_p99_us"), 1.05))) for c in CELLS]
            starts = mark(after["cold_start_s"] / before["cold_start_s"], 1.05)
            rows.append(f"| {system} | {model} | " + " | ".join(cells) + f" | {starts} | "
                        f"{mark(after['pss_mb'] / before['pss_mb'], 1.05)} |")
    return rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/peers.json"))
