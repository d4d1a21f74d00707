"""How `mlapi serve` launches each server (app/server/launch.py, limits.py): one drain time,
one worker timeout and one recycling rule for uWSGI, gunicorn and granian; the environment the
server inherits; uwsgi.ini's placeholders all set."""
import os
import re
import subprocess

import pytest
import requests

from conftest import ROOT, VENV_BIN, free_port
from mlapi.config import Settings
from mlapi.errors import ConfigurationError
from mlapi.server import launch, limits
from scratch_dirs import scratch_dirs_in_tmp_path  # noqa: F401  (autouse: no directories left in /tmp)


def settings(**env) -> Settings:
    return Settings.from_env({key: str(value) for key, value in env.items()})


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_gunicorn_gets_the_limits_uwsgi_ini_gets():
    gunicorn = launch.server_command("gunicorn", 9000, None, settings())
    _, env = launch.prepare(settings(), 9000, "uwsgi", {})
    assert flag(gunicorn, "--graceful-timeout") == env["MLAPI_DRAIN_SECONDS"] == str(limits.DRAIN_SECONDS)
    assert flag(gunicorn, "--timeout") == env["MLAPI_KILL_AFTER_SECONDS"] == str(limits.kill_after(settings()))
    assert flag(gunicorn, "--max-requests") == env["MLAPI_MAX_REQUESTS"]
    assert flag(gunicorn, "--max-requests-jitter") == env["MLAPI_MAX_REQUESTS_JITTER"]
    ini = (ROOT / "uwsgi.ini").read_text()
    assert re.search(r"^worker-reload-mercy = \$\(MLAPI_DRAIN_SECONDS\)$", ini, re.M)
    # uWSGI's router gives up on the request at kill_after, and harakiri kills a second later
    # (limits.uwsgi_harakiri: tests/server/test_request_timeout.py measures why).
    assert re.search(r"^http-timeout = \$\(MLAPI_KILL_AFTER_SECONDS\)$", ini, re.M)
    assert re.search(r"^harakiri = \$\(MLAPI_HARAKIRI_SECONDS\)$", ini, re.M)
    assert env["MLAPI_HARAKIRI_SECONDS"] == str(limits.kill_after(settings()) + 1)
    assert re.search(r"^max-requests = \$\(MLAPI_MAX_REQUESTS\)$", ini, re.M)


def test_every_placeholder_of_uwsgi_ini_is_set_by_serve(tmp_path):
    used = set(re.findall(r"\$\((\w+)\)", (ROOT / "uwsgi.ini").read_text()))
    _, env = launch.prepare(settings(PROMETHEUS_MULTIPROC_DIR=tmp_path), 9000, "uwsgi", {})
    assert used and used <= set(env)


