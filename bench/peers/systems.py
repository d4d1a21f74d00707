"""The systems the peer benchmark serves, how each is started and asked, and the cells it is
loaded with (bench.py runs them; see README.md here).

name -> dict(cmd=fn(port, model) -> (argv, cwd), path=fn(model), fmt=body format,
             extract=fn(json) -> predictions | None for floors, models=tuple,
             extract_proba=fn(json) -> probabilities (systems that send them), uncapped=True:
             without THREAD_CAPS, env=fn(port, model) -> extra environment, before=True: served
             from $MLAPI_BEFORE_CHECKOUT)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS = os.environ.get("ANCHORS_VENVS", "/tmp/anchors-venvs")
WORK = os.environ.get("ANCHORS_WORK", "/tmp/anchors-work")

CELLS = {  # name: (body kind, wrk connections)
    "single_c1": ("single", 1),
    "single_c16": ("single", 16),
    "batch100_c4": ("batch", 4),
    "single_c64": ("single", 64),
}
# The product under test: `mlapi serve` from the checkout in $MLAPI_CHECKOUT (default: the
# repository this benchmark lives in, bench/peers/../..), with the checkout's own virtualenv
# ($MLAPI_BIN, default .venv/bin/mlapi). Only the console script is run, from the checkout
# directory: nothing here imports the product's Python package, whatever it is called.
MLAPI_CHECKOUT = os.path.abspath(os.environ.get("MLAPI_CHECKOUT") or os.path.join(HERE, "..", ".."))
MLAPI_BIN = os.environ.get("MLAPI_BIN") or os.path.join(MLAPI_CHECKOUT, ".venv", "bin", "mlapi")
# "Before the change": the same systems served from a second checkout (an older commit with its
# own virtualenv, `make install-dev` there), $MLAPI_BEFORE_CHECKOUT; the *_before systems need it.
MLAPI_BEFORE_CHECKOUT = (os.path.abspath(os.environ["MLAPI_BEFORE_CHECKOUT"])
                         if os.environ.get("MLAPI_BEFORE_CHECKOUT") else None)
MLAPI_BEFORE_BIN = os.path.join(MLAPI_BEFORE_CHECKOUT, ".venv", "bin", "mlapi") if MLAPI_BEFORE_CHECKOUT else None
BATCH_ENV = {"MAX_BATCH_SIZE": "64", "MAX_BATCH_WAIT_MS": "2"}


def mlapi_env(port, model, extra=None):
    env = {"PORT": str(port), "MODELS": f"{model}={WORK}/models/{model}.joblib"}
    env.update(extra or {})
    return env
MODELS = ("m1", "m2", "m3")  # M3: DataFrame records (bench/peers/m3.py)
# One OpenMP/BLAS thread per server process for every system, as mlapi runs (its launcher sets
# the same): two processes of HistGradientBoosting's OpenMP threads on two cores collapse (the
# minimal handler served M3 at 7-23 req/s at c16, with errors, without it; issue 18).
# flask_uwsgi_p2t1_uncapped shows that collapse.
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BASE_ENV = {
    **THREAD_CAPS,
    "PYTHONUNBUFFERED": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "BENTOML_HOME": f"{WORK}/bentoml_home",
}


CLOSE = ("--add-header", "Connection: close")


def uwsgi_cmd(port, threads=1, wsgi="flask_app.py", http="--http-socket", extra=CLOSE):
    # Plain --http-socket answers HTTP/1.1 without "Connection: close" and then
    # closes the socket, which wrk (and any keep-alive client) sees as a read error
    # on the next request; so by default we add that header and clients reconnect
    # cleanly.  --http11-socket keeps connections alive in the (sync) worker, which
    # pins a worker per connection: at c16 only 2 connections get served.
    return [f"{VENVS}/base/bin/uwsgi", "--master", "--processes", "2",
            "--threads", str(threads), http, f"127.0.0.1:{port}",
            "--wsgi-file", os.path.join(HERE, wsgi), "--need-app",
            "--disable-logging", "--die-on-term", "--listen", "128", *extra]


def mlserver_cmd(port, model):
    d = f"{WORK}/mlserver_run/{model}"
    os.makedirs(f"{d}/{model}", exist_ok=True)
    with open(f"{d}/settings.json", "w") as f:
        json.dump({"host": "127.0.0.1", "http_port": port, "grpc_port": port + 1,
                   "metrics_port": port + 2, "parallel_workers": 2, "debug": False}, f)
    with open(f"{WORK}/mlserver/{model}/model-settings.json") as src, \
            open(f"{d}/{model}/model-settings.json", "w") as dst:
        dst.write(src.read())
    return [f"{VENVS}/mlserver/bin/mlserver", "start", d], d


def mlapi_probabilities(answer):
    """mlapi's class probabilities, one list per row (checked against predict_proba)."""
    return answer["probabilities"]


def mlflow_cmd(p, m):
    """`mlflow models serve` of model m on port p, 2 workers, from the prepared MLflow model."""
    return ([f"{VENVS}/mlflow/bin/mlflow", "models", "serve", "-m", f"{WORK}/mlflow/{m}",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p), "-w", "2"], WORK)


