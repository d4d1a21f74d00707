"""Benchmarks with make: bench-peers runs the peer comparison with both of mlapi's serving modes,
then writes its report."""
from __future__ import annotations

import pytest

from conftest import ROOT
from makefile_helpers import dry_run


@pytest.mark.parametrize("env_file, settings, systems, rounds", [
    ("", [], "mlapi,mlapi_batch,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop", "3"),
    ("PEER_SYSTEMS=\nPEER_ROUNDS=\n", [],
     "mlapi,mlapi_batch,flask_uwsgi_p2t1,mlserver_pw2,bentoml_w2,mlflow_w2_connclose,floor_uwsgi_flask_noop", "3"),
    ("", ["PEER_SYSTEMS=mlapi,floor_uwsgi_raw", "PEER_ROUNDS=1"], "mlapi,floor_uwsgi_raw", "1"),
], ids=["defaults", "empty-in-env-file-as-in-example-env", "chosen"])
def test_bench_peers_runs_the_peer_script_with_both_mlapi_modes_then_reports(tmp_path, env_file, settings, systems,
                                                                            rounds):
    dotenv = tmp_path / ".env"
    dotenv.write_text(env_file)
    dry = dry_run(tmp_path, "-s", "-C", str(ROOT), f"ENV_FILE={dotenv}", "bench-peers", *settings)
    assert dry.returncode == 0, dry.stderr
    script = dry.stdout.replace("\\\n", " ")
    assert "ANCHORS_PROFILE=mlapi" in script and f"ANCHORS_SYSTEMS={systems} " in script
    assert f"ANCHORS_ROUNDS={rounds} " in script
    assert f"ANCHORS_OUT={ROOT}/bench/results/peers.json" in script and " bench/peers/run.sh" in script
    assert "bench/peers_report.py bench/results/peers.json" in script
    # bench/results/ is git-ignored: a fresh clone must create it before the peer script writes there
    assert "mkdir -p bench/results" in script and script.index("mkdir -p bench/results") < script.index("run.sh")
