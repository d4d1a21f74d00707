"""The Postman collection (mlapi.postman_collection.json): covers every route, and passes.

- Static: every route the Flask app registers has a request that exercises it (outside the
  "Errors" folder), and every request has a description and a test script with assertions;
  the collection asks for no command to be run by hand.
- Live: `make postman` itself (the README's command) starts a real uWSGI server with the demo
  models on a scratch store, adds the records the collection reads, runs newman and stops the
  server: it must report 0 failed assertions and leave nothing behind. Needs Node.js (the
  target runs `npm ci` through node-deps); without it the live tests skip locally and fail
  under CI=true, and `make postman` itself says what is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, free_port, service_missing

COLLECTION_PATH = ROOT / "mlapi.postman_collection.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
FOLDERS = ["Health", "Models", "API description (OpenAPI, Swagger UI)", "Predict (native)", "Features",
           "Single-input routes", "Feature store and batch (Pub/Sub)", "Errors"]


# ---- helpers ------------------------------------------------------------------------------------
def load_collection() -> dict:
    return json.loads(COLLECTION_PATH.read_text(encoding="utf-8"))


def walk_requests(items, folder=None):
    """Yield (folder name, item) for every request in the collection, at any depth."""
    for item in items:
        if "item" in item:
            yield from walk_requests(item["item"], folder or item["name"])
        else:
            yield folder, item


def request_path(item) -> str:
    url = item["request"]["url"]
    raw = url["raw"] if isinstance(url, dict) else url
    assert raw.startswith("{{baseUrl}}/"), f"{item['name']}: URL {raw!r} does not start with {{{{baseUrl}}}}/"
    path = raw[len("{{baseUrl}}"):].split("?", 1)[0]
    if isinstance(url, dict):  # the structured form must say the same as raw
        assert url.get("host") == ["{{baseUrl}}"], item["name"]
        assert "/" + "/".join(url.get("path", [])) == path, item["name"]
    return path


def rule_pattern(rule: str) -> re.Pattern:
    """/models/<name>/versions/<version>/predict → a regex matching /models/iris/versions/1/predict."""
    parts = re.split(r"(<[^>]+>)", rule)
    return re.compile("^" + "".join("[^/]+" if p.startswith("<") else re.escape(p) for p in parts) + "$")


def scripts(item, listen: str) -> str:
    return "\n".join("\n".join(event["script"]["exec"]) for event in item.get("event", [])
                     if event.get("listen") == listen)


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("postman-models")
    subprocess.run([str(VENV_BIN / "mlapi"), "demo", "--out", str(folder)], check=True, capture_output=True)
    return folder


def server_env(models: Path, scratch: Path) -> dict:
    """The demo models, plus every file the server may write kept in scratch (not the repo)."""
    return {"MODELS": f"iris={models / 'iris.joblib'},tickets={models / 'tickets.joblib'}",
            "MODEL_CACHE_DIR": str(scratch / "cache"),
            "FEATURE_STORE_URL": f"sqlite:///{scratch}/features.db",
            "PREDICTIONS_DB_URL": f"sqlite:///{scratch}/predictions.db"}


# ---- static checks ------------------------------------------------------------------------------
def test_collection_shape():
    collection = load_collection()
    assert collection["info"]["schema"] == SCHEMA
    assert collection["info"]["name"] and collection["info"]["description"]
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    assert variables["baseUrl"] == "http://localhost:8080"
    assert variables["maxRequestBytes"] == "10485760"  # the server's default MAX_REQUEST_BYTES
    assert [folder["name"] for folder in collection["item"]] == FOLDERS
    names = [item["name"] for _, item in walk_requests(collection["item"])]
    assert len(names) == len(set(names)), "request names must be unique (newman reports by name)"


def test_every_request_has_a_description_and_a_test_script():
    for folder, item in walk_requests(load_collection()["item"]):
        where = f"{folder} / {item['name']}"
        assert item["request"].get("description", "").strip(), f"{where}: no description"
        test = scripts(item, "test")
        assert "pm.test(" in test and ("pm.expect(" in test or "pm.response.to" in test), \
            f"{where}: no test script with assertions"
        if item["request"]["method"] == "POST":
            headers = {h["key"].lower(): h["value"] for h in item["request"]["header"]}
            assert "content-type" in headers and item["request"]["body"]["mode"] == "raw", where


def test_the_collection_asks_for_no_command_run_by_hand():
    # `make postman` seeds the store; a description that lists commands to type drifts from it.
    collection = load_collection()
    texts = [("the collection", collection["info"]["description"])]
    texts += [(f"folder {folder['name']}", folder.get("description", "")) for folder in collection["item"]]
    texts += [(item["name"], item["request"]["description"]) for _, item in walk_requests(collection["item"])]
    for where, text in texts:
        assert "```" not in text and "mlapi features" not in text and "npx " not in text, where
    assert "`make postman`" in collection["info"]["description"]


def test_every_route_has_a_request(demo_models, tmp_path):
    from mlapi import create_app
    from mlapi.config import Settings

    app = create_app(Settings.from_env(server_env(demo_models, tmp_path)))
    requests_ = [(folder, item["request"]["method"], request_path(item), item["name"])
                 for folder, item in walk_requests(load_collection()["item"])]
    routes = []
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's built-in static files, not part of the API
            continue
        pattern = rule_pattern(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, pattern))
            # an example that succeeds: error requests alone do not cover a route
            if not any(m == method and pattern.match(path) for folder, m, path, _ in requests_ if folder != "Errors"):
                missing.append(f"{method} {rule.rule}")
    assert not missing, f"routes without a request in the collection: {missing}"
    # ...and no request outside "Errors" aims at a path the app does not route (a typo would 404)
    stray = [f"{m} {path} ({name})" for folder, m, path, name in requests_
             if folder != "Errors" and not any(rm == m and p.match(path) for rm, p in routes)]
    assert not stray, f"requests that match no route: {stray}"


def test_route_patterns_match_concrete_paths():
    assert rule_pattern("/models/<name>/versions/<version>/predict").match("/models/iris/versions/1/predict")
    assert not rule_pattern("/models/<name>/predict").match("/models/iris/versions/1/predict")
    assert rule_pattern("/model/<name>/text_to_prediction").match("/model/tickets/text_to_prediction")
    assert not rule_pattern("/predict").match("/predictx")


# ---- the live run: make postman ------------------------------------------------------------
POSTMAN_SUMMARY = re.compile(r"^postman: (\d+) assertions in (\d+) requests, (\d+) failed$", re.M)


def make_postman(*variables: str, path: str | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`make postman` in the checkout, with this test run's virtualenv. `-o` takes the install
    stamp as up to date: the suite runs in an installed virtualenv, and a setup.py edited since
    must not turn this test into a reinstall. ENV_FILE=/dev/null: a developer's .env stays out."""
    if not shutil.which("make"):
        service_missing("make is not installed")
    venv = VENV_BIN.parent
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run([shutil.which("make"), "--no-print-directory", "-o", f"{venv}/.installed-gcs", "postman",
                           f"VENV={venv}", "ENV_FILE=/dev/null", *variables],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def node():
    if not (shutil.which("node") and shutil.which("npm")):
        service_missing("Node.js/npm is not installed: newman cannot run the Postman collection "
                        "(apt-get install nodejs npm; make postman then installs newman with npm ci)")


def scratch_of(output: str) -> Path:
    """The scratch directory make postman announced ("... (log: <dir>/server.log)")."""
    match = re.search(r"\(log: (/\S+)/server\.log\)", output)
    assert match, output
    return Path(match.group(1))


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_make_postman_runs_the_collection_green_and_cleans_up(node, tmp_path):
    report = tmp_path / "newman.json"
    port = free_port()
    result = make_postman(f"POSTMAN_REPORT={report}", f"POSTMAN_PORT={port}")
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"make postman failed ({result.returncode}):\n{output[-20000:]}"
    assert "imported 4 rows into features (table created)" in result.stdout  # the records, seeded
    assert f"on http://127.0.0.1:{port} " in result.stdout

    # Every request ran and every one of them asserted something: a script that silently did
    # not run would otherwise look like a pass.
    run = json.loads(report.read_text(encoding="utf-8"))["run"]
    expected = [item["name"] for _, item in walk_requests(load_collection()["item"])]
    # (a request whose test script re-sends with pm.sendRequest is listed once per send)
    executed = list(dict.fromkeys(execution["item"]["name"] for execution in run["executions"]))
    assert executed == expected, output
    for execution in run["executions"]:
        assert execution.get("assertions"), f"{execution['item']['name']}: no assertions ran\n{output}"
    assertions = run["stats"]["assertions"]
    assert assertions["failed"] == 0 and assertions["total"] > 150 and not run["failures"], output
    assert run["stats"]["testScripts"]["failed"] == 0 and run["stats"]["prerequestScripts"]["failed"] == 0
    # ...and the line the target ends with says the same
    summary = POSTMAN_SUMMARY.search(result.stdout)
    assert summary and summary.groups() == (str(assertions["total"]), str(run["stats"]["requests"]["total"]), "0")

    # the server is stopped and its scratch store removed
    assert not scratch_of(result.stdout).exists()
    assert port_is_closed(port)


def test_make_postman_fails_clearly_when_its_server_cannot_start(node, tmp_path):
    # The port is taken (listening, never answering): uWSGI cannot bind, so the server dies;
    # the target says so with the server's log, fails, and still removes its scratch directory.
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = make_postman(f"POSTMAN_PORT={port}", timeout=300)
    assert result.returncode != 0
    assert f"the server did not become ready on port {port}" in result.stderr
    assert not scratch_of(result.stdout).exists()


def test_make_postman_without_node_says_what_is_missing(tmp_path):
    empty = tmp_path / "no-tools"  # a PATH without node and npm (make runs /bin/bash by path)
    empty.mkdir()
    result = make_postman(path=str(empty), timeout=300)
    assert result.returncode != 0
    assert "needs Node.js and npm" in result.stderr, result.stderr
