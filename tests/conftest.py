"""Shared fixtures: models trained in tmp_path, the app factory, and a real server process.

A test that needs a service this machine lacks (a database, Node.js, make, hadolint) calls
`service_missing(...)`: it skips with the reason locally, and fails under CI=true. The Google
Cloud SDK too (`cloud_sdk_missing(...)`): the project cannot install it, but CI runs where it is.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(reason: str, module: bool = False):
    """Skip locally; under CI=true a missing service fails the run. `module`: called while a
    test module is imported (a missing package), where it skips or fails the whole module."""
    if IN_CI:
        pytest.fail(f"CI=true and a required service is missing: {reason}", pytrace=not module)
    pytest.skip(reason, allow_module_level=module)


# The Redis every test that needs one uses (the machine's; CI's too).
REDIS = ("127.0.0.1", 6379)


@pytest.fixture
def redis_client():
    """A client of REDIS, or the test skips (fails under CI=true) when it does not answer."""
    try:
        import redis

        client = redis.Redis(*REDIS, socket_timeout=2)
        client.ping()
    except Exception as exc:  # the module missing or the server down
        service_missing(f"Redis is not reachable at {REDIS[0]}:{REDIS[1]} ({exc.__class__.__name__}: {exc})")
    yield client
    client.close()


def cloud_sdk_missing(what: str):
    """The Google Cloud SDK is missing: like any other service, a skip locally and a failure
    under CI=true (CI runs where the SDK is installed; a CI machine without it must say so)."""
    service_missing(f"the Google Cloud SDK (gcloud) is not installed, so {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- models trained inside the tests ------------------------------------------------------
@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Tabular and text, classifier and regressor, Pipeline and bare estimator, int and
    string labels — each saved with joblib. Returns {name: (path, estimator, sample_input)}."""
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    from mlapi.cli.demo_models import ticket_corpus

    folder = tmp_path_factory.mktemp("models")
    cancer = load_breast_cancer()
    diabetes = load_diabetes(as_frame=True)
    texts, labels = ticket_corpus(seed=3, per_label=30)
    frame = diabetes.frame.drop(columns="target")
    models = {
        # Pipeline, tabular, int labels, fitted on a bare array (no feature names)
        "cancer": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(cancer.data, cancer.target),
                   cancer.data[:5]),
        # bare estimator, int labels
        "tree": (DecisionTreeClassifier(max_depth=4, random_state=0).fit(cancer.data, cancer.target), cancer.data[:5]),
        # bare regressor fitted on a DataFrame (feature names)
        "diabetes": (RandomForestRegressor(n_estimators=10, random_state=0).fit(frame, diabetes.target), frame.iloc[:5]),
        # Pipeline regressor fitted on a DataFrame
        "ridge": (make_pipeline(StandardScaler(), Ridge()).fit(frame, diabetes.target), frame.iloc[:5]),
        # text Pipeline, string labels
        "text": (make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)).fit(texts, labels),
                 ["refund my last invoice", "the app crashes on my phone", "cannot log in"]),
    }
    out = {}
    for name, (estimator, sample) in models.items():
        path = folder / f"{name}.joblib"
        joblib.dump(estimator, path)
        out[name] = (path, estimator, sample)
    return out


def models_env(trained, *names) -> str:
    return ",".join(f"{n}={trained[n][0]}" for n in names)


# ---- the app factory ------------------------------------------------------------------------
@pytest.fixture
def make_app(tmp_path):
    from mlapi import create_app
    from mlapi.config import Settings

    def build(**env):
        env.setdefault("MODEL_CACHE_DIR", str(tmp_path / "cache"))
        env.setdefault("FEATURE_STORE_URL", f"sqlite:///{tmp_path}/features.db")
        env.setdefault("PREDICTIONS_DB_URL", f"sqlite:///{tmp_path}/predictions.db")
        return create_app(Settings.from_env({k: str(v) for k, v in env.items()}))
    return build


@pytest.fixture
def client(make_app, trained):
    app = make_app(MODELS=models_env(trained, "cancer", "tree", "diabetes", "ridge", "text"))
    return app.test_client()


# ---- a real server process -------------------------------------------------------------------
class ServerProcess:
    def __init__(self, env: dict, args=("serve",), cwd: Path = ROOT, ready_path="/healthz"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlapi-server-{self.port}"
        defaults = {"FEATURE_STORE_URL": f"sqlite:///{scratch}/features.db",
                    "PREDICTIONS_DB_URL": f"sqlite:///{scratch}/predictions.db"}
        full_env = {**os.environ, **defaults, **{k: str(v) for k, v in env.items()}, "PORT": str(self.port)}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"mlapi-server-{self.port}.log", "w+")
        self.proc = subprocess.Popen([str(VENV_BIN / "mlapi"), *args], env=full_env, cwd=cwd,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if ready_path is not None:  # None: the test watches the start itself
                self._wait(ready_path)
        except BaseException:
            # Not yet in start_server's list, so nobody else would stop it: a server that missed
            # its start-up wait (a loaded machine) kept running, workers and all, past the test.
            self.stop()
            raise

    def _wait(self, path: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                requests.get(self.url + path, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        """SIGTERM, as Cloud Run sends it; the exit status. Each server exits 0 after a graceful
        stop; one still running after 15 s is killed, and its status is then -9."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def start_server():
    servers = []

    def start(env: dict, **kwargs) -> ServerProcess:
        server = ServerProcess(env, **kwargs)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()
        server.log.close()


def as_plain(values):
    return np.asarray(values).tolist()


def to_rows(sample):
    return sample.to_numpy().tolist() if isinstance(sample, pd.DataFrame) else as_plain(sample)


# ---- real databases: SQLite always, PostgreSQL and MariaDB on this machine and in CI --------
SERVER_DATABASES = {
    "postgresql": ("postgresql+psycopg://postgres@127.0.0.1:5432/{db}", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306/{db}", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def _fresh_database(kind: str):
    """Create an empty database on the server for one test; yield its URL; drop it after."""
    import uuid

    import sqlalchemy as sa

    template, admin_url = SERVER_DATABASES[kind]
    name = f"mlapi_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # driver missing or server down
        service_missing(f"{kind} is not reachable at {admin_url} ({exc.__class__.__name__}: {exc})")
    try:
        yield template.format(db=name)
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path):
    """An empty database of each kind the product supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db.sqlite"
    else:
        yield from _fresh_database(request.param)


@pytest.fixture
def postgres_url():
    yield from _fresh_database("postgresql")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: tens of seconds (clean install, real server); runs in make test")