SYSTEMS = {
    "flask_uwsgi_p2t1": dict(
        desc="Flask + uWSGI --http-socket (+'Connection: close' header), 2 processes x 1 "
             "thread (reference)",
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_p2t1_uncapped": dict(
        desc="as the reference, without the one-native-thread cap (OpenMP/BLAS pick their own "
             "thread counts: a thread per core in each of the 2 processes)", uncapped=True,
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_http11_p2t1": dict(
        desc="Flask + uWSGI --http11-socket (keep-alive in the worker), 2 processes x 1 thread",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, http="--http11-socket", extra=()), HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "flask_uwsgi_httpsock_p2t1": dict(
        desc="Flask + uWSGI plain --http-socket (closes without a Connection header)",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, extra=()), HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "flask_uwsgi_p2t4": dict(
        desc="Flask + uWSGI --http-socket (+'Connection: close'), 2 processes x 4 threads",
        cmd=lambda p, m: (uwsgi_cmd(p, 4), HERE), path=lambda m: "/predict", fmt="flask",
        extract=lambda j: j["predictions"]),
    "flask_uwsgi_http_p2t1": dict(
        desc="Flask + uWSGI --http router process (+--http-keepalive), 2 processes x 1 thread",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, http="--http", extra=("--http-keepalive",)), HERE),
        path=lambda m: "/predict",
        fmt="flask", extract=lambda j: j["predictions"]),
    "flask_gunicorn_w2": dict(
        desc="Flask + gunicorn -w 2 sync",
        cmd=lambda p, m: ([f"{VENVS}/base/bin/gunicorn", "-w", "2", "-k", "sync",
                           "-b", f"127.0.0.1:{p}", "flask_app:app"], HERE),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"]),
    "mlflow_w2": dict(
        desc="mlflow models serve --env-manager local -w 2 (inputs=tensor JSON; M3: dataframe_records)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow", extract=lambda j: j["predictions"]),
    "mlflow_w2_connclose": dict(
        desc="mlflow models serve -w 2, client sends 'Connection: close' (sidesteps the "
             "uvicorn --workers TCP_NODELAY/keep-alive 40 ms stall)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow", extract=lambda j: j["predictions"],
        conn_close=True),
    "mlflow_w2_df": dict(
        desc="mlflow models serve -w 2 with dataframe_split JSON (pandas path)",
        cmd=mlflow_cmd,
        path=lambda m: "/invocations", fmt="mlflow_df", extract=lambda j: j["predictions"]),
    "mlserver_pw2": dict(
        desc="MLServer + mlserver-sklearn, parallel_workers=2, V2 /infer",
        cmd=mlserver_cmd, path=lambda m: f"/v2/models/{m}/infer", fmt="mlserver",
        extract=lambda j: j["outputs"][0]["data"]),
    "bentoml_w2": dict(
        desc="BentoML service(workers=2), np.ndarray api (M3: pd.DataFrame api, records)",
        cmd=lambda p, m: ([f"{VENVS}/bentoml/bin/bentoml", "serve",
                           "bento_service:Classifier", "--host", "127.0.0.1",
                           "--port", str(p)], HERE),
        path=lambda m: "/predict_records" if m == "m3" else "/predict", fmt="bentoml", extract=lambda j: j),
    "mlapi": dict(
        desc="mlapi serve (the product, default settings) from $MLAPI_CHECKOUT",
        cmd=lambda p, m: ([MLAPI_BIN, "serve"], MLAPI_CHECKOUT), env=mlapi_env,
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_before": dict(
        desc="as mlapi, served from $MLAPI_BEFORE_CHECKOUT (before the change)", before=True,
        cmd=lambda p, m: ([MLAPI_BEFORE_BIN, "serve"], MLAPI_BEFORE_CHECKOUT), env=mlapi_env,
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_batch": dict(
        desc="mlapi serve with adaptive micro-batching asked for (MAX_BATCH_SIZE=64, MAX_BATCH_WAIT_MS=2)",
        cmd=lambda p, m: ([MLAPI_BIN, "serve"], MLAPI_CHECKOUT),
        env=lambda p, m: mlapi_env(p, m, BATCH_ENV),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_batch_before": dict(
        desc="as mlapi_batch, served from $MLAPI_BEFORE_CHECKOUT (before the change)", before=True,
        cmd=lambda p, m: ([MLAPI_BEFORE_BIN, "serve"], MLAPI_BEFORE_CHECKOUT),
        env=lambda p, m: mlapi_env(p, m, BATCH_ENV),
        path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    "mlapi_gunicorn": dict(
        desc="mlapi serve --server gunicorn",
        cmd=lambda p, m: ([MLAPI_BIN, "serve", "--server", "gunicorn"], MLAPI_CHECKOUT),
        env=mlapi_env, path=lambda m: "/predict", fmt="flask", extract=lambda j: j["predictions"],
        extract_proba=mlapi_probabilities),
    # ---- HTTP floors (no model work) ----
    "floor_uwsgi_flask_noop": dict(
        desc="floor: same Flask+uWSGI p2t1 server, /noop constant JSON",
        cmd=lambda p, m: (uwsgi_cmd(p, 1), HERE), path=lambda m: "/noop", fmt="flask",
        extract=None, models=("noop",)),
    "floor_uwsgi_raw": dict(
        desc="floor: raw uWSGI WSGI callable (no Flask), constant JSON, p2t1",
        cmd=lambda p, m: (uwsgi_cmd(p, 1, wsgi="raw_wsgi.py"), HERE), path=lambda m: "/",
        fmt="flask", extract=None, models=("noop",)),
}
DEFAULT_SYSTEMS = ["flask_uwsgi_p2t1", "flask_gunicorn_w2", "mlflow_w2", "mlserver_pw2",
                   "bentoml_w2", "floor_uwsgi_flask_noop", "floor_uwsgi_raw"]
REFERENCE = "flask_uwsgi_p2t1"
