"""granian's worker replacement (app/server/granian.py): a retired worker takes no new connection
and sends its keep-alive clients away cleanly, and reloads in a row under a busy stream of
keep-alive and fresh connections lose no request."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import joblib
import numpy as np
import pytest
import requests
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlapi.server.granian_handover import RETIRE_SIGNAL, accepting, hand_over, socket_inodes
from test_reload import AUTH, ROWS, TOKEN, Stream, every_worker_serves, wait_for_every_worker

CANCER = load_breast_cancer()


@pytest.fixture(scope="module")
def two_models():
    old = LogisticRegression(max_iter=5000).fit(CANCER.data, CANCER.target)
    new = DecisionTreeClassifier(max_depth=3, random_state=0).fit(CANCER.data, CANCER.target)
    assert not np.allclose(old.predict_proba(ROWS), new.predict_proba(ROWS))
    return old, new


def serve_granian(start_server, artifact):
    return start_server({"MODELS": f"m={artifact}", "ADMIN_TOKEN": TOKEN, "WEB_CONCURRENCY": "2"},
                        args=("serve", "--server", "granian"))


def workers_of(server) -> list[int]:
    """The launcher is `mlapi serve` itself; its children are granian's workers."""
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as listed:
        return [int(pid) for pid in listed.read().split()]


def tcp_rows() -> list[list[str]]:
    with open("/proc/net/tcp") as table:
        return [row.split() for row in table.readlines()[1:]]


def slot_socket_fd(server, worker: int) -> int:
    """The descriptor of the listening socket the worker polls: its slot's, which the launcher
    holds too."""
    listening = {row[9] for row in tcp_rows() if row[1].endswith(f":{server.port:04X}") and row[3] == "0A"}
    for fd in os.listdir(f"/proc/{server.proc.pid}/fd"):
        if os.readlink(f"/proc/{server.proc.pid}/fd/{fd}")[8:-1] in listening and accepting(worker, int(fd)):
            return int(fd)
    raise AssertionError(f"worker {worker} polls no listening socket of the launcher's")


def shares(server, worker: int, fd: int) -> bool:
    """Whether the worker's descriptor `fd` names the launcher's (a retired worker's slot
    descriptor names an idle socket of its own)."""
    launcher = os.readlink(f"/proc/{server.proc.pid}/fd/{fd}")
    try:
        return os.readlink(f"/proc/{worker}/fd/{fd}") == launcher
    except OSError:
        return False


def holder_of(client: socket.socket, workers: list[int]) -> int:
    """The worker holding the server end of this client connection."""
    client_port = client.getsockname()[1]
    server_ends = {row[9] for row in tcp_rows() if row[2].endswith(f":{client_port:04X}")}
    return next(pid for pid in workers if socket_inodes(pid) & server_ends)


