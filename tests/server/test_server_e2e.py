"""End to end against the real servers: `mlapi serve` (uWSGI), `--server gunicorn` and `--server granian`."""
import copy
import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import pytest
import requests

from conftest import ROOT, VENV_BIN, models_env, to_rows
from model_doubles import ExplodingModel

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    subprocess.run([str(VENV_BIN / "mlapi"), "demo", "--out", str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture
def server_env(trained, demo_models, tmp_path):
    bug = tmp_path / "bug.joblib"
    joblib.dump(ExplodingModel(), bug)
    return {
        "MODELS": f"iris={demo_models / 'iris.joblib'},tickets={demo_models / 'tickets.joblib'},"
                  f"{models_env(trained, 'cancer', 'text', 'ridge')},bug={bug}",
        "PYTHONPATH": str(TESTS),  # so workers can unpickle the test's ExplodingModel class
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "UWSGI_PROCESSES": "2",
        "WEB_CONCURRENCY": "2",
    }


def check_predictions(url, trained, demo_models):
    iris = joblib.load(demo_models / "iris.joblib")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    names = list(iris.feature_names_in_)
    body = requests.post(f"{url}/predict", json={"instances": rows}).json()
    import pandas as pd
    frame = pd.DataFrame(rows, columns=names)
    assert body["predictions"] == iris.predict(frame).tolist() == ["setosa", "virginica"]
    assert body["probabilities"] == iris.predict_proba(frame).tolist()
    tickets = joblib.load(demo_models / "tickets.joblib")
    texts = ["I was charged twice for my plan", "the app crashes when I open the camera screen"]
    body = requests.post(f"{url}/models/tickets/predict", json={"instances": texts}).json()
    assert body["predictions"] == tickets.predict(texts).tolist() == ["billing", "mobile app"]
    for name in ("cancer", "text", "ridge"):
        _, estimator, sample = trained[name]
        instances = sample if name == "text" else to_rows(sample)
        body = requests.post(f"{url}/models/{name}/predict", json={"instances": instances}).json()
        assert body["predictions"] == estimator.predict(sample).tolist()


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_real_server_predicts_like_the_models(start_server, server_env, trained, demo_models, server):
    server_proc = start_server(server_env, args=("serve", "--server", server))
    url = server_proc.url
    assert requests.get(f"{url}/readyz").json()["ready"]  # bug model loads; it fails only when called
    check_predictions(url, trained, demo_models)
    # every class of error, each followed by a success on the same server
    errors = [
        requests.post(f"{url}/predict", data=b"{oops", headers={"Content-Type": "application/json"}),
        requests.post(f"{url}/predict", data=b"x", headers={"Content-Type": "text/plain"}),
        requests.post(f"{url}/predict", json={"instances": [[1, 2]]}),
        requests.post(f"{url}/models/nope/predict", json={"instances": [[1]]}),
        requests.get(f"{url}/predict"),
        requests.post(f"{url}/predict", data=b"[" + b"1," * 6_000_000 + b"1]", headers={"Content-Type": "application/json"}),
        requests.post(f"{url}/models/bug/predict", json={"instances": [[1, 2]]}),
    ]
    assert [r.status_code for r in errors] == [400, 415, 422, 404, 405, 413, 500]
    assert all(r.headers["Content-Type"] == "application/json" and r.json()["error"]["message"] for r in errors)
    check_predictions(url, trained, demo_models)
    output = server_proc.output()
    assert "boom: a bug in the model code" in output and "Traceback" in output  # logged with its traceback
    # models load once, in the master, before the workers fork
    assert output.count("loaded model iris:1") == 1


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
def test_keep_alive_clients_see_no_connection_errors_under_load(start_server, server_env, server):
    server_proc = start_server(server_env, args=("serve", "--server", server))
    url = f"{server_proc.url}/predict"
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}

    def client(_):
        session = requests.Session()  # keeps connections alive unless told to close
        statuses = [session.post(url, json=body).status_code for _ in range(60)]
        session.close()
        return statuses

    with ThreadPoolExecutor(16) as pool:
        statuses = [s for batch in pool.map(client, range(16)) for s in batch]
    assert statuses == [200] * 960


def test_a_model_that_fails_to_load_does_not_crash_loop(start_server, tmp_path):
    server_proc = start_server({"MODEL_URI": str(tmp_path / "missing.joblib")})
    time.sleep(1.0)
    assert server_proc.proc.poll() is None
    ready = requests.get(f"{server_proc.url}/readyz")
    assert ready.status_code == 503 and "not found" in ready.json()["failures"][0]["error"]
    assert requests.get(f"{server_proc.url}/healthz").status_code == 200
    assert server_proc.output().count("spawned uWSGI worker") >= 1 and "respawn" not in server_proc.output()


def test_sigterm_stops_the_server(start_server, server_env):
    server_proc = start_server(server_env)
    for _ in range(20):  # a few requests, so both workers are past their start-up
        assert requests.get(f"{server_proc.url}/healthz").status_code == 200
    started = time.time()
    # 0: the server drained and exited on its own (a server killed after the grace period gives -9)
    assert server_proc.stop() == 0, server_proc.output()[-3000:]
    assert time.time() - started < 10


def test_bad_models_setting_fails_fast(tmp_path):
    result = subprocess.run([str(VENV_BIN / "mlapi"), "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "MODELS": "no-uri-here", "PORT": "0"})
    assert result.returncode != 0 and "no-uri-here" in result.stdout + result.stderr


def test_the_server_starts_with_one_blas_thread_per_worker(start_server, server_env):
    server_proc = start_server(server_env)
    # `mlapi serve` execs the server, so the server is the same process, started with this env.
    environ = Path(f"/proc/{server_proc.proc.pid}/environ").read_bytes().split(b"\0")
    settings = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    assert settings["OMP_NUM_THREADS"] == settings["OPENBLAS_NUM_THREADS"] == "1"
    assert requests.get(f"{server_proc.url}/healthz").status_code == 200


def test_the_entry_point_hides_what_it_loaded_from_the_garbage_collector(trained, tmp_path):
    # app.wsgi is what uWSGI's master and gunicorn --preload import before forking: the
    # libraries and models it loads must be frozen out of the collector's sight, or each
    # worker's first full collection copies every page that holds one (80 MB of PSS, measured).
    # And no collection runs while it loads them (~0.09 s of a cold start, measured): the
    # count of collections does not move during the import, and collection is on afterwards.
    script = """
import gc, sys, traceback
import mlapi  # the package is light; app.wsgi's own body is what loads everything
def report(phase, info):  # where a collection ran, should one run
    if phase == "start":
        print("collection", info, "".join(traceback.format_stack()[-8:]), file=sys.stderr)
gc.callbacks.append(report)
# Compiled first, as an installed package is (pip writes the bytecode): compiling app/wsgi.py
# happens before its first line can turn the collector off, and is not what is measured.
import importlib.util
importlib.util.find_spec("mlapi.wsgi").loader.get_code("mlapi.wsgi")
before = [generation["collections"] for generation in gc.get_stats()]
import mlapi.wsgi
after = [generation["collections"] for generation in gc.get_stats()]
gc.callbacks.remove(report)
model = mlapi.wsgi.app.extensions["mlapi.services"].registry.get("cancer", None).estimator
print(gc.get_freeze_count() > 10_000, any(o is model for o in gc.get_objects()), before == after, gc.isenabled())
"""
    env = {"MODELS": models_env(trained, "cancer"), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == ["True", "False", "True", "True"], result.stderr[-3000:]


@pytest.mark.parametrize("served, server_pyarrow, pandas_loaded, pyarrow_loaded", [
    ("arrays", "0", False, False),  # models fitted on arrays: neither library
    ("all", "0", True, False),      # a model fitted on a DataFrame (iris): pandas, without pyarrow
    ("all", "1", True, True),       # SERVER_PYARROW=1: pandas as it comes, pyarrow and all
    ("columns", "0", True, False),  # a ColumnTransformer: its probe at load imports pandas, without pyarrow
    ("arrow data", "0", True, True),  # a pickle holding pandas 3 strings (pyarrow-backed): loads, with pyarrow
])
def test_the_server_loads_pandas_and_pyarrow_only_when_needed(start_server, server_env, trained, demo_models, tmp_path,
                                                               served, server_pyarrow, pandas_loaded, pyarrow_loaded):
    # scikit-learn imports pandas, and pandas pyarrow, whenever they are installed: 0.24 s of
    # a cold start and 34 MB the server does not use unless a model takes DataFrames. What the
    # master has mapped, its workers have too (they are forked from it after the models load).
    # Not server_env's `bug` model: unpickling it imports the tests' modules, and with them pandas.
    # "columns": the compiled path's probe hands the ColumnTransformer DataFrames while the model
    # loads, before the server's own pandas import; it had imported pyarrow with it (~0.07 s).
    # "arrow data": unpickling must not hide pyarrow (it did for a while: the model failed to load).
    from churn_model import churn_frame, train_churn

    churn = train_churn()
    joblib.dump(churn, tmp_path / "churn.joblib")
    import pandas as pd
    _, arrow_model, arrow_sample = trained["cancer"]
    arrow_model = copy.deepcopy(arrow_model)
    arrow_model.kept_names_ = pd.Index(["a", "b"])  # what a custom step keeps of X.columns
    assert "Arrow" in type(arrow_model.kept_names_.array).__name__  # pandas 3 with pyarrow installed
    joblib.dump(arrow_model, tmp_path / "arrow.joblib")
    models = {"arrays": models_env(trained, "cancer", "tree"),
              "all": f"iris={demo_models / 'iris.joblib'},tickets={demo_models / 'tickets.joblib'},"
                     f"{models_env(trained, 'cancer', 'text', 'ridge')}",
              "columns": f"churn={tmp_path / 'churn.joblib'}",
              "arrow data": f"arrow={tmp_path / 'arrow.joblib'}"}
    server_proc = start_server({**server_env, "MODELS": models[served], "SERVER_PYARROW": server_pyarrow})
    if served == "columns":
        frame, _ = churn_frame(rows=20, seed=3)
        body = requests.post(f"{server_proc.url}/predict", json={"instances": frame.to_dict("records")}).json()
        assert body["predictions"] == churn.predict(frame).tolist()
        assert body["probabilities"] == churn.predict_proba(frame).tolist()
        model = requests.get(f"{server_proc.url}/models").json()["models"][0]
        assert model["compute_path"]["features"]["path"] == "compiled", model
    elif served == "arrow data":
        body = requests.post(f"{server_proc.url}/models/arrow/predict", json={"instances": to_rows(arrow_sample)}).json()
        assert body["predictions"] == arrow_model.predict(arrow_sample).tolist(), body
    elif served == "arrays":
        for name in ("cancer", "tree"):
            _, estimator, sample = trained[name]
            body = requests.post(f"{server_proc.url}/models/{name}/predict", json={"instances": to_rows(sample)}).json()
            assert body["predictions"] == estimator.predict(sample).tolist()
    else:
        check_predictions(server_proc.url, trained, demo_models)
    mapped = Path(f"/proc/{server_proc.proc.pid}/maps").read_text()
    assert ("pandas/_libs" in mapped) == pandas_loaded
    assert ("libarrow" in mapped) == pyarrow_loaded


def test_a_pickle_that_needs_pyarrow_after_pandas_came_without_it_names_the_setting(trained, tmp_path):
    # A compiled ColumnTransformer's probe imports pandas without pyarrow; a model listed after
    # it whose pickle holds pandas 3 strings (pyarrow-backed) cannot load then: its failure says
    # SERVER_PYARROW=1, with which both load (and listed first, it loads anyway).
    import pandas as pd
    from churn_model import train_churn

    joblib.dump(train_churn(), tmp_path / "churn.joblib")
    _, model, _ = trained["cancer"]
    model = copy.deepcopy(model)
    model.kept_names_ = pd.Index(["a", "b"])
    joblib.dump(model, tmp_path / "arrow.joblib")
    script = """
import json
import mlapi.wsgi
registry = mlapi.wsgi.app.extensions["mlapi.services"].registry
print(json.dumps([getattr(entry, "reason", "ready") for versions in registry._versions.values()
                  for entry in versions.values()]))
"""
    churn_first = f"churn={tmp_path / 'churn.joblib'},arrow={tmp_path / 'arrow.joblib'}"
    arrow_first = f"arrow={tmp_path / 'arrow.joblib'},churn={tmp_path / 'churn.joblib'}"
    outcomes = {}
    for label, models, pyarrow in (("churn first", churn_first, "0"), ("arrow first", arrow_first, "0"),
                                   ("with the setting", churn_first, "1")):
        env = {"MODELS": models, "SERVER_PYARROW": pyarrow, "MODEL_CACHE_DIR": str(tmp_path / "cache"),
               "PATH": "/usr/bin:/bin", "LOG_LEVEL": "CRITICAL"}
        result = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True,
                                env=env, cwd=ROOT, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        outcomes[label] = json.loads(result.stdout.splitlines()[-1])
    assert outcomes["churn first"][0] == "ready" and "set SERVER_PYARROW=1" in outcomes["churn first"][1]
    assert outcomes["arrow first"] == ["ready", "ready"]
    assert outcomes["with the setting"] == ["ready", "ready"]


def test_the_master_does_not_import_rich_for_scikit_learns_progress_bar(trained, tmp_path):
    # scikit-learn 1.9's fit-time progress bar imports rich whenever it is installed (the test
    # tools bring it): 54 modules and ~2 MB in every server for a bar it never draws. Likewise
    # charset_normalizer, which numpy.f2py's Fortran reader takes when installed (SciPy imports
    # f2py; requests, which google-cloud-storage brings, installs it): ~12 ms of every start.
    # Both stay importable for whoever needs them later.
    import charset_normalizer  # noqa: F401  (installed with requests: google-cloud-storage's)
    import rich  # noqa: F401  (a test tool: schemathesis brings it; its absence must fail, not skip)
    script = """
import sys
import mlapi.wsgi
print("rich" in sys.modules, "charset_normalizer" in sys.modules)
import rich.progress, charset_normalizer
print("rich" in sys.modules, "charset_normalizer" in sys.modules)
"""
    env = {"MODELS": models_env(trained, "cancer"), "MODEL_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == ["False", "False", "True", "True"], result.stderr[-3000:]


def test_granian_replaces_a_worker_that_dies(start_server, server_env):
    server_proc = start_server({**server_env, "WEB_CONCURRENCY": "2"}, args=("serve", "--server", "granian"))
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    pid = server_proc.proc.pid

    def workers():
        return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def workers_once(condition, timeout: float) -> set[int]:
        """The workers as soon as `condition` holds of them, or as they are after `timeout`."""
        deadline = time.time() + timeout
        while not condition(current := workers()) and time.time() < deadline:
            time.sleep(0.1)
        return current

    # Ready means one worker answered; the other may still be forking.
    before = workers_once(lambda current: len(current) == 2, timeout=10)
    assert len(before) == 2
    os.kill(min(before), signal.SIGKILL)
    after = workers_once(lambda current: len(current) == 2 and min(before) not in current, timeout=20)
    assert len(after) == 2 and min(before) not in after  # a new worker in its place
    statuses = [requests.post(f"{server_proc.url}/predict", json=body, timeout=10).status_code for _ in range(40)]
    assert statuses == [200] * 40 and server_proc.proc.poll() is None


def test_granian_refuses_an_oversized_body_before_reading_it(start_server, server_env):
    server_proc = start_server(server_env, args=("serve", "--server", "granian"))
    with socket.create_connection(("127.0.0.1", server_proc.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n[[1,2")  # 5 of the 50 MB announced
        head = sock.recv(4096)  # answered now, not after 50 MB (the timeout would raise)
    assert head.startswith(b"HTTP/1.1 413 ") and b"application/json" in head
