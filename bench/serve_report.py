"""Medians, ratios and the markdown report of bench/serve_bench.py's runs (no I/O here)."""
from __future__ import annotations

import statistics

FLOOR = "noop"  # the model name the /healthz floor runs are recorded under


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _failed_checks(cell: dict) -> int:
    return (cell["check_before"] != "ok") + (cell["check_after"] != "ok")


def summarize(results: dict, cells: dict) -> dict:
    """Per system/model: medians over rounds of every cell, error totals (socket errors,
    non-2xx answers and failed prediction checks), and the ratios to both floors."""
    keys = list(dict.fromkeys((r["system"], r["model"]) for r in results["runs"]))
    keys.sort(key=lambda k: (list(results["meta"]["systems"]).index(k[0]), k[1] != FLOOR))
    summary: dict = {"rows": {}}
    for system, model in keys:
        runs = [r for r in results["runs"] if r["system"] == system and r["model"] == model]
        ok = [r for r in runs if "error" not in r]
        row = {"system": system, "model": model, "launches": len(runs),
               "failures": [r["error"] for r in runs if "error" in r], "cells": {}}
        if model != FLOOR and ok:
            row.update(cold_start_s=_median([r["cold_start_s"] for r in ok]),
                       pss_mb=_median([r["pss_mb"] for r in ok]), processes=_median([r["processes"] for r in ok]))
        for cell in cells:
            measured = [r["cells"][cell] for r in ok if cell in r.get("cells", {})]
            if not measured:
                continue
            row["cells"][cell] = {
                **{k: _median([m[k] for m in measured]) for k in ("rps", "rows_per_s", "server_cpu_us_per_req")},
                "p50_ms": _median([m["lat_p50_us"] / 1000 for m in measured]),
                "p99_ms": _median([m["lat_p99_us"] / 1000 for m in measured]),
                "rps_each_round": [round(m["rps"], 1) for m in measured],
                "errors": sum(m["socket_errors"] + m["non2xx"] for m in measured),
                "failed_checks": sum(_failed_checks(m) for m in measured),
                "worker_recycles": sum(m.get("worker_recycles", 0) for m in measured)}
        summary["rows"][f"{system}/{model}"] = row
    inproc = results.get("inproc") or []
    summary["inproc"] = {key: {metric: _median([r[key][metric] for r in inproc]) for metric in inproc[0][key]}
                         for key in (inproc[0] if inproc else {})}
    for row in summary["rows"].values():
        if row["model"] == FLOOR:
            continue
        floor = summary["rows"].get(f"{row['system']}/{FLOOR}", {}).get("cells", {})
        row["rps_vs_floor"] = {c: v["rps"] / floor[c]["rps"] for c, v in row["cells"].items()
                               if floor.get(c, {}).get("rps")}
        one, hundred = summary["inproc"].get(f"{row['model']}_1"), summary["inproc"].get(f"{row['model']}_100")
        vs_model = {}
        if one and "c1" in row["cells"]:
            vs_model["c1_p50_over_predict"] = row["cells"]["c1"]["p50_ms"] * 1000 / one["predict_us"]
            vs_model["c1_p50_minus_served_ms"] = row["cells"]["c1"]["p50_ms"] - one["served_us"] / 1000
        if hundred and "b100_c4" in row["cells"]:
            vs_model["b100_c4_p50_over_predict"] = row["cells"]["b100_c4"]["p50_ms"] * 1000 / hundred["predict_us"]
            vs_model["b100_c4_rows_per_s_over_predict_one_core"] = (row["cells"]["b100_c4"]["rows_per_s"]
                                                                    / (100e6 / hundred["predict_us"]))
        row["vs_model"] = vs_model
    return summary


def problems(results: dict) -> list[str]:
    found = []
    for key, row in results["summary"]["rows"].items():
        found += [f"{key}: {failure}" for failure in row["failures"]]
        for cell, values in row["cells"].items():
            if values["errors"] or values["failed_checks"]:
                found.append(f"{key} {cell}: {values['errors']} failed requests, "
                             f"{values['failed_checks']} failed prediction checks")
    return found


