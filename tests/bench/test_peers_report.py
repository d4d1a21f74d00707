"""bench/peers_report.py: the M3 targets of issue 18 computed from one run's summary."""
from __future__ import annotations

import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import peers_report  # noqa: E402


def cell(rps: float, rows: int = 1) -> dict:
    return {"rps": rps, "rows_per_s": rps * rows, "lat_p50_us": 1000.0, "lat_p99_us": 2000.0}


def served(c1: float, c16: float, b100: float, cold: float, pss: float) -> dict:
    return {"rounds_ok": 1, "cold_start_s": cold, "pss_mb": pss,
            "single_c1": cell(c1), "single_c16": cell(c16), "batch100_c4": cell(b100, rows=100)}


def test_m3_ratios_against_the_minimal_handler_and_the_best_peer():
    summary = {
        "mlapi/m3": served(c1=1000, c16=2000, b100=400, cold=2.4, pss=300),
        "flask_uwsgi_p2t1/m3": served(c1=80, c16=160, b100=100, cold=2.0, pss=200),
        "mlserver_pw2/m3": served(c1=150, c16=250, b100=120, cold=7.0, pss=500),
        "bentoml_w2/m3": served(c1=50, c16=500, b100=70, cold=7.0, pss=450),
    }
    rows = {line.split(" | ")[0].lstrip("| "): line for line in peers_report.m3_targets(summary)}
    assert "| 12.50× | ≥ 10× | ✓ |" in rows["mlapi ÷ minimal, c1 req/s"]
    assert "| 12.50× | ≥ 10× | ✓ |" in rows["mlapi ÷ minimal, c16 req/s"]
    assert "| 4.00× | ≥ 5× | ✗ |" in rows["mlapi ÷ minimal, b100 c4 rows/s"]
    # the best peer at c16 is BentoML here (500 req/s), not MLServer (best at c1)
    assert "| 4.00× | ≥ 5× | ✗ |" in rows["mlapi ÷ best peer (BentoML), c16 req/s"]
    assert "| 1.20× | ≤ 1.2× | ✓ |" in rows["mlapi ÷ minimal, cold start"]
    assert "| 1.50× | ≤ 1.2× | ✗ |" in rows["mlapi ÷ minimal, PSS"]


def test_a_side_missing_from_the_run_is_a_dash_not_a_ratio():
    rows = peers_report.m3_targets({"flask_uwsgi_p2t1/m3": served(80, 160, 100, 2.0, 200)})
    assert all(line.endswith("| – |") for line in rows[2:]), rows
    assert any("best peer (none ran)" in line for line in rows)


def test_the_report_file_holds_every_model_and_the_m3_targets(tmp_path):
    summary = {f"{system}/{model}": served(100, 200, 50, 2.0, 200)
               for system in ("mlapi", "flask_uwsgi_p2t1") for model in ("m1", "m2", "m3")}
    results = tmp_path / "peers.json"
    results.write_text(json.dumps({"summary": summary}))
    assert peers_report.main(str(results)) == 0
    report = (tmp_path / "peers.md").read_text()
    assert "| mlapi | m3 |" in report and "| flask_uwsgi_p2t1 | m3 |" in report
    assert "| M3 target (issue 18) | ratio | target | met |" in report
    assert "| mlapi ÷ minimal, c1 req/s | 1.00× | ≥ 10× | ✗ |" in report