def predict(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """POST /predict on a keep-alive connection (http.client reconnects once the server closed it)."""
    connection.request("POST", "/predict", body=json.dumps({"instances": ROWS.tolist()}),
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    body = answer.read()
    assert answer.status == 200, body
    answer.probabilities = json.loads(body)["probabilities"]
    return answer


def keep_alive(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def predict_on(client: socket.socket) -> http.client.HTTPResponse:
    """POST /predict on a raw socket, left open after the answer (http.client drops its socket
    when told to close, so whether the server closed it could not be seen)."""
    body = json.dumps({"instances": ROWS.tolist()}).encode()
    client.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    answer = http.client.HTTPResponse(client)
    answer.begin()
    assert answer.status == 200 and answer.read()
    return answer


def start_busy_reload(server) -> list[http.client.HTTPConnection]:
    """Idle keep-alive clients on each worker (so each hand-over lasts granian's respawn interval,
    3.5 s), then a reload, left in its first slot's hand-over; the clients, kept open."""
    clients = [keep_alive(server) for _ in range(8)]
    for client in clients:
        client.request("GET", "/healthz")
        client.getresponse().read()
    assert requests.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60).status_code == 200
    time.sleep(0.3)  # the first slot's hand-over has begun
    return clients


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_new_connections_are_spread_over_the_workers(start_server, tmp_path, two_models):
    """One listening socket per worker slot: the kernel spreads connections over them (one socket
    shared by both, granian's accept loop took all 16 on one worker)."""
    artifact = tmp_path / "m.joblib"
    joblib.dump(two_models[0], artifact)
    server = serve_granian(start_server, artifact)
    workers = workers_of(server)
    slots = [slot_socket_fd(server, worker) for worker in workers]
    assert len(set(slots)) == 2 and not shares(server, workers[0], slots[1])  # each its own slot only
    clients = [keep_alive(server) for _ in range(16)]
    for client in clients:
        predict(client)
    holders = [holder_of(client.sock, workers) for client in clients]
    assert set(holders) == set(workers), holders


def test_a_retired_worker_stops_polling_its_slot_and_sends_its_keep_alive_clients_away(start_server,
                                                                                        tmp_path, two_models):
    artifact = tmp_path / "m.joblib"
    joblib.dump(two_models[0], artifact)
    server = serve_granian(start_server, artifact)
    workers = workers_of(server)
    assert len(workers) == 2
    client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    assert predict_on(client).getheader("Connection") != "close"
    retired = holder_of(client, workers)
    slot = slot_socket_fd(server, retired)
    other = next(worker for worker in workers if worker != retired)
    assert slot_socket_fd(server, other) != slot  # a socket per slot

    os.kill(retired, RETIRE_SIGNAL)
    deadline = time.time() + 5
    while shares(server, retired, slot) and time.time() < deadline:
        time.sleep(0.02)
    assert not shares(server, retired, slot), "the retired worker still polls its slot's socket"
    # Its keep-alive client gets one more answer, told to close, and closed (the launcher keeps
    # the slot's socket, and its queue, for the worker granian starts in the retired one's place).
    assert predict_on(client).getheader("Connection") == "close"
    assert client.recv(1) == b"", "the retired worker left the connection open"
    assert retired in workers_of(server)  # retired, not stopped: granian stops it


def test_reloads_in_a_row_under_a_busy_stream_lose_nothing(start_server, tmp_path, two_models):
    """Before (granian's own replacement): about one request in 3,000 lost per reload."""
    models = two_models
    artifact = tmp_path / "m.joblib"
    joblib.dump(models[0], artifact)
    server = serve_granian(start_server, artifact)
    stream = Stream(server, clients=6)
    try:
        for reload_number in range(1, 4):
            serving = models[reload_number % 2]
            joblib.dump(serving, artifact)
            answer = requests.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60)
            assert answer.status_code == 200, answer.text
            deadline = time.time() + 20  # the workers are replaced after the answer
            while not every_worker_serves(server, serving) and time.time() < deadline:
                time.sleep(0.2)
            assert every_worker_serves(server, serving)
    finally:
        stream.stop()
    print(f"\ngranian, 3 reloads: {len(stream.answers)} answered, failed: {stream.failures}")
    assert stream.failures == [], server.output()[-3000:]
    assert len(stream.answers) > 100


def test_sigterm_during_a_reload_stops_the_server_at_once_and_forks_no_more_workers(start_server, tmp_path,
                                                                                     two_models):
    """Before: the launcher exited only once every worker was handed over (6.9 s for 2 workers,
    past Cloud Run's 10 s grace from 3), forking the second slot's worker after SIGTERM."""
    artifact = tmp_path / "m.joblib"
    joblib.dump(two_models[0], artifact)
    server = serve_granian(start_server, artifact)
    clients = start_busy_reload(server)  # held open till the end
    stopped_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(30)
    took = time.monotonic() - stopped_at
    spawned = server.output().count("Spawning worker")
    assert took < 3 and spawned <= 3, f"exited {took:.1f} s after SIGTERM, {spawned} workers spawned"
    assert server.proc.returncode == 0


def test_a_worker_killed_during_a_reload_leaves_the_server_serving(start_server, tmp_path, two_models):
    """Before: the killed worker's slot, respawned < 5.5 s before, was taken for a crash loop and
    the whole server exited 1."""
    old, new = two_models
    artifact = tmp_path / "m.joblib"
    joblib.dump(old, artifact)
    server = serve_granian(start_server, artifact)
    waiting = workers_of(server)[1]  # its slot is handed over second
    joblib.dump(new, artifact)
    clients = start_busy_reload(server)  # held open till the end
    os.kill(waiting, signal.SIGKILL)  # out of memory, a segfault
    wait_for_every_worker(server, "granian", new)
    assert server.proc.poll() is None, server.output()[-2000:]
    launcher_cpu = cpu_seconds(server.proc.pid)
    time.sleep(1)
    assert cpu_seconds(server.proc.pid) - launcher_cpu < 0.3  # its main loop waits, not spins


def test_a_replacement_that_never_accepts_is_not_handed_the_slot():
    """Before: the old worker retired after STARTUP_SECONDS all the same, and the slot's queue
    then waited on a worker that never took from it. Here both workers are plain processes: the
    new one never polls the slot, the old one would die of the retire signal (its default)."""
    slot = socket.create_server(("127.0.0.1", 0))
    old, new = (subprocess.Popen(["sleep", "30"]) for _ in range(2))
    try:
        started = time.monotonic()
        assert not hand_over(old.pid, new.pid, slot.fileno(), slot.getsockname()[1], 1.0, lambda: False,
                             startup_seconds=0.3)
        time.sleep(0.1)
        assert old.poll() is None, "the old worker was retired"
        assert hand_over(old.pid, new.pid, slot.fileno(), 0, 1.0, lambda: True, startup_seconds=30) is False
        assert time.monotonic() - started < 2  # stopping cuts the wait short
        new.kill()  # a replacement that dies while starting: no need to wait for it
        assert hand_over(old.pid, new.pid, slot.fileno(), 0, 1.0, lambda: False, startup_seconds=30) is False
        assert time.monotonic() - started < 3 and old.poll() is None
    finally:
        for process in (old, new):
            process.kill()
            process.wait()
        slot.close()