def _num(value, digits=0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _latency(cell: dict | None) -> str:
    return "–" if not cell else f"{cell['p50_ms']:.2f} / {cell['p99_ms']:.2f}"


def markdown(results: dict, cells: dict) -> str:
    meta, summary = results["meta"], results["summary"]
    v = meta["versions"]
    kind = "**Quick run** (`--quick`: 2 s cells, a smoke test, not a measurement)" if meta["quick"] else "Run"
    lines = [
        f"{kind} of {meta['started']}: `{meta['command']}`",
        "",
        f"{meta['cpus']} CPUs, server processes: {meta['processes']}; load average "
        f"{meta['loadavg_start'][0]:.2f} at the start, {meta['loadavg_end'][0]:.2f} at the end; "
        f"{meta['duration_s']} s per cell after {meta['warmup_s']} s warm-up, {meta['rounds']} round(s) (medians); "
        f"load from {meta['loadgen'].replace('wrk', v['wrk'], 1) if 'wrk' in v else meta['loadgen']}; Python {v['python']}, "
        f"scikit-learn {v.get('scikit-learn')}, numpy {v.get('numpy')}, Flask {v.get('flask')}, "
        f"uWSGI {v.get('uwsgi')}, gunicorn {v.get('gunicorn')}.",
        "",
        "c1, c16, c64: one row per request on 1, 16, 64 connections (rows/s = req/s); b100 c4: 100 rows per "
        "request on 4 connections. Latency p50 / p99 in ms. Errors: failed requests (socket errors and "
        "non-2xx) plus failed prediction checks, over all cells; must be 0. `noop` is the same server's "
        "`GET /healthz` (the HTTP floor). Cold start: process start to the first correct prediction; "
        "PSS: all server processes after the cells.",
        "",
        "| system | model | c1 req/s | c1 p50 / p99 | c16 req/s | c16 p50 / p99 | c64 req/s | c64 p50 / p99 "
        "| b100 c4 req/s | b100 rows/s | b100 p50 / p99 | errors | cold start s | PSS MB |",
        "|---|---|" + "--:|" * 12,
    ]
    for row in summary["rows"].values():
        label = "noop (/healthz)" if row["model"] == FLOOR else row["model"]
        if not row["cells"]:
            lines.append(f"| {row['system']} | {label} | FAILED: {row['failures'][0][:150] if row['failures'] else '?'} |")
            continue
        c = row["cells"]
        errors = sum(x["errors"] + x["failed_checks"] for x in c.values()) + len(row["failures"])
        cols = []
        for cell in ("c1", "c16", "c64"):
            cols += [_num(c.get(cell, {}).get("rps")), _latency(c.get(cell))]
        b = c.get("b100_c4", {})
        cols += [_num(b.get("rps")), _num(b.get("rows_per_s")), _latency(b or None), str(errors),
                 _num(row.get("cold_start_s"), 2), _num(row.get("pss_mb"))]
        lines.append(f"| {row['system']} | {label} | " + " | ".join(cols) + " |")
    recycled = [f"{key} {sum(c['worker_recycles'] for c in row['cells'].values())}"
                for key, row in summary["rows"].items() if any(c["worker_recycles"] for c in row["cells"].values())]
    if recycled:
        lines += ["", "Workers recycled by max-requests during the cells (each recycle stalls requests, "
                  "which shows in p99): " + ", ".join(recycled) + "."]
    lines += [
        "",
        "Against the floors: req/s as a fraction of the same server's `/healthz` in the same cell; c1 p50 "
        "as a multiple of in-process `predict` on 1 row, and minus in-process `ServedModel.predict` (what "
        "a request computes by default: labels and probabilities) = what HTTP, JSON and the app add; b100 c4 p50 as a "
        "multiple of `predict` on 100 rows, and its rows/s as a fraction of `predict` on 100 rows on one core.",
        "",
        "| system | model | c1 ÷ noop | c16 ÷ noop | c64 ÷ noop | b100 c4 ÷ noop | c1 p50 ÷ predict(1) "
        "| c1 p50 − served(1), ms | b100 p50 ÷ predict(100) | b100 rows/s ÷ predict(100), one core |",
        "|---|---|" + "--:|" * 8,
    ]
    for row in summary["rows"].values():
        if row["model"] == FLOOR or not row["cells"]:
            continue
        ratio, model = row["rps_vs_floor"], row["vs_model"]
        cols = [_num(ratio.get(cell), 2) for cell in cells]
        cols += [_num(model.get("c1_p50_over_predict"), 1), _num(model.get("c1_p50_minus_served_ms"), 2),
                 _num(model.get("b100_c4_p50_over_predict"), 1),
                 _num(model.get("b100_c4_rows_per_s_over_predict_one_core"), 2)]
        lines.append(f"| {row['system']} | {row['model']} | " + " | ".join(cols) + " |")
    lines += ["", "Server CPU per request, µs (all server processes; less sensitive to a busy machine "
              "than req/s and latency):", "",
              "| system | model | " + " | ".join(cells) + " |", "|---|---|" + "--:|" * len(cells)]
    for row in summary["rows"].values():
        if row["cells"]:
            label = "noop (/healthz)" if row["model"] == FLOOR else row["model"]
            lines.append(f"| {row['system']} | {label} | "
                         + " | ".join(_num(row["cells"].get(c, {}).get("server_cpu_us_per_req")) for c in cells) + " |")
    if summary["inproc"]:
        lines += ["", "In-process model floor, µs per call (one BLAS thread, median of 3 timed loops; "
                  "served = `mlapi.serving.model.ServedModel.predict`: labels and probabilities as a request gets "
                  "them, as lists):", "",
                  "| model | predict, 1 row | served, 1 row | predict, 100 rows | served, 100 rows |",
                  "|---|--:|--:|--:|--:|"]
        for model in dict.fromkeys(key.rsplit("_", 1)[0] for key in summary["inproc"]):
            one, hundred = summary["inproc"][f"{model}_1"], summary["inproc"][f"{model}_100"]
            lines.append(f"| {model} | {_num(one['predict_us'])} | {_num(one['served_us'])} | "
                         f"{_num(hundred['predict_us'])} | {_num(hundred['served_us'])} |")
    return "\n".join(lines)
