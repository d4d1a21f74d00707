"""Graceful shutdown: on SIGTERM the server stops accepting, finishes in-flight requests and
exits well within Cloud Run's 10 s, under uWSGI and gunicorn."""
import signal
import threading
import time
from pathlib import Path

import joblib
import pytest
import requests

from model_doubles import SlowModel

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_sigterm_drains_in_flight_requests(start_server, tmp_path, server):
    path = tmp_path / "slow.joblib"
    in_predict = tmp_path / "in-predict"  # the model leaves a file here as each predict starts
    in_predict.mkdir()
    joblib.dump(SlowModel(str(in_predict)), path)
    srv = start_server({"MODELS": f"slow={path}", "PYTHONPATH": str(TESTS), "UWSGI_PROCESSES": "2",
                        "WEB_CONCURRENCY": "2"}, args=("serve", "--server", server))
    for _ in range(10):  # both workers past start-up
        requests.get(f"{srv.url}/healthz", timeout=5)
    outcomes = {}

    def slow_request(i):
        try:
            response = requests.post(f"{srv.url}/predict", json={"instances": [[2.0]]}, timeout=20)
            outcomes[i] = response.status_code
        except requests.RequestException as exc:
            outcomes[i] = repr(exc)

    threads = [threading.Thread(target=slow_request, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    SlowModel.wait_until_started(in_predict, count=2)  # both requests are now inside predict (2 s each)
    started = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    srv.proc.wait(15)
    elapsed = time.time() - started
    assert outcomes == {0: 200, 1: 200}, srv.output()[-3000:]  # in flight when SIGTERM came: answered
    assert elapsed < 8, f"took {elapsed:.1f}s to stop"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{srv.url}/healthz", timeout=2)  # and it no longer accepts
