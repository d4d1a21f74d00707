"""uWSGI's workers' socket (the router speaks the uwsgi protocol to them over it, which lets a
caller set any request variable) lives in a directory only the server's user can enter, made
fresh for each server by `mlapi serve` and removed when it exits: no other local user can
create its path first, whether to keep the server from starting or to listen in its place."""
import os
import re
import stat

import pytest
import requests

import conftest
from conftest import ROOT, free_port
from mlapi.config import Settings
from mlapi.server import launch
from scratch_dirs import scratch_dirs_in_tmp_path  # noqa: F401  (autouse: no directories left in /tmp)


def test_serve_gives_uwsgi_a_fresh_private_directory_for_the_socket(tmp_path):
    settings = Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    directories = [launch.prepare(settings, 9000, "uwsgi", {})[1]["MLAPI_SOCKET_DIR"] for _ in range(2)]
    assert directories[0] != directories[1]
    for directory in directories:
        info = os.stat(directory)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert "9000" not in os.path.basename(directory)  # nothing another user could guess
        assert os.listdir(directory) == []
    assert re.search(r"^socket = \$\(MLAPI_SOCKET_DIR\)/", (ROOT / "uwsgi.ini").read_text(), re.M)


@pytest.fixture
def squatted_port(monkeypatch):
    """A port whose old, predictable socket path another user has taken first (a directory
    there: uWSGI can neither remove nor bind it, as with another user's file in /tmp)."""
    port = free_port()
    squatted = f"/tmp/mlapi-uwsgi-{port}.sock"
    os.mkdir(squatted)
    monkeypatch.setattr(conftest, "free_port", lambda: port)  # ServerProcess takes this port
    yield port, squatted
    os.rmdir(squatted)


def test_a_squatted_socket_path_neither_stops_nor_diverts_the_server(start_server, trained, squatted_port):
    port, squatted = squatted_port
    server = start_server({"MODELS": f"cancer={trained['cancer'][0]}", "UWSGI_PROCESSES": "1"},
                          args=("serve", "--server", "uwsgi"))
    assert server.port == port
    sample = trained["cancer"][2]
    answer = requests.post(f"{server.url}/predict", json={"instances": conftest.to_rows(sample[:2])},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    assert os.listdir(squatted) == []  # nothing of the server's went there

    socket_path = re.search(r"uwsgi socket 0 bound to UNIX address (\S+) fd", server.output()).group(1)
    directory = os.path.dirname(socket_path)
    info = os.stat(directory)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600

    assert server.stop() == 0
    assert not os.path.exists(directory), "the socket's directory outlived the server"


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_more_clients_at_once_than_the_old_backlog_are_all_answered(start_server, tmp_path, server):
    """300 requests at once on one worker: those waiting for it queue (uWSGI: in the workers'
    socket). With uWSGI's `listen = 128` the router closed the connections past the queue,
    answering nothing (167 of 300 here; 38,000 read errors in 5 s under wrk -c200 against 2
    workers); gunicorn's and granian's queues were long enough already."""
    import threading

    import joblib

    from model_doubles import SlowModel

    joblib.dump(SlowModel(), tmp_path / "slow.joblib")
    served = start_server({"MODELS": f"slow={tmp_path / 'slow.joblib'}", "WEB_CONCURRENCY": "1",
                           "PYTHONPATH": str(ROOT / "tests")}, args=("serve", "--server", server))
    outcomes: list = []
    start = threading.Barrier(300)

    def call():
        start.wait()
        try:
            answer = requests.post(f"{served.url}/predict", json={"instances": [[0.01]]}, timeout=60)
            outcomes.append(answer.status_code)
        except requests.RequestException as exc:
            outcomes.append(str(exc)[-160:])

    callers = [threading.Thread(target=call) for _ in range(300)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(90)
    assert outcomes == [200] * 300, {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
