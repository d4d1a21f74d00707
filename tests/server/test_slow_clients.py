"""Slow clients (slowloris): connections that send their headers a line a second, or their body
a byte a second. A server reading headers in an asynchronous front (uWSGI's HTTP router,
granian's Rust server) keeps answering everyone else meanwhile; a worker that reads them itself
(gunicorn) is held until the headers deadline cuts the client; a body is read by a worker on
every server and is cut at REQUEST_TIMEOUT (granian cannot: docs/operations.md, Slow clients)."""
import json

import pytest

from conftest import to_rows
from mlapi.server import limits
from slow_clients import answered, start_slow_clients

REQUEST_TIMEOUT = 4
HEADERS_CUT = limits.HEADERS_SECONDS + 3
# A trickled body is cut within a round of this: gunicorn's kill at REQUEST_TIMEOUT + 1; uWSGI's
# harakiri at REQUEST_TIMEOUT + 2 (limits.uwsgi_harakiri, a second after the router's
# http-timeout), which its master checks once a second, and the worker's respawn (measured:
# 6.0 s for the first round, 8.0 s for the second).
BODY_CUT = REQUEST_TIMEOUT + 4


@pytest.mark.parametrize("server, mode, answered_meanwhile, cut_within", [
    ("uwsgi", "headers", True, None),  # held by the router, no worker: not cut (docs/operations.md)
    ("granian", "headers", True, HEADERS_CUT),
    ("gunicorn", "headers", False, HEADERS_CUT),
    ("uwsgi", "body", False, BODY_CUT),
    ("gunicorn", "body", False, BODY_CUT),
])
def test_slow_clients(start_server, trained, server, mode, answered_meanwhile, cut_within):
    _, _, sample = trained["cancer"]
    body = {"instances": to_rows(sample[:1])}
    srv = start_server({"MODELS": f"cancer={trained['cancer'][0]}", "REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
                        "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2"}, args=("serve", "--server", server))
    clients = start_slow_clients(srv.port, mode, count=4)  # two per worker
    try:
        if answered_meanwhile:
            ok = answered(srv.url, 6, timeout=3, body=body)
            assert ok == 6, f"{ok} of 6 requests answered within 3 s beside 4 slow clients"
        if cut_within is not None:
            # A worker takes the slow clients one after another (the others wait in the listen
            # queue): two rounds of two, each cut within its deadline.
            for client in clients:
                client.join(2 * cut_within)
            cuts = [client.cut_after for client in clients]
            assert all(cut is not None and cut < 2 * cut_within for cut in cuts), cuts
            assert answered(srv.url, 6, timeout=3, body=body) == 6  # and the workers serve on
    finally:
        for client in clients:
            client.stop()
    assert srv.proc.poll() is None


@pytest.mark.parametrize("mode", ["pause", "pause-chunked"])
def test_a_body_that_stops_arriving_is_a_json_408(start_server, trained, mode):
    """A client that sends part of its body and then nothing: uWSGI's read gives up after its
    socket-timeout (4 s) and the client gets a JSON 408 saying so (it was a 500 with a
    traceback), on the fast path (Content-Length) and through the chunked read alike; the
    workers serve on."""
    _, _, sample = trained["cancer"]
    srv = start_server({"MODELS": f"cancer={trained['cancer'][0]}", "REQUEST_TIMEOUT": "20",
                        "UWSGI_PROCESSES": "2"}, args=("serve", "--server", "uwsgi"))
    clients = start_slow_clients(srv.port, mode, count=2)
    try:
        for client in clients:
            client.join(10)
        for client in clients:
            head, _, body = client.response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), client.response[:300]
            assert b"connection: close" in head.lower(), head
            error = json.loads(body)["error"]
            assert error["status"] == 408 and "did not arrive in full" in error["message"], error
            assert client.cut_after is not None and client.cut_after < 8, client.cut_after
        assert answered(srv.url, 4, timeout=3, body={"instances": to_rows(sample[:1])}) == 4
    finally:
        for client in clients:
            client.stop()
    assert "unhandled error" not in srv.output(), srv.output()[-2000:]
