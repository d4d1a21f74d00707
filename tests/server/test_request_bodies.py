"""MAX_REQUEST_BYTES on every server: a declared Content-Length over it is refused with a JSON
413 before the body is read; a chunked body (no Content-Length) is read whole and predicted
when within it, and refused with a 413 as soon as it passes it, never cut to the limit."""
import json
import socket
import time

import pytest
import requests

from conftest import to_rows

SERVERS = ["uwsgi", "gunicorn", "granian"]
LIMIT = 20_000


@pytest.fixture(params=SERVERS)
def server(request, start_server, trained):
    return start_server({"MODELS": f"cancer={trained['cancer'][0]}", "MAX_REQUEST_BYTES": str(LIMIT),
                         "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"}, args=("serve", "--server", request.param))


def chunks(body: bytes, size: int = 1000):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n[[1,2")  # 5 bytes of the 100 MB announced
        answer = b""
        while b"}" not in answer:  # answered now, not after 100 MB (the timeout would raise)
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"application/json" in head.lower(), answer
    assert str(LIMIT) in json.loads(body)["error"]["message"]
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("padded", [b" 100000000", b"100000000 ", b"100000000\t"], ids=["lead", "trail", "tab"])
def test_a_length_with_the_headers_optional_whitespace_is_still_limited(server, padded):
    """A Content-Length keeps whatever optional whitespace the server passes on (uWSGI passes on
    a trailing one): it is the same length, and over the limit it is the same 413, never a body
    read whole because the check could not parse it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length:" + padded + b"\r\n\r\n[[1,2")
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    # 413 from the app; a server may refuse such a header itself (400): never a 200 or a wait
    assert answer.startswith((b"HTTP/1.1 413 ", b"HTTP/1.1 400 ")), answer
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_chunked_body_within_the_limit_is_predicted(server, trained):
    _, estimator, sample = trained["cancer"]
    body = json.dumps({"instances": to_rows(sample)}).encode()
    assert len(body) < LIMIT
    response = requests.post(f"{server.url}/predict", data=chunks(body), timeout=10,
                             headers={"Content-Type": "application/json"})  # a generator: sent chunked
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == estimator.predict(sample).tolist()


def test_a_chunked_body_over_the_limit_is_refused(server, trained):
    _, _, sample = trained["cancer"]
    body = json.dumps({"instances": to_rows(sample) * 20}).encode()
    assert len(body) > LIMIT
    try:
        response = requests.post(f"{server.url}/predict", data=chunks(body), timeout=10,
                                 headers={"Content-Type": "application/json"})
    except requests.ConnectionError:
        pytest.fail("the server closed the connection instead of answering 413")
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/json" and str(LIMIT) in response.json()["error"]["message"]
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_a_refused_request_that_declares_a_body_and_sends_none_frees_the_worker_at_once(start_server, trained):
    """A 401 (or 429, 413) under uWSGI's router drains the unread body for at most a second, so
    the router relays the answer; a client that declares a body and never sends it must not hold
    the one worker for uWSGI's socket-timeout (4 s) on top: key floods would pin every worker."""
    _, estimator, sample = trained["cancer"]
    key = "k" * 32
    server = start_server({"MODELS": f"cancer={trained['cancer'][0]}", "API_KEYS": key,
                           "UWSGI_PROCESSES": "1", "WEB_CONCURRENCY": "1"}, args=("serve", "--server", "uwsgi"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer wrong-key-wrong-key\r\nContent-Length: 1000\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")
        started = time.monotonic()
        answer = requests.post(f"{server.url}/predict", json={"instances": to_rows(sample[:1])},
                               headers={"Authorization": f"Bearer {key}"}, timeout=10)
        waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["predictions"] == estimator.predict(sample[:1]).tolist()
    assert waited < 2.0, f"the next request waited {waited:.1f} s for the worker"
