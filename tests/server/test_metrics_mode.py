"""GET /metrics reads samples the way prometheus-client writes them, decided once when the
metrics are created, never from the environment of the moment it is scraped."""
import os
import subprocess
import sys

from conftest import ROOT


def scrape(tmp_path, multiprocess_at_import: bool) -> str:
    """Record a prediction and scrape, in a fresh process; PROMETHEUS_MULTIPROC_DIR is set
    either before the metrics are imported (as `mlapi serve` does) or only afterwards."""
    script = f"""
import os
if {multiprocess_at_import}:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
from mlapi import metrics
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
metrics.record_prediction("iris", "1", rows=3)
print(metrics.exposition().decode())
"""
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_in_process_samples_are_scraped_even_if_the_environment_changes_later(tmp_path):
    output = scrape(tmp_path, multiprocess_at_import=False)
    assert 'mlapi_prediction_rows_total{model="iris",version="1"} 3.0' in output
    assert os.listdir(tmp_path) == []  # nothing was written to, or read from, the directory


def test_multiprocess_samples_are_read_from_the_worker_files(tmp_path):
    output = scrape(tmp_path, multiprocess_at_import=True)
    assert 'mlapi_prediction_rows_total{model="iris",version="1"} 3.0' in output
    assert any(name.endswith(".db") for name in os.listdir(tmp_path))
