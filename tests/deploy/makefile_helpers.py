"""What the Makefile tests share: running `make` with recording stand-ins, and the values they expect.

Recording stand-ins (tests/fakebin) take the place of gcloud, docker, gsutil and npm on PATH, so
each target's exact commands and flags can be asserted without Google Cloud, Docker or npm.
The fixtures here (`make`, `model_file`, `stand_in_venv`, `real_venv`) are imported by name into
the test modules that use them: a second conftest.py in a folder without __init__.py would
replace tests/conftest.py in sys.modules, and every `from conftest import ...` after it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, service_missing

MAKEFILE = ROOT / "Makefile"
FAKEBIN = Path(__file__).resolve().parents[1] / "fakebin"
MAKE = shutil.which("make")

PROJECT = "demo-project-123"
BUCKET = "demo-project-123-models"
SA_NAME = "machine-learning-api"
DEPLOYER = f"{SA_NAME}@{PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"{SA_NAME}-runtime@{PROJECT}.iam.gserviceaccount.com"
GCP = {"GCP_PROJECT_ID": PROJECT}
SERVICE_FLAGS = ["--region=europe-west1", f"--project={PROJECT}"]


def git_sha() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def image(tag: str) -> str:
    return f"europe-west1-docker.pkg.dev/{PROJECT}/mlapi/mlapi:{tag}"


# ---- running make with the stand-ins ----------------------------------------------------------
@dataclass
class MakeRun:
    returncode: int
    out: str
    err: str
    calls: list[dict]

    def argvs(self, tool: str = "gcloud") -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == tool]


class Make:
    """`make -s TARGET VAR=...` in the repository, with .env ignored and the stand-ins first on PATH."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.home = scratch / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, *targets: str, env: dict | None = None, path: str | None = None,
                 makefile: Path = MAKEFILE, cwd: Path = ROOT, echo: bool = False, **variables) -> MakeRun:
        """echo=True: without -s, so the output holds every command make echoes, as a user sees it."""
        self.count += 1
        log = self.scratch / f"calls-{self.count}.jsonl"
        full_env = {
            "PATH": path if path is not None else os.pathsep.join(
                [str(FAKEBIN), str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.home), "LANG": "C.UTF-8", "FAKEBIN_LOG": str(log), **(env or {}),
        }
        command = [MAKE, *([] if echo else ["-s"]), "--no-print-directory", "-f", str(makefile), "-C", str(cwd),
                   "ENV_FILE=/dev/null", *targets, *(f"{k}={v}" for k, v in variables.items())]
        done = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=120)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return MakeRun(done.returncode, done.stdout, done.stderr, calls)


def dry_run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`make -n` in the repository: the commands a target would run, printed, none run."""
    if MAKE is None:
        service_missing("GNU make is not installed")
    return subprocess.run([MAKE, "-n", *arguments], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})


@pytest.fixture
def make(tmp_path):
    if MAKE is None:
        service_missing("GNU make is not installed")
    return Make(tmp_path)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(b"not really a model, but bytes with a known sha256")
    return path


def ok(run: MakeRun) -> MakeRun:
    assert run.returncode == 0, f"make failed ({run.returncode}):\n{run.out}\n{run.err}"
    return run


def fresh_stamps(venv: Path) -> Path:
    """Mark a virtualenv as installed: stamps newer than setup.py and constraints.txt, so
    make installs nothing into it."""
    later = time.time() + 3600
    for stamp in (".installed-gcs", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    return venv


@pytest.fixture
def stand_in_venv(tmp_path):
    """A virtualenv whose python and mlapi are recorders, already installed (fresh stamps)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "mlapi"):
        (venv / "bin" / tool).symlink_to(FAKEBIN / "record")
    return fresh_stamps(venv)


@pytest.fixture
def real_venv(tmp_path):
    """A virtualenv holding this checkout's real mlapi, already installed (fresh stamps)."""
    venv = tmp_path / "real-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "mlapi").symlink_to(VENV_BIN / "mlapi")
    return fresh_stamps(venv)


# ---- reading the Makefile ----------------------------------------------------------------------
def makefile_text() -> str:
    return MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")


def phony_targets() -> set[str]:
    return {name for line in makefile_text().splitlines() if line.startswith(".PHONY:")
            for name in line.split(":", 1)[1].split()}


def rule_targets() -> set[str]:
    """Every target defined by a rule (`name:`), not file targets like $(VENV)/bin/python."""
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile_text(), flags=re.M))


def server_settings_travelling() -> list[str]:
    """SERVER_SETTINGS: the settings run-container, deploy and deploy-batch-job pass to the container."""
    [names] = re.findall(r"^SERVER_SETTINGS = (.*)$", makefile_text(), flags=re.M)
    return names.split()


def bindings(argvs: list[list[str]]) -> set[tuple[str, str, str, str]]:
    """(resource kind, resource, member, role) for each add-iam-policy-binding call."""
    found = set()
    for argv in argvs:
        verb = argv.index("add-iam-policy-binding")
        flags = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        found.add((" ".join(argv[:verb]), argv[verb + 1], flags["member"], flags["role"]))
    return found
