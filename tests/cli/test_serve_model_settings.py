"""`mlapi serve FILE ...` does not read the model settings the files replace: a broken MODELS,
MODEL_URI or MODEL_SHA256 in the environment cannot stop it (it would be an error about a
setting the command then says it ignores); without files they are read, and refused."""
import os
import subprocess

import pytest

from conftest import ROOT, VENV_BIN

BROKEN = [{"MODELS": "no equals sign here"}, {"MODEL_SHA256": "not-a-digest"},
          {"MODEL_URI": "gs://bucket/m.joblib#sha256=short"}]


def serve(*args, **env):
    return subprocess.run([str(VENV_BIN / "mlapi"), "serve", "--dry-run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MODELS": "", "MODEL_URI": "", **env})


@pytest.mark.parametrize("env", BROKEN, ids=lambda env: next(iter(env)))
def test_files_on_the_command_line_ignore_broken_model_settings(env, tmp_path):
    model = tmp_path / "churn.joblib"
    model.write_bytes(b"not loaded by --dry-run")
    named = serve(str(model), **env)
    assert named.returncode == 0 and named.stderr == "", named.stderr
    assert named.stdout.split()[0].endswith("uwsgi")
    refused = serve(**env)  # nothing named: the environment says what to serve, so it is checked
    assert refused.returncode == 2 and refused.stderr.startswith("mlapi: ") and next(iter(env)) in refused.stderr


def test_other_settings_are_still_checked_with_files(tmp_path):
    model = tmp_path / "churn.joblib"
    model.write_bytes(b"x")
    result = serve(str(model), WEB_CONCURRENCY="0")
    assert result.returncode == 2 and "WEB_CONCURRENCY" in result.stderr and result.stdout == ""
