"""A bad setting stops any `mlapi` command with one line naming the variable, exit code 2,
no traceback, and before any server starts; ACCESS_LOG is one boolean for every server."""
import os
import subprocess

import pytest

from conftest import ROOT, VENV_BIN, free_port


def mlapi(*args, timeout=60, **env):
    clean = {key: value for key, value in os.environ.items()
             if key not in ("MODELS", "MODEL_URI", "MAX_BATCH_SIZE", "SERVER", "ACCESS_LOG")}
    return subprocess.run([str(VENV_BIN / "mlapi"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**clean, "PORT": str(free_port()), **env})


@pytest.mark.parametrize("server", ["uwsgi", "gunicorn", "granian"])
@pytest.mark.parametrize("env, line", [
    ({"MAX_BATCH_SIZE": "abc"}, "mlapi: MAX_BATCH_SIZE='abc' is not an integer (expected 0 or more)"),
    ({"MODELS": "iris=models/iris.joblib,no-uri-here"},
     "mlapi: MODELS entry 'no-uri-here' is not name=URI or name:version=URI"),
])
def test_serve_refuses_a_bad_setting_itself_before_any_server_starts(server, env, line):
    result = mlapi("serve", "--server", server, **env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [line], result.stderr
    # nothing started: no uWSGI banner, no gunicorn or granian log line, no traceback
    for trace in ("Traceback", "uWSGI", "GAME OVER", "Starting gunicorn", "Starting granian", "loaded model"):
        assert trace not in result.stderr


@pytest.mark.parametrize("args, env", [
    (("features", "add", "some text"), {"LOG_FORMAT": "xml"}),
    (("publish", '{"id": "1"}'), {"ACCESS_LOG": "maybe"}),
    (("batch-predict", "--input", "in.csv", "--output", "out.csv"), {"CLOUD_RUN_TASK_INDEX": "first"}),
    (("serve", "--dry-run"), {"WEB_CONCURRENCY": "0"}),
])
def test_every_command_reports_a_bad_setting_the_same_way(args, env):
    result = mlapi(*args, **env)
    [variable] = env
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"mlapi: {variable}=") and "Traceback" not in result.stderr


def test_a_database_driver_not_installed_is_one_line_not_a_traceback():
    result = mlapi("features", "add", "hello", FEATURE_STORE_URL="postgresql+psycopg2://postgres@127.0.0.1/test")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("mlapi: ") and "install mlapi[postgres]" in result.stderr


def test_demo_reads_no_setting(tmp_path):
    # It trains and writes files only: an unrelated typo in the environment does not stop it.
    result = mlapi("demo", "--out", str(tmp_path), MAX_BATCH_SIZE="abc")
    assert result.returncode == 0 and (tmp_path / "iris.joblib").is_file()


@pytest.mark.parametrize("value", ["0", "false", "", "1", "yes"])
def test_gunicorn_never_writes_an_access_log_of_its_own(value):
    # ACCESS_LOG is the request pipeline's (one line per request on every server,
    # tests/http/test_pipeline.py); gunicorn's own would log each request a second time.
    command = mlapi("serve", "--server", "gunicorn", "--dry-run", ACCESS_LOG=value).stdout.split()
    assert command[command.index("--access-logfile") + 1] == "/dev/null"
