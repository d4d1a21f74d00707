"""Metrics across worker processes, Cloud Logging JSON lines, X-Request-ID."""
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import models_env


def metric_value(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_metrics_sum_every_worker(start_server, trained, tmp_path, server):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale from a previous run")
    server = start_server({"MODELS": models_env(trained, "cancer", "text"), "UWSGI_PROCESSES": "2",
                           "WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                          args=("serve", "--server", server))
    rows = trained["cancer"][2].tolist()

    def writers():
        return {p.stem.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}

    # Eight at a time until both workers have served some: the server is ready when one
    # worker answers, and a worker forked a little later (gunicorn spawns them apart) can miss
    # a short burst; one request after another, a single worker can also win every accept.
    sent, deadline = 0, time.monotonic() + 20
    with ThreadPoolExecutor(8) as pool:
        while sent < 30 or (len(writers() - {"999999"}) < 2 and time.monotonic() < deadline):
            statuses = list(pool.map(lambda _: requests.post(f"{server.url}/models/cancer/predict",
                                                             json={"instances": rows}).status_code, range(10)))
            assert statuses == [200] * 10
            sent += 10
    for _ in range(5):
        requests.post(f"{server.url}/models/cancer/predict", json={"instances": [[1.0]]})
    for _ in range(4):
        requests.post(f"{server.url}/model/text/text_to_prediction", json={"text": "refund please"})
    text = requests.get(f"{server.url}/metrics").text
    assert len(writers()) >= 2 and "999999" not in writers()  # both workers counted; stale files cleared
    assert metric_value(text, "mlapi_requests_total", route="/models/<name>/predict", model="cancer", status="200") == sent
    assert metric_value(text, "mlapi_requests_total", route="/models/<name>/predict", status="422") == 5
    assert metric_value(text, "mlapi_prediction_rows_total", model="cancer", version="1") == sent * len(rows)
    assert metric_value(text, "mlapi_request_duration_seconds_count", route="/models/<name>/predict") == sent + 5
    hits = metric_value(text, "mlapi_cache_requests_total", result="hit")
    misses = metric_value(text, "mlapi_cache_requests_total", result="miss")
    assert hits + misses == 4 and 1 <= misses <= 2  # one miss per worker at most (per-process cache)


def test_metrics_token(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), METRICS_TOKEN="s3cret").test_client()
    denied = client.get("/metrics")
    assert denied.status_code == 401 and "Bearer" in denied.get_json()["error"]["message"]
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and b"mlapi_requests_total" in allowed.data


def test_request_id_is_echoed_or_generated(client):
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id <script>" + "x" * 200})
    assert len(generated.headers["X-Request-ID"]) == 32 and "<" not in generated.headers["X-Request-ID"]


@pytest.mark.parametrize("server", ["uwsgi", "granian"])
def test_json_logs_in_cloud_logging_format(start_server, trained, server):
    server_name = server
    server = start_server({"MODELS": models_env(trained, "cancer"), "ACCESS_LOG": "1", "GOOGLE_CLOUD_PROJECT": "proj-1"},
                          args=("serve", "--server", server_name))
    secret_body = {"instances": [[123456.789] * 30]}
    headers = {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1", "X-Request-ID": "req-42"}
    assert requests.post(f"{server.url}/predict", json=secret_body, headers=headers).status_code == 200
    server.stop()
    entries = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("httpRequest", {}).get("requestUrl") == "/predict"]
    assert len(access) == 1
    entry = access[0]
    assert entry["severity"] == "INFO" and entry["request_id"] == "req-42"
    assert entry["logging.googleapis.com/trace"] == "projects/proj-1/traces/105445aa7843bc8bf206b12000100000"
    assert entry["httpRequest"]["status"] == 200 and entry["httpRequest"]["requestMethod"] == "POST"
    assert any(e["message"].startswith("loaded model cancer:1") for e in entries)
    assert "123456.789" not in server.output()  # no request bodies in logs
    if server_name == "granian":  # granian's own lines (start, workers, shutdown) are JSON too
        lines = [line for line in server.output().splitlines() if line.strip()]
        assert lines and all(line.startswith("{") for line in lines), lines
        assert any(e["logger"].startswith("_granian") for e in entries)


# A record's first line as the text format writes it, which a client tries to pass off as its own.
FORGED = "2026-12-02 06:00:00,000 INFO mlapi.access [pid 1] GET /admin 200"


def test_text_log_format(start_server, trained):
    server = start_server({"MODELS": models_env(trained, "cancer"), "LOG_FORMAT": "text", "ACCESS_LOG": "1"})
    # A URL whose %0d%0a uWSGI decodes into PATH_INFO: its access line stays one line.
    assert requests.get(server.url + "/x%0d%0a" + FORGED.replace(" ", "%20")).status_code == 404
    server.stop()
    lines = server.output().splitlines()
    line = next(line for line in lines if "loaded model cancer:1" in line)
    assert " INFO mlapi.serving.loading [pid " in line and not line.startswith("{")
    assert not any(line.startswith(FORGED[:24]) for line in lines)
    assert any(" INFO mlapi.access [pid " in line and "GET /x\\r\\n" + FORGED + " 404" in line for line in lines)


# ---- what a client sends cannot forge or falsify a log line ----------------------------------
def app_log() -> io.StringIO:
    """What the app's log handler (configured by create_app) writes from now on. A buffer of
    our own, not capsys's: that one is closed after the test, and the handler outlives it."""
    import logging

    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_mlapi_handler", False))
    buffer = io.StringIO()
    handler.setStream(buffer)
    return buffer


def test_a_url_cannot_forge_a_text_log_line(make_app, trained):
    # %0d%0a in a URL is a line break in PATH_INFO, which the access line and a 404's log repeat.
    client = make_app(MODELS=models_env(trained, "cancer"), LOG_FORMAT="text", ACCESS_LOG="1").test_client()
    log = app_log()
    path = "/x%0d%0a" + FORGED.replace(" ", "%20") + "%1b[2J"
    assert client.get(path).status_code == 404
    lines = log.getvalue().splitlines()
    assert not any(line.startswith(FORGED[:24]) for line in lines), lines
    [access] = [line for line in lines if " mlapi.access " in line]
    assert "GET /x\\r\\n" + FORGED + "\\x1b[2J 404" in access


def test_a_traceback_in_a_text_log_is_indented_whatever_its_message_says():
    import logging

    from mlapi.logs import TextFormatter

    try:
        raise ValueError("bad value\n" + FORGED)
    except ValueError:
        record = logging.LogRecord("mlapi.x", logging.ERROR, __file__, 1, "failed on %s", ("a\nb\u2028c\x85",),
                                   exc_info=__import__("sys").exc_info())
    first, *rest = TextFormatter(None).format(record).split("\n")
    assert first.endswith(" ERROR mlapi.x [pid %d] failed on a\\nb\\u2028c\\x85" % record.process)
    assert rest[0] == "    Traceback (most recent call last):" and rest[-1] == "    " + FORGED
    assert all(line.startswith("    ") for line in rest)


TRACE = "105445aa7843bc8bf206b12000100000"


@pytest.mark.parametrize("header, trace", [
    (f"{TRACE}/1;o=1", TRACE),
    (f"{TRACE}/18446744073709551615;o=0", TRACE),
    (f"{TRACE}/1", TRACE),
    (TRACE.upper(), TRACE),
    (f"{TRACE}/1;o=1\n{{\"severity\": \"ERROR\"}}", None),
    (f"{TRACE}/1;o=2", None),
    (f"{TRACE}/x;o=1", None),
    (f"{TRACE[:-1]}/1;o=1", None),
    ("projects/other/traces/" + TRACE, None),
    ("0" * 32 + "/1;o=1", None),
    ("../../x/1;o=1", None),
    ("a" * 10_000, None),
])
def test_only_a_well_formed_trace_context_reaches_the_logs(make_app, trained, header, trace):
    client = make_app(MODELS=models_env(trained, "cancer"), ACCESS_LOG="1", GOOGLE_CLOUD_PROJECT="proj-1").test_client()
    log = app_log()
    environ = {"HTTP_X_CLOUD_TRACE_CONTEXT": header}  # as a server passes it on, newline and all
    assert client.get("/healthz", environ_overrides=environ).status_code == 200
    [entry] = [json.loads(line) for line in log.getvalue().splitlines() if '"httpRequest"' in line]
    expected = f"projects/proj-1/traces/{trace}" if trace else None
    assert entry.get("logging.googleapis.com/trace") == expected


@pytest.mark.parametrize("given, kept", [
    ("req-42", True), ("a.b_c:d-1", True), ("x" * 128, True),
    ("x" * 129, False), ("req-42\n", False), ("req 42", False), ("req-42\r\nX-Evil: 1", False), ("", False),
])
def test_a_request_id_is_kept_only_in_its_own_shape(given, kept):
    from mlapi.logs import begin_request, current_request_id, end_request

    token = begin_request(given, None)
    try:
        request_id = current_request_id()
    finally:
        end_request(token)
    assert (request_id == given) is kept
    assert kept or len(request_id) == 32
