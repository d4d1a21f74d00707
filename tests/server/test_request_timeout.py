"""REQUEST_TIMEOUT on every server: a request still running at REQUEST_TIMEOUT gets a JSON 504
within a second of it (app/http/deadline.py), and the server goes on serving."""
import socket
import time
from pathlib import Path

import joblib
import pytest
import requests

from model_doubles import SlowModel
from mlapi.config import Settings
from mlapi.server import limits
from timeout_doubles import BusyModel, StuckModel

TESTS = Path(__file__).resolve().parents[1]
SERVERS = ["uwsgi", "gunicorn", "granian"]


@pytest.fixture
def timeout_models(tmp_path):
    joblib.dump(SlowModel(), tmp_path / "sleepy.joblib")
    joblib.dump(BusyModel(), tmp_path / "busy.joblib")
    joblib.dump(StuckModel(), tmp_path / "stuck.joblib")
    return f"sleepy={tmp_path / 'sleepy.joblib'},busy={tmp_path / 'busy.joblib'},stuck={tmp_path / 'stuck.joblib'}"


def timed_post(url: str, seconds: float):
    started = time.monotonic()
    response = requests.post(url, json={"instances": [[seconds]]}, timeout=30)
    return response, time.monotonic() - started


@pytest.mark.parametrize("server", SERVERS)
def test_a_request_past_the_timeout_gets_a_json_504_and_the_server_goes_on(start_server, timeout_models, server):
    srv = start_server({"MODELS": timeout_models, "REQUEST_TIMEOUT": "2", "PYTHONPATH": f"{TESTS}:{TESTS / 'server'}",
                        "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"}, args=("serve", "--server", server))
    # Python work is stopped on every server; a sleep only on the main thread (not granian's
    # request threads, which it blocks until it returns: docs/operations.md).
    models = ["busy", "sleepy"] if server != "granian" else ["busy"]
    for model in models:
        response, elapsed = timed_post(f"{srv.url}/models/{model}/predict", 10)
        assert response.status_code == 504, (model, response.text, srv.output()[-2000:])
        assert response.headers["Content-Type"] == "application/json"
        assert "REQUEST_TIMEOUT" in response.json()["error"]["message"]
        assert 2 <= elapsed < 3, (model, elapsed)
        answer, _ = timed_post(f"{srv.url}/models/{model}/predict", 0.1)  # the same worker serves on
        assert answer.status_code == 200 and answer.json()["predictions"] == [0.1 if model == "busy" else 0.0]
    assert srv.proc.poll() is None


def test_a_timeout_inside_a_micro_batch_leaves_the_model_serving(start_server, timeout_models):
    # Six requests that outlast REQUEST_TIMEOUT, batched: the first runs alone, the others wait
    # in the batcher's queue and pass of their deadline there. A timeout raised into a waiting
    # request as it was handed the lead would leave the batcher busy for ever: every later
    # request of the model would hang (serving/batching.py's UNINTERRUPTIBLE).
    from concurrent.futures import ThreadPoolExecutor

    srv = start_server({"MODELS": timeout_models, "REQUEST_TIMEOUT": "2", "MAX_BATCH_SIZE": "8",
                        "PYTHONPATH": f"{TESTS}:{TESTS / 'server'}", "WEB_CONCURRENCY": "1"})
    url = f"{srv.url}/models/busy/predict"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: timed_post(url, 3)[0], range(6)))
    assert {answer.status_code for answer in answers} <= {200, 504}, [a.text for a in answers]
    answer, elapsed = timed_post(url, 0.1)
    assert answer.status_code == 200 and answer.json()["predictions"] == [0.1] and elapsed < 5, (answer.text, elapsed)
    assert srv.proc.poll() is None


def seconds_until_closed(port: int, path: str) -> float:
    """How long a request on a keep-alive connection waits before the server closes it."""
    body = b'{"instances": [[1]]}'
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while sock.recv(65536):
            pass
        return time.monotonic() - started


def test_uwsgi_cuts_a_request_its_app_cannot_stop_at_kill_after_not_twice_that(start_server, timeout_models):
    # A worker stuck in a call that never returns: the app's 504 cannot come. The router closes
    # the client's connection at kill_after and harakiri kills the worker a second later. With
    # both at kill_after, harakiri usually won, and the router took the dead worker's silence
    # for an empty answer and held the keep-alive connection for another kill_after (3.4-3.7 s
    # here, measured before).
    srv = start_server({"MODELS": timeout_models, "REQUEST_TIMEOUT": "1", "PYTHONPATH": f"{TESTS}:{TESTS / 'server'}",
                        "UWSGI_PROCESSES": "1"}, args=("serve", "--server", "uwsgi"))
    kill_after = limits.kill_after(Settings.from_env({"REQUEST_TIMEOUT": "1"}))
    for killed in range(1, 4):
        elapsed = seconds_until_closed(srv.port, "/models/stuck/predict")
        assert kill_after - 0.5 <= elapsed < kill_after + 0.9, (elapsed, srv.output()[-2000:])
        # The worker is killed and replaced, a second later (a request sent before would wait
        # for it in the queue, and be cut by the router at kill_after too: one worker here).
        deadline = time.monotonic() + 5
        while srv.output().count("Respawned uWSGI worker") < killed and time.monotonic() < deadline:
            time.sleep(0.1)
        answer, _ = timed_post(f"{srv.url}/models/busy/predict", 0.1)
        assert answer.status_code == 200, answer.text
    assert srv.output().count("HARAKIRI ON WORKER") == 3