def test_uwsgi_ini_run_by_hand_refuses_to_start_without_the_limits():
    # Unset, its $(MLAPI_...) placeholders would be 0: no drain on SIGTERM, no harakiri.
    env = {"PATH": os.environ["PATH"], "PORT": str(free_port())}
    result = subprocess.run([str(VENV_BIN / "uwsgi"), "--ini", str(ROOT / "uwsgi.ini")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "run `mlapi serve`" in result.stdout + result.stderr


def test_uwsgi_started_by_serve_drains_for_the_limit(start_server, trained):
    server = start_server({"MODELS": f"cancer={trained['cancer'][0]}", "UWSGI_PROCESSES": "1"},
                          args=("serve", "--server", "uwsgi"))
    assert requests.get(f"{server.url}/healthz").status_code == 200
    assert f"your mercy for graceful operations on workers is {limits.DRAIN_SECONDS} seconds" in server.output()


def test_granian_gets_the_log_level_and_threads_from_serve():
    arguments = launch.granian_arguments(9000, settings(LOG_LEVEL="warning", WEB_CONCURRENCY=3))
    assert arguments == ["0.0.0.0:9000", "--workers", "3", "--blocking-threads", "1", "--log-level", "warning"]


@pytest.mark.parametrize("env, gunicorn, granian, uwsgi_env", [
    ({}, "1", "1", None),
    ({"MAX_BATCH_SIZE": 64}, str(launch.BATCHING_THREADS), str(launch.BATCHING_THREADS),
     str(launch.BATCHING_THREADS)),
    ({"MAX_BATCH_SIZE": 64, "GUNICORN_THREADS": 4, "GRANIAN_BLOCKING_THREADS": 5, "UWSGI_THREADS": 6},
     "4", "5", None),  # uWSGI reads UWSGI_THREADS=6 from the environment itself
])
def test_threads_per_worker(env, gunicorn, granian, uwsgi_env, tmp_path):
    chosen = settings(**env, PROMETHEUS_MULTIPROC_DIR=tmp_path)
    assert flag(launch.server_command("gunicorn", 1, None, chosen), "--threads") == gunicorn
    assert flag(launch.granian_arguments(1, chosen), "--blocking-threads") == granian
    assert launch.prepare(chosen, 1, "uwsgi", {})[1].get("UWSGI_THREADS") == uwsgi_env


def test_the_server_environment(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"a previous run's samples")
    prepared, env = launch.prepare(settings(PORT=8080, PROMETHEUS_MULTIPROC_DIR=metrics), 9000, "gunicorn",
                                   {"OMP_NUM_THREADS": "4"})
    assert env["PORT"] == "9000" and prepared.port == 9000  # --port wins, and the server is told
    assert env["PROMETHEUS_MULTIPROC_DIR"] == prepared.prometheus_multiproc_dir == str(metrics)
    assert list(metrics.iterdir()) == []
    assert "OMP_NUM_THREADS" not in env  # an explicit cap is kept
    assert env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    _, fresh = launch.prepare(settings(), 9000, "granian", {})
    assert os.path.isdir(fresh["PROMETHEUS_MULTIPROC_DIR"]) and not os.listdir(fresh["PROMETHEUS_MULTIPROC_DIR"])
    os.rmdir(fresh["PROMETHEUS_MULTIPROC_DIR"])


def test_the_server_is_chosen_once_from_settings():
    assert launch.choose_server(None, settings()) == "uwsgi"
    assert launch.choose_server(None, settings(MAX_BATCH_SIZE=8)) == "granian"
    assert launch.choose_server(None, settings(MAX_BATCH_SIZE=8, SERVER="gunicorn")) == "gunicorn"
    assert launch.choose_server("uwsgi", settings(SERVER="granian")) == "uwsgi"


def test_gunicorn_runs_the_sync_worker_with_a_headers_deadline_unless_threaded(tmp_path):
    single = launch.server_command("gunicorn", 1, None, settings(PROMETHEUS_MULTIPROC_DIR=tmp_path))
    assert flag(single, "--worker-class") == "mlapi.server.gunicorn_worker.SyncWorker"
    threaded = launch.server_command("gunicorn", 1, None, settings(GUNICORN_THREADS=4, PROMETHEUS_MULTIPROC_DIR=tmp_path))
    assert "--worker-class" not in threaded  # gunicorn's gthread worker, as it is


def test_the_uwsgi_ini_is_the_first_of_ini_the_setting_the_current_directory_and_the_checkout(tmp_path, monkeypatch):
    files = {name: tmp_path / name / "uwsgi.ini" for name in ("explicit", "setting", "cwd", "checkout")}
    for path in files.values():
        path.parent.mkdir()
        path.write_text("[uwsgi]\n")
    monkeypatch.setattr(launch, "checkout_ini", lambda: files["checkout"])
    monkeypatch.chdir(files["cwd"].parent)

    def found(explicit, **env):
        return launch.find_ini(explicit, settings(**env))
    assert found(str(files["explicit"]), UWSGI_INI=files["setting"]) == str(files["explicit"])
    assert found(None, UWSGI_INI=files["setting"]) == str(files["setting"])
    assert found(None) == str(files["cwd"])  # a uwsgi.ini beside the user's models beats the checkout's
    files["cwd"].unlink()
    assert found(None) == str(files["checkout"])
    assert found("../explicit/uwsgi.ini") == str(files["explicit"])  # relative: to the cwd, made absolute


def test_serve_run_outside_the_checkout_finds_the_checkouts_uwsgi_ini(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert launch.checkout_ini() == ROOT / "uwsgi.ini"  # an editable install: app/ is the package
    assert launch.find_ini(None, settings()) == str(ROOT / "uwsgi.ini")


def test_no_uwsgi_ini_anywhere_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch, "checkout_ini", lambda: tmp_path / "site-packages" / "uwsgi.ini")  # a wheel install
    with pytest.raises(ConfigurationError) as error:
        launch.find_ini(None, settings())
    assert str(error.value) == (f"no uwsgi.ini found (looked for {tmp_path / 'uwsgi.ini'} and "
                                f"{tmp_path / 'site-packages' / 'uwsgi.ini'}): "
                                "pass `mlapi serve --ini FILE` or set UWSGI_INI to a file")


@pytest.mark.parametrize("explicit, env, message", [
    ("typo.ini", {}, "--ini names no file: typo.ini"),
    (None, {"UWSGI_INI": "typo.ini"}, "UWSGI_INI names no file: typo.ini"),
])
def test_an_ini_named_but_missing_is_an_error_not_a_fallback(explicit, env, message):
    # The checkout's uwsgi.ini exists: a typo must not quietly start it instead.
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        launch.find_ini(explicit, settings(**env))


def test_serve_from_another_directory_reads_models_and_stores_there(start_server, trained, tmp_path):
    """A newcomer's run: `cd mine && ../.venv/bin/mlapi serve model.joblib`, no uwsgi.ini in mine/."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.joblib").write_bytes(trained["cancer"][0].read_bytes())
    server = start_server({"UWSGI_PROCESSES": "1", "FEATURE_STORE_URL": "sqlite:///data/features.db",
                           "PREDICTIONS_DB_URL": "sqlite:///data/predictions.db"},
                          args=("serve", "--server", "uwsgi", "model.joblib"), cwd=mine)
    answer = requests.post(f"{server.url}/predict", json={"instances": trained["cancer"][2][:1].tolist()})
    assert answer.status_code == 200 and answer.json()["model"]["name"] == "model"
    assert requests.get(f"{server.url}/readyz").json()["stores"] == {"feature_store": "ok", "predictions_db": "ok"}
    assert f"getting INI configuration from {ROOT / 'uwsgi.ini'}" in server.output()
    assert (mine / "data" / "features.db").is_file() and (mine / "data" / "predictions.db").is_file()
