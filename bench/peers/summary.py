"""The results of a run summarised (medians over rounds, ratios to the reference and the
floors) and printed as a table."""
import statistics

from systems import CELLS, REFERENCE, SYSTEMS

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

