"""Local development with make: `make run` (virtualenv, demo models, uWSGI), `make test`,
node-deps for the Postman collection's runner, and the CI entry point .ci/run."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT
from makefile_helpers import FAKEBIN, MAKEFILE, dry_run, make, ok, stand_in_venv  # noqa: F401


def test_run_serves_the_demo_models_with_uwsgi_unless_told_otherwise(make, stand_in_venv, tmp_path):
    watch = {"FAKEBIN_ENV": "MODELS,MODEL_URI,PORT"}
    run = ok(make("run", VENV=stand_in_venv, env=watch))
    assert [(c["tool"], c["argv"]) for c in run.calls] == [
        ("mlapi", ["demo", "--out", "models"]),
        ("mlapi", ["serve", "--server", "uwsgi", "--port", "8080"]),
    ]
    assert run.calls[-1]["env"]["MODELS"] == "iris=models/iris.joblib,tickets=models/tickets.joblib"

    dotenv = tmp_path / "my.env"
    dotenv.write_text("MODELS=mine=models/mine.joblib\nPORT=9090\n")
    mine = ok(make("run", VENV=stand_in_venv, ENV_FILE=dotenv, env=watch))
    assert mine.calls[-1]["argv"][-1] == "9090"
    assert mine.calls[-1]["env"]["MODELS"] == "mine=models/mine.joblib"

    # MODEL_URI alone must not be hidden behind the demo MODELS
    single = ok(make("run", VENV=stand_in_venv, env={**watch, "MODEL_URI": "models/other.joblib"}))
    assert not single.calls[-1]["env"]["MODELS"]
    assert single.calls[-1]["env"]["MODEL_URI"] == "models/other.joblib"


def test_run_creates_the_virtualenv_and_installs_with_constraints(tmp_path):
    venv = tmp_path / "fresh-venv"
    dry = dry_run(tmp_path, "-C", str(ROOT), "ENV_FILE=/dev/null", "run", f"VENV={venv}")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    expected = [f"-m venv {venv}", f"{venv}/bin/python -m pip install -c constraints.txt -e '.[gcs]'",
                f"{venv}/bin/mlapi demo --out models", f"{venv}/bin/mlapi serve --server uwsgi --port 8080"]
    positions = [next(i for i, line in enumerate(lines) if wanted in line) for wanted in expected]
    assert positions == sorted(positions), dry.stdout
    assert re.search(r"python3(\.11)? -m venv", lines[positions[0]]), lines[positions[0]]
    # the first run says up front that it installs, and for how long, before it does
    said = next(i for i, line in enumerate(lines) if "first run: creating the virtualenv" in line)
    assert said < positions[0] and "about 2 minutes" in lines[said]


def test_card_shows_the_demo_models_cards_unless_told_otherwise(make, stand_in_venv):
    watch = {"FAKEBIN_ENV": "MODELS"}
    every = ok(make("card", VENV=stand_in_venv, env=watch))
    assert [c["argv"] for c in every.calls] == [["demo", "--out", "models"], ["card"]]
    assert every.calls[-1]["env"]["MODELS"] == "iris=models/iris.joblib,tickets=models/tickets.joblib"
    one = ok(make("card", VENV=stand_in_venv, CARD_MODEL="tickets:1", env={**watch, "MODELS": "tickets=t.joblib"}))
    assert one.calls[-1]["argv"] == ["card", "tickets:1"] and one.calls[-1]["env"]["MODELS"] == "tickets=t.joblib"


def test_test_target_runs_pytest_without_the_settings_from_env(make, stand_in_venv, tmp_path):
    dotenv = tmp_path / "my.env"
    dotenv.write_text("MODELS=mine=gs://b/m.joblib\nGCP_PROJECT_ID=p\n")
    run = ok(make("test", VENV=stand_in_venv, ENV_FILE=dotenv, PYTEST_ARGS="-x -k api",
                  env={"FAKEBIN_ENV": "MODELS,GCP_PROJECT_ID,PORT,CI", "CI": "true"}))
    [pytest_call] = [c for c in run.calls if c["tool"] == "python"]
    assert pytest_call["argv"] == ["-m", "pytest", "-q", "tests", "-x", "-k", "api"]
    assert pytest_call["env"] == {"MODELS": None, "GCP_PROJECT_ID": None, "PORT": None, "CI": "true"}



@pytest.fixture
def node_project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(MAKEFILE, folder / "Makefile")
    return folder


def test_node_deps_installs_newman_with_npm_ci_when_it_can(make, node_project, tmp_path):
    # no package.json: nothing to do
    assert ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project)).calls == []
    (node_project / "package.json").write_text('{"devDependencies": {"newman": "^6.2.2"}}')
    (node_project / "package-lock.json").write_text("{}")
    with_npm = ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project))
    assert with_npm.argvs("npm") == [["ci", "--no-audit", "--no-fund"]]

    empty = tmp_path / "empty-path"
    empty.mkdir()
    without_npm = ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project, path=str(empty)))
    assert "npm not found: skipping newman" in without_npm.out
    assert without_npm.calls == []

    (node_project / "node_modules").mkdir()
    (node_project / "node_modules" / ".package-lock.json").write_text("{}")
    later = time.time() + 60
    os.utime(node_project / "node_modules" / ".package-lock.json", (later, later))
    assert ok(make("node-deps", makefile=node_project / "Makefile", cwd=node_project)).calls == []


def test_ci_entry_point_runs_make_test_with_ci_true_unless_told_otherwise(tmp_path):
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    (stand_ins / "make").symlink_to(FAKEBIN / "record")

    def ci_run(**env) -> list[dict]:
        log = tmp_path / "calls.jsonl"
        log.unlink(missing_ok=True)
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                              env={"PATH": f"{stand_ins}:/usr/bin:/bin", "HOME": str(tmp_path),
                                   "FAKEBIN_LOG": str(log), "FAKEBIN_ENV": "CI", **env})
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in log.read_text().splitlines()]

    # a CI service that does not export CI still gets failures, not skips, for missing services;
    # the model tests on the scikit-learn range first, the whole suite (README's command) last
    assert ci_run() == [{"tool": "make", "argv": ["test-sklearn-range"], "env": {"CI": "true"}},
                        {"tool": "make", "argv": ["test"], "env": {"CI": "true"}}]
    assert [call["env"] for call in ci_run(CI="false")] == [{"CI": "false"}] * 2  # an explicit choice is kept
