"""`mlapi demo` (deterministic demo models) and `mlapi serve --dry-run`; plain .pkl artifacts."""
import os
import pickle
import subprocess

import joblib
import pandas as pd

from conftest import ROOT, VENV_BIN, to_rows


def run(*args, **kwargs):
    return subprocess.run([str(VENV_BIN / "mlapi"), *args], capture_output=True, text=True, check=True, **kwargs)


def test_demo_is_deterministic_and_skips_existing(tmp_path):
    run("demo", "--out", str(tmp_path / "a"))
    run("demo", "--out", str(tmp_path / "b"))
    for name in ("iris", "tickets"):
        a = joblib.load(tmp_path / "a" / f"{name}.joblib")
        b = joblib.load(tmp_path / "b" / f"{name}.joblib")
        if name == "tickets":
            probe = ["refund my invoice", "app crashes on the login screen"]
        else:
            probe = pd.DataFrame([[5.9, 3.0, 5.1, 1.8]], columns=a.feature_names_in_)
        assert (a.predict_proba(probe) == b.predict_proba(probe)).all()
    assert (tmp_path / "a" / "latest.joblib").read_bytes() == (tmp_path / "a" / "iris.joblib").read_bytes()
    assert "already" in run("demo", "--out", str(tmp_path / "a")).stdout


def test_demo_models_are_useful():
    from mlapi.cli.demo_models import train_tickets

    model = train_tickets()
    assert model.predict(["I cannot log in, my password reset email never arrives",
                          "the pricing page shows a 404 error"]).tolist() == ["account access", "website"]


def test_serve_imports_only_its_own_command_group():
    # `mlapi serve` is on every cold start's path: the other groups' modules are not imported
    # for it, and `mlapi --help` and the other commands still know every command.
    script = ("import sys\nfrom mlapi.cli import main\nmain(['serve', '--dry-run'])\n"
              "print(sorted(m for m in sys.modules if m.startswith('mlapi.cli.')))")
    result = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True, check=True,
                            cwd=ROOT, env={**os.environ, "MODELS": "m=models/none.joblib"})
    assert result.stdout.splitlines()[-1] == "['mlapi.cli.serve']"
    listed = run("--help").stdout
    assert all(name in listed for name in ("serve", "card", "demo", "features", "publish", "batch-predict"))
    assert "usage: mlapi card" in run("card", "--help").stdout


def test_serve_dry_run_commands():
    uwsgi = run("serve", "--dry-run", "--port", "9000", cwd=ROOT).stdout.split()
    assert uwsgi[0].endswith("uwsgi") and uwsgi[1:] == ["--ini", str(ROOT / "uwsgi.ini")]
    gunicorn = run("serve", "--server", "gunicorn", "--dry-run", "--port", "9000", cwd=ROOT).stdout.split()
    assert gunicorn[0].endswith("gunicorn") and "--preload" in gunicorn
    assert gunicorn[gunicorn.index("--bind") + 1] == "0.0.0.0:9000"


def test_serve_picks_granian_for_micro_batching_unless_told_otherwise():
    def command(*args, **env):
        return run("serve", "--dry-run", *args, cwd=ROOT, env={**os.environ, **env}).stdout.split()

    assert command("--port", "9000", MAX_BATCH_SIZE="64", WEB_CONCURRENCY="3")[1:] == [
        "-m", "mlapi.server.granian", "0.0.0.0:9000", "--workers", "3", "--blocking-threads", "32",
        "--log-level", "info"]
    assert command(MAX_BATCH_SIZE="1")[0].endswith("uwsgi")  # 1 row per call: batching is off
    assert command("--server", "uwsgi", MAX_BATCH_SIZE="64")[0].endswith("uwsgi")
    assert command(MAX_BATCH_SIZE="64", SERVER="gunicorn")[0].endswith("gunicorn")
    assert command(SERVER="granian")[1:3] == ["-m", "mlapi.server.granian"]
    refused = subprocess.run([str(VENV_BIN / "mlapi"), "serve", "--dry-run"], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "SERVER": "nginx"})
    assert refused.returncode != 0 and "SERVER='nginx' is not one of uwsgi, gunicorn, granian" in refused.stderr


def test_plain_pickle_artifacts_are_served(make_app, trained, tmp_path):
    _, estimator, sample = trained["cancer"]
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(estimator))
    client = make_app(MODEL_URI=str(path)).test_client()
    body = client.post("/predict", json={"instances": to_rows(sample)}).get_json()
    assert body["predictions"] == estimator.predict(sample).tolist()
