"""`mlapi serve FILE ...`: model files named on the command line, served by each server, and the one
line every server prints once it is ready (app/server/ready.py)."""
import json
import re
import subprocess
import time

import joblib
import pytest
import requests

from churn_model import churn_frame, train_churn
from conftest import ROOT, VENV_BIN
from mlapi.naming import models_value, parse_models
from mlapi.errors import ConfigurationError

SHA = "cd" * 32


@pytest.fixture
def model_files(tmp_path, trained):
    """churn.joblib (a ColumnTransformer pipeline), text.joblib and a file that is no model."""
    folder = tmp_path / "x"
    folder.mkdir()
    joblib.dump(train_churn(), folder / "churn.joblib")
    joblib.dump(trained["text"][1], folder / "text.joblib")
    (folder / "bad.joblib").write_bytes(b"not a pickle")
    return folder


def messages(output: str) -> list[str]:
    """Each line of a server's output as a reader sees it: a JSON log line's message, any
    other line (uWSGI's own) as it is."""
    seen = []
    for line in output.splitlines():
        try:
            seen.append(json.loads(line)["message"])
        except (ValueError, TypeError, KeyError):
            seen.append(line)
    return seen


def wait_for(server, line: str, timeout: float = 15) -> list[str]:
    """The server's output lines once `line` is among them, and anything that would follow
    it has had a second to appear."""
    deadline = time.time() + timeout
    while line not in messages(server.output()):
        if time.time() > deadline:
            raise AssertionError(f"no line {line!r} in:\n{server.output()[-3000:]}")
        time.sleep(0.1)
    time.sleep(1)
    return messages(server.output())


@pytest.mark.parametrize("server, env, how", [
    ("uwsgi", {}, "uwsgi, 2 workers"),
    ("gunicorn", {}, "gunicorn, 2 workers"),
    ("granian", {}, "granian, 2 workers"),
    # micro-batching picks granian, with threads to hold the requests a batch merges
    (None, {"MAX_BATCH_SIZE": "8"}, "granian, 2 workers, 32 threads each, micro-batching up to 8 rows"),
])
def test_files_on_the_command_line_are_served_and_the_server_says_so_once_ready(
        start_server, model_files, trained, tmp_path, server, env, how):
    churn, text, bad = model_files / "churn.joblib", model_files / "text.joblib", model_files / "bad.joblib"
    args = ["serve", str(churn), str(text), str(bad)] + (["--server", server] if server else [])
    proc = start_server({"MODELS": f"iris={tmp_path}/not-served.joblib", "MODEL_CACHE_DIR": tmp_path / "cache",
                         "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2", **env}, args=args)

    ready = f"serving churn:1, text:1 on http://localhost:{proc.port} ({how})"
    # granian's workers log their own start as they begin serving, after the main process spawned them
    lines = [line for line in wait_for(proc, ready) if not re.fullmatch(r"Started worker-\d+", line)]
    # the line, once (not once per worker), then the model that failed to load, and nothing after
    assert lines.count(ready) == 1
    assert lines[-2] == ready, lines[-10:]
    assert lines[-1].startswith(f"NOT serving bad:1: could not unpickle {bad}")
    assert "mlapi serve: serving the model files named on the command line; MODELS ignored" in lines

    model = joblib.load(churn)
    rows, _ = churn_frame(rows=5, seed=1)
    body = requests.post(f"{proc.url}/models/churn/predict", json={"instances": rows.to_dict(orient="records")}).json()
    assert body["predictions"] == model.predict(rows).tolist()
    texts = trained["text"][2]
    body = requests.post(f"{proc.url}/models/text/predict", json={"instances": texts}).json()
    assert body["predictions"] == trained["text"][1].predict(texts).tolist()
    assert requests.get(f"{proc.url}/models/iris").status_code == 404  # MODELS is replaced, not added to
    refused = requests.post(f"{proc.url}/models/bad/predict", json={"instances": [[1.0]]})
    assert refused.status_code == 503 and "could not unpickle" in refused.json()["error"]["message"]


def test_the_ready_line_is_the_last_line_of_a_models_setting_start_too(start_server, trained, tmp_path):
    # `make run`'s case: MODELS, uWSGI. uWSGI's own last start-up line reads like a shutdown
    # ("gracefully_kill_them_all"): the ready line comes after it.
    proc = start_server({"MODELS": f"cancer={trained['cancer'][0]},ridge={trained['ridge'][0]}",
                         "MODEL_CACHE_DIR": tmp_path / "cache", "UWSGI_PROCESSES": "1"}, args=("serve",))
    ready = f"serving cancer:1, ridge:1 on http://localhost:{proc.port} (uwsgi, 1 worker)"
    lines = wait_for(proc, ready)
    assert lines[-1] == ready and lines.count(ready) == 1
    assert any("gracefully_kill_them_all" in line for line in lines[:-1])
    # a log line like the others: one JSON object under the default LOG_FORMAT, severity INFO
    last = json.loads(proc.output().splitlines()[-1])
    assert last["severity"] == "INFO" and last["logger"] == "mlapi.server.ready"


def serve(*args, **env):
    return subprocess.run([str(VENV_BIN / "mlapi"), "serve", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": "/tmp", **env})


def test_a_missing_file_is_one_line_and_exit_2_before_any_server_starts(model_files, tmp_path):
    missing = tmp_path / "x" / "nope.joblib"
    started = time.time()
    result = serve(str(model_files / "churn.joblib"), str(missing))
    assert result.returncode == 2
    assert result.stderr == f"mlapi: no such model file: {missing}\n" and result.stdout == ""
    assert time.time() - started < 10  # no server, no model loaded

    unnamed = tmp_path / "my model.joblib"
    unnamed.write_bytes(b"x")
    result = serve(str(unnamed))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "model name 'my model' must be letters" in result.stderr and "(name it: NAME=PATH)" in result.stderr
    assert serve(f"mine={unnamed}", "--dry-run").returncode == 0


def test_command_line_entries_follow_the_models_grammar_plus_bare_paths():
    specs = parse_models(["a/churn.joblib", "churn=b.joblib", "spam:v7=c.pkl", f"gs://bucket/m.joblib#sha256={SHA}",
                          "yz=x/y,z.joblib"], source="the command line")
    assert [(s.name, s.version, s.uri, s.sha256) for s in specs] == [
        ("churn", "1", "a/churn.joblib", None),  # named after the file; versions numbered in order
        ("churn", "2", "b.joblib", None),
        ("spam", "v7", "c.pkl", None),
        ("m", "1", "gs://bucket/m.joblib", SHA),
        ("yz", "1", "x/y,z.joblib", None),  # a list is not split at commas...
    ]
    with pytest.raises(ConfigurationError, match="must not contain one"):
        models_value(specs)  # ...but MODELS is, so such a path cannot reach the server
    # what `mlapi serve` hands the server reads back as the same models
    assert parse_models(models_value(specs[:4])) == specs[:4]
    with pytest.raises(ConfigurationError, match="the command line lists churn:2 twice"):
        parse_models(["churn:2=old/churn.joblib", "churn.joblib", "new/churn.joblib"], source="the command line")
    with pytest.raises(ConfigurationError):
        parse_models("a/churn.joblib")  # MODELS itself still needs name=URI

