"""The Postman collection (mlapi.postman_collection.json): covers every route, and passes.

- Static: every route the Flask app registers has a request that exercises it (outside the
  "Errors" folder), and every request has a description and a test script with assertions.
- Live: newman runs the whole collection against a real `mlapi serve` (uWSGI, two workers)
  serving the demo models, with a few records added to its feature store (SQLite in tmp_path)
  by `mlapi features add` for the predict-by-id and Pub/Sub requests. Needs Node.js: `npm ci` installs newman from package-lock.json if
  node_modules lacks it; without Node.js/npm the test skips locally and fails under CI=true.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, service_missing

COLLECTION_PATH = ROOT / "mlapi.postman_collection.json"
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
FOLDERS = ["Health", "Models", "Predict (native)", "Features", "Single-input routes",
           "Feature store and batch (Pub/Sub)", "Errors"]
MAX_REQUEST_BYTES = 65536  # small, so the collection's 413 request is small too


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


# ---- the live run -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def newman() -> Path:
    if not NEWMAN.exists():
        npm = shutil.which("npm")
        if not (npm and shutil.which("node")):
            service_missing("Node.js/npm is not installed: newman cannot run the Postman collection "
                            "(apt-get install nodejs npm, then npm ci)")
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0 or not NEWMAN.exists():
            pytest.fail(f"npm ci failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return NEWMAN


# The records the "Feature store and batch (Pub/Sub)" folder reads, in the order they are added:
# all share one table (FEATURE_TABLE), created with the first record's columns, so the tabular
# record comes first and names the text column too. Text records get ids 1, 2, 3.
FEATURE_RECORDS = [
    ["--json", json.dumps({"id": "iris-1", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                           "petal_width": 0.2, "text": None})],
    ["I was charged twice for my plan"],                  # 1 → billing
    ["the app crashes when I open the camera screen"],    # 2 → mobile app
    ["I cannot log in to my account"],                    # 3 → account access
]


def stock_feature_store(env: dict) -> list[str]:
    """Add FEATURE_RECORDS with `mlapi features add` (as a user would); returns the ids printed."""
    # SOURCE_DB_URL would send `features add` to an operational database instead of the store
    full_env = {k: v for k, v in {**os.environ, **env}.items() if k != "SOURCE_DB_URL"}
    ids = []
    for args in FEATURE_RECORDS:
        result = subprocess.run([str(VENV_BIN / "mlapi"), "features", "add", *args], env=full_env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"mlapi features add {args} failed:\n{result.stdout}\n{result.stderr}"
        ids.append(result.stdout.strip())
    return ids


def test_newman_runs_the_collection_green(newman, demo_models, start_server, tmp_path):
    env = server_env(demo_models, tmp_path)  # FEATURE_STORE_URL, PREDICTIONS_DB_URL: SQLite in tmp_path
    assert stock_feature_store(env) == ["iris-1", "1", "2", "3"]
    server = start_server({
        **env,
        "MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        "UWSGI_PROCESSES": "2",  # more than one worker: the per-worker cache path is exercised
    })
    report = tmp_path / "newman.json"
    command = [str(newman), "run", str(COLLECTION_PATH),
               "--env-var", f"baseUrl={server.url}",
               "--env-var", f"maxRequestBytes={MAX_REQUEST_BYTES}",
               "--reporters", "cli,json", "--reporter-json-export", str(report),
               "--color", "off", "--timeout-request", "30000"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}"
    if result.returncode != 0:
        print(output)
        print("---- server log ----\n" + server.output()[-5000:])
    assert result.returncode == 0, f"newman failed (exit {result.returncode}):\n{output}"

    # Every request ran and every one of them asserted something: a script that silently did
    # not run would otherwise look like a pass.
    run = json.loads(report.read_text(encoding="utf-8"))["run"]
    expected = [item["name"] for _, item in walk_requests(load_collection()["item"])]
    # (a request whose test script re-sends with pm.sendRequest is listed once per send)
    executed = list(dict.fromkeys(execution["item"]["name"] for execution in run["executions"]))
    assert executed == expected, output
    for execution in run["executions"]:
        assert execution.get("assertions"), f"{execution['item']['name']}: no assertions ran\n{output}"
    assert run["stats"]["assertions"]["failed"] == 0 and run["stats"]["assertions"]["total"] > 150
    assert run["stats"]["testScripts"]["failed"] == 0 and run["stats"]["prerequestScripts"]["failed"] == 0
    assert not run["failures"], output
