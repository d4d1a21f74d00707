"""uWSGI's HTTP router is a uWSGI of its own, exec'd by the server's master (uwsgi.ini's
[router] section), not forked from a master that has loaded the models: it maps no model (a
model reload could otherwise leave the router holding the old one, docs/operations.md). The
master starts it before loading the models (app/server/uwsgi_router.py), so $PORT takes
requests during the load and they are answered once it is done; it starts it again when it
dies, and a master killed during the load takes it along."""
import os
import signal
import socket
import subprocess
import threading
import time

import joblib
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from conftest import ROOT, VENV_BIN
from model_doubles import GatedLoad
from test_reload import descendants

TESTS = ROOT / "tests"


def routers(server) -> list[int]:
    """The server's processes running the [router] section."""
    found = []
    for pid in descendants(server.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read().rstrip(b"\0").endswith(b":router"):
                    found.append(pid)
        except FileNotFoundError:
            continue
    return found


def test_the_router_maps_no_model_and_is_started_again_when_killed(start_server, tmp_path):
    X, y = load_iris(return_X_y=True)
    artifact = tmp_path / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), artifact)
    server = start_server({"MODELS": f"iris={artifact}", "UWSGI_PROCESSES": "2"}, args=("serve", "--server", "uwsgi"))
    [router] = routers(server)
    with open(f"/proc/{router}/maps") as maps:
        mapped = maps.read()
    assert "numpy" not in mapped and "sklearn" not in mapped  # the app was never imported there
    # Twice: the master adopts the router the app started (its pidfile), then the one it
    # started itself, which must write that pidfile too (uWSGI's own UWSGI_RELOADS, inherited,
    # made a respawned router skip it: "did not daemonize !!!" every second, for ever).
    for _ in range(2):
        os.kill(router, signal.SIGKILL)
        deadline, answer = time.time() + 10, None
        while time.time() < deadline:
            try:
                answer = requests.post(f"{server.url}/predict", json={"instances": X[:2].tolist()}, timeout=5)
                break
            except requests.ConnectionError:  # between the router's death and its successor's bind
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, server.output()[-2000:]
        [successor] = routers(server)
        assert successor != router
        router = successor
        time.sleep(2.5)  # the master checks the pidfile once a second
        assert "did not daemonize" not in server.output(), server.output()[-2000:]
        assert routers(server) == [router]
    # A router the master started again dies with it too (uWSGI gives such a daemon no
    # parent-death signal; app/server/uwsgi_router.py's restart does): the port is free again.
    os.kill(server.proc.pid, signal.SIGKILL)
    deadline = time.time() + 5
    while not _gone(router):
        assert time.time() < deadline, "a restarted router outlived its master"
        time.sleep(0.05)


def _gated_server(start_server, tmp_path):
    """A server whose one model loads only once the test creates the gate file; returned as
    soon as its port takes connections (the model still loading)."""
    gate = tmp_path / "gate"
    joblib.dump(GatedLoad(str(gate)), tmp_path / "gated.joblib")
    server = start_server({"MODELS": f"gated={tmp_path / 'gated.joblib'}", "UWSGI_PROCESSES": "2",
                           "PYTHONPATH": str(TESTS)}, args=("serve", "--server", "uwsgi"), ready_path=None)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return server, gate
        except OSError:
            assert time.time() < deadline and server.proc.poll() is None, server.output()[-3000:]
            time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie: dead, not yet reaped
    except FileNotFoundError:
        return True


def test_requests_sent_while_the_models_load_wait_and_are_answered(start_server, tmp_path):
    server, gate = _gated_server(start_server, tmp_path)
    [router] = routers(server)
    answers = []
    request = threading.Thread(target=lambda: answers.append(
        requests.post(f"{server.url}/predict", json={"instances": [[4.0], [2.5]]}, timeout=30)))
    request.start()
    time.sleep(1.0)
    assert not answers and "loaded model" not in server.output()  # waiting: not refused, not a 502
    gate.touch()
    request.join(30)
    assert answers and answers[0].status_code == 200, server.output()[-3000:]
    assert answers[0].json()["predictions"] == [4.0, 2.5]
    assert routers(server) == [router]  # the master adopted the router it had started
    assert f"found valid/active pidfile for" in server.output() and f"(pid: {router})" in server.output()
    # Stopped once every worker is up (the ready line): uWSGI 2.0.31 loses a SIGHUP that reaches a
    # worker still starting, and its master then waits for that worker for ever (docs/roadmap.md).
    deadline = time.time() + 10
    while "serving gated:1 on" not in server.output():
        assert time.time() < deadline, server.output()[-3000:]
        time.sleep(0.05)
    assert server.stop() == 0, server.output()[-3000:]
    deadline = time.time() + 5
    while not _gone(router):
        assert time.time() < deadline, "the router outlived its server"
        time.sleep(0.05)


def test_a_master_killed_while_loading_takes_its_router_along(start_server, tmp_path):
    server, _ = _gated_server(start_server, tmp_path)
    [router] = routers(server)
    os.kill(server.proc.pid, signal.SIGKILL)
    deadline = time.time() + 5
    while not _gone(router):
        assert time.time() < deadline, "the router kept the port of a dead server"
        time.sleep(0.05)
    with socket.socket() as again:  # and the port is free for the next start
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("0.0.0.0", server.port))


def test_serve_refuses_a_port_in_use_at_once(tmp_path):
    """The router is a process of its own that the master starts again whenever it exits:
    without the check in `mlapi serve`, a taken port made a server that retried for ever and
    answered nothing."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PORT": str(port), "MODELS": "m=/nonexistent.joblib", "UWSGI_PROCESSES": "1"}
        try:
            result = subprocess.run([str(VENV_BIN / "mlapi"), "serve", "--server", "uwsgi"], env=env, cwd=ROOT,
                                    capture_output=True, text=True, timeout=30, start_new_session=True)
        except subprocess.TimeoutExpired:
            pytest.fail("mlapi serve kept running on a port in use")
    assert result.returncode != 0 and f"PORT={port} cannot be bound" in result.stderr, result.stderr[-2000:]


def test_uwsgi_ini_named_in_the_environment_is_read_once(start_server):
    """UWSGI_INI (a setting of `mlapi serve`) is also an option uWSGI reads from the environment
    itself: passed on, the file loaded twice and a second router retried its bind for ever."""
    server = start_server({"MODELS": "m=/nonexistent.joblib", "UWSGI_PROCESSES": "1",
                           "UWSGI_INI": str(ROOT / "uwsgi.ini")}, args=("serve", "--server", "uwsgi"))
    time.sleep(3)  # a second router would have failed to bind and been started again by now
    assert server.output().count("getting INI configuration") == 2, server.output()[-3000:]  # master, router
    assert "respawning" not in server.output() and len(routers(server)) == 1
