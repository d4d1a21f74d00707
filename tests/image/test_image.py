"""The image, built and run for real: `make build-image CONTAINER_ENGINE=podman` on a base made
from Debian's packages (tests/image/base_image.sh: no image registry is reachable here), then
run the way `make run-container` runs it.

- It becomes ready, and predicts exactly what the model copied into it predicts, with uWSGI (as
  shipped) and with granian (micro-batching on);
- the server is the container's PID 1, runs as uid 10001, and exits 0 within 10 s of SIGTERM;
- the image's install scores a CSV into Parquet, and a Parquet file into CSV (the Cloud Run job's
  command);
- every shared library it holds still loads, and what the server imports has its bytecode
  (tests/image/in_image.py, run inside the image: the Dockerfile strips and links libraries and
  writes bytecode for what is imported only);
- its size stays under SIZE_LIMIT_MB (printed with `pytest -s`, with what takes the room, layer by
  layer and package by package).

Needs root, podman (with runc) and mmdebstrap: .ci/run installs them. Podman keeps all its state
(images, containers, layers, networks) in a temporary directory removed at the end; only the
base's root filesystem tarball is kept between runs, in ~/.cache/mlapi-image/.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
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

from conftest import ROOT, free_port, service_missing

pytestmark = pytest.mark.slow

BASE_SCRIPT = Path(__file__).with_name("base_image.sh")
IN_IMAGE = Path(__file__).with_name("in_image.py")
IMAGE = "mlapi-image-test:test"
# 544 MB as built here: 133 MB of base (base_image.sh: what python:slim carries, which is 130 MB)
# and 411 MB of ours. It was 860 MB before the builder trimmed the virtualenv, then 630 MB (a base
# of 181 MB, with C headers and bytecode python:slim lacks, and 449 MB of ours); docs/deploy.md,
# "Run it in Docker", says what is left and why.
SIZE_LIMIT_MB = 600
# What the build context holds: the files the Dockerfile copies, the Dockerfile, .dockerignore.
CONTEXT = ("Dockerfile", ".dockerignore", "setup.py", "constraints.txt", "README.md", "uwsgi.ini", "app")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


class Podman:
    """podman with every piece of its state in one private directory.

    containers.conf says what this machine needs: ulimits no higher than the hard limit the
    machine allows (podman's defaults ask for more: `setrlimit RLIMIT_NOFILE` fails), runc
    (crun fails on hybrid cgroups), cgroupfs (no systemd), and podman's temporary files,
    events and networks kept here too, so `podman system reset` touches nothing outside.
    """

    def __init__(self, home: Path):
        self.home = home
        nofile = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout)
        (home / "containers.conf").write_text(f"""\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{home}/events.log"
tmp_dir = "{home}/libpod-tmp"

[network]
network_config_dir = "{home}/networks"
""")
        (home / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{home}/root"
runroot = "{home}/runroot"
""")
        (home / "tmp").mkdir()
        self.env = {**os.environ, "CONTAINERS_CONF": str(home / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"), "TMPDIR": str(home / "tmp")}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"podman {shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def remove_everything(self) -> None:
        # In this order: a plain rm -rf trips on the overlay mounts of containers still there.
        self("rm", "--all", "--force", check=False)
        self("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(self.home, ignore_errors=True)


def megabytes(size: int) -> int:
    return round(size / 1e6)


def layer_step(created_by: str) -> str:
    """The Dockerfile step a layer came from, in one short line."""
    step = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", " ".join(created_by.split()))
    return step if len(step) <= 90 else step[:87] + "..."


def base_tarball() -> Path:
    """The base's root filesystem, built once per version of base_image.sh and kept."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlapi-image"
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(BASE_SCRIPT.read_bytes()).hexdigest()[:12]
    tarball = cache / f"bookworm-python-{digest}.tar"
    if not tarball.exists():
        for stale in cache.glob("bookworm-python-*.tar*"):
            stale.unlink()
        started = time.monotonic()
        done = subprocess.run([str(BASE_SCRIPT), str(tarball)], capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        print(f"\nimage: base root filesystem built by mmdebstrap in {time.monotonic() - started:.0f} s")
    return tarball


def pip_index_settings() -> dict[str, str]:
    """The index settings pip uses on this machine (environment, then pip.conf), as PIP_* variables
    for `make build-image` to pass into the builder. Local ones (file://, a path) cannot be reached
    from inside the build, so they are left out."""
    found = {}
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = "PIP_" + key.split(".", 1)[-1].upper().replace("-", "_")
        found.setdefault(name, value.strip().strip("'\""))
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        if os.environ.get(name):
            found[name] = os.environ[name]
    usable = {}
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        urls = [url for url in found.get(name, "").split() if url.startswith(("http://", "https://"))]
        if urls:
            usable[name] = " ".join(urls)
    if found.get("PIP_TRUSTED_HOST") and usable:
        usable["PIP_TRUSTED_HOST"] = found["PIP_TRUSTED_HOST"]
    return usable


def build_context(folder: Path) -> Path:
    """The files the Dockerfile copies, and models/latest.joblib trained here (the model the
    image serves when MODELS is unset): nothing is written into the repository."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    context = folder / "context"
    context.mkdir()
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, context / name)
    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(FEATURES, axis=1)
    (context / "models").mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(frame, iris.target), context / "models" / "latest.joblib")
    return context


@pytest.fixture(scope="module")
def podman():
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        service_missing(f"{', '.join(missing)} not installed: apt-get install podman runc mmdebstrap (.ci/run does)")
    if os.geteuid() != 0:
        service_missing("building the image with podman here needs root (.ci/run runs as root)")
    engine = Podman(Path(tempfile.mkdtemp(prefix="mlapi-podman-")))
    try:
        yield engine
    finally:
        engine.remove_everything()


@pytest.fixture(scope="module")
def image(podman):
    """`make build-image CONTAINER_ENGINE=podman`, from a context in a temporary directory.
    Returns the model the image holds."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = set(re.findall(r"^FROM (\S+)", dockerfile, flags=re.M))
    tarball = base_tarball()
    for base in bases:
        done = subprocess.run([str(BASE_SCRIPT), str(tarball), base], env=podman.env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr

    context = build_context(podman.home)
    started = time.monotonic()
    build = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-C", str(context),
         "ENV_FILE=/dev/null", "build-image", "CONTAINER_ENGINE=podman",
         f"DOCKER_PROJECT={IMAGE.split(':')[0]}", f"IMAGE_TAG={IMAGE.split(':')[1]}"],
        env={**podman.env, **pip_index_settings()}, capture_output=True, text=True, timeout=1200)
    (podman.home / "build.log").write_text(build.stdout + build.stderr)
    assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
    print(f"\nimage: built in {time.monotonic() - started:.0f} s")
    return joblib.load(context / "models" / "latest.joblib")


def run_container_argv(podman: Podman, port: int, **settings: str) -> list[str]:
    """The command `make run-container CONTAINER_ENGINE=podman` runs (make -n prints it), on the
    host's network: the server binds a free port itself instead of 8080 published on one."""
    printed = subprocess.run(
        ["make", "-s", "-n", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-C", str(ROOT),
         "ENV_FILE=/dev/null", "run-container", "CONTAINER_ENGINE=podman", f"PORT={port}",
         f"DOCKER_PROJECT={IMAGE.split(':')[0]}", f"IMAGE_TAG={IMAGE.split(':')[1]}",
         *(f"{name}={value}" for name, value in settings.items())],
        env={"PATH": os.environ["PATH"], "HOME": str(podman.home)}, capture_output=True, text=True, check=True)
    argv = shlex.split(printed.stdout.replace("\\\n", " "))  # the recipe's continued lines
    assert argv[:2] == ["podman", "run"] and argv[-1] == IMAGE, argv
    assert f"--publish={port}:8080" in argv and "--env=PORT=8080" in argv, argv
    argv[argv.index(f"--publish={port}:8080")] = "--network=host"
    argv[argv.index("--env=PORT=8080")] = f"--env=PORT={port}"
    return argv


def wait_ready(url: str, container: subprocess.Popen, timeout: float = 120) -> requests.Response:
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline and container.poll() is None:
        try:
            answer = requests.get(url + "/readyz", timeout=2)
            if answer.status_code != 503:  # 503: still loading the models
                return answer
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return answer


@pytest.mark.parametrize("settings, server", [
    ({}, "uwsgi"),                        # as shipped
    ({"MAX_BATCH_SIZE": "64"}, "granian"),  # micro-batching: granian, run by `mlapi serve` itself
])
def test_the_image_serves_the_model_as_a_non_root_pid_1_and_drains_on_sigterm(podman, image, tmp_path,
                                                                                settings, server):
    port = free_port()
    name = f"mlapi-test-{server}-{port}"
    argv = run_container_argv(podman, port, **settings)
    argv[2:2] = [f"--name={name}", "--env=UWSGI_PROCESSES=2", "--env=WEB_CONCURRENCY=2"]
    log = open(tmp_path / "container.log", "w+")
    started = time.monotonic()
    container = subprocess.Popen(argv, env=podman.env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, container)
        log.seek(0)
        assert ready is not None and ready.status_code == 200, (ready and ready.text, log.read())
        print(f"\nimage: {server} ready {time.monotonic() - started:.1f} s after `podman run`")

        # The process the runtime signals is the server itself, as the non-root user.
        pid = podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
        assert Path(f"/proc/{pid}/comm").read_text().startswith(server if server == "uwsgi" else "mlapi")
        uids = re.search(r"^Uid:\s+(.*)$", Path(f"/proc/{pid}/status").read_text(), flags=re.M).group(1).split()
        assert set(uids) == {"10001"}, uids
        # The server may write /app/data (the default SQLite files), not its config or models.
        writes = podman("exec", name, "sh", "-c", "touch /app/data/probe && echo data; "
                        "touch /app/models/probe /app/uwsgi.ini 2>/dev/null && echo models; true").stdout
        assert writes.split() == ["data"], writes

        model = image
        frame = pd.DataFrame(ROWS, columns=FEATURES)
        answer = requests.post(url + "/predict", json={"instances": ROWS}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == model.predict(frame).tolist()
        assert answer.json()["probabilities"] == model.predict_proba(frame).tolist()

        podman("kill", "--signal=TERM", name)
        signalled = time.monotonic()
        status = container.wait(timeout=10)
        log.seek(0)
        assert status == 0, f"exit status {status} after SIGTERM (0: drained and exited on its own):\n{log.read()}"
        assert time.monotonic() - signalled < 10
    finally:
        if container.poll() is None:
            podman("rm", "--force", name, check=False)
            container.wait(30)
        log.close()


def test_the_image_scores_a_csv_into_parquet_and_back(podman, image, tmp_path):
    # The image is also the Cloud Run job that runs `mlapi batch-predict` (README, Bulk scoring):
    # pyarrow, trimmed in the builder, must still read and write CSV and Parquet.
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)  # the container's user (10001) writes the output here
    frame = pd.DataFrame(ROWS * 20, columns=FEATURES)
    frame.insert(0, "id", range(len(frame)))
    frame.to_csv(work / "in.csv", index=False)
    frame.to_parquet(work / "in.parquet", index=False)
    for source, output, read in (("in.csv", "out.parquet", pd.read_parquet), ("in.parquet", "out.csv", pd.read_csv)):
        done = podman("run", "--rm", "--network=host", f"--volume={work}:/work", IMAGE,
                      "mlapi", "batch-predict", "--input", f"/work/{source}", "--output", f"/work/{output}",
                      check=False, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        out = read(work / output)
        assert out["id"].astype(str).tolist() == [str(i) for i in frame["id"]], output
        assert out["prediction"].tolist() == image.predict(frame[FEATURES]).tolist(), output


@pytest.mark.parametrize("check", ["libraries", "bytecode"])
def test_what_the_image_trimmed_is_still_there_where_it_is_used(podman, image, check):
    done = podman("run", "--rm", "--network=host", f"--volume={IN_IMAGE}:/checks/in_image.py:ro", IMAGE,
                  "python", "/checks/in_image.py", check, check=False, timeout=300)
    print(f"\nimage: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    assert done.returncode == 0, f"{check}:\n{done.stdout}\n{done.stderr[-3000:]}"


def test_the_image_stays_small(podman, image):
    sizes = {ref: int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)
             for ref in (IMAGE, *set(re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)))}
    total, base = sizes.pop(IMAGE), max(sizes.values())
    layers = json.loads(podman("history", "--format=json", IMAGE).stdout)
    packages = podman("run", "--rm", "--network=host", "--entrypoint=sh", IMAGE, "-c",
                      "cd /opt/mlapi/lib/python3.11/site-packages && du -sk * | sort -rn | head -n 12").stdout
    print(f"\nimage: {megabytes(total)} MB ({megabytes(base)} MB of base, {megabytes(total - base)} MB added); "
          "its layers of over 1 MB, oldest first:\n" + "\n".join(
              f"  {megabytes(layer['size']):5d} MB  {layer_step(layer['CreatedBy'])}"
              for layer in reversed(layers) if layer["size"] > 1e6)
          + "\nlargest in site-packages:\n" + "\n".join(
              f"  {int(kb) // 1000:5d} MB  {name}" for kb, name in (line.split(None, 1) for line in packages.splitlines())))
    assert megabytes(total) < SIZE_LIMIT_MB, f"the image is {megabytes(total)} MB (limit {SIZE_LIMIT_MB} MB)"
    # nothing installs at run time: the virtualenv has no pip of its own
    listed = podman("run", "--rm", "--network=host", IMAGE, "python", "-c",
                    "import importlib.metadata as m; print(json.dumps(sorted(d.metadata['Name'].lower() "
                    "for d in m.distributions())))".replace("json.dumps", "__import__('json').dumps")).stdout
    assert not {"pip", "setuptools", "wheel"} & set(json.loads(listed))
