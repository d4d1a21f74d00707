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
