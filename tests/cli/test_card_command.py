"""`mlapi card`: a model's card in the terminal, for the models MODELS lists or the files named."""
import hashlib
import json
import os
import subprocess

import joblib
import pytest

from churn_model import train_churn
from conftest import ROOT, VENV_BIN


@pytest.fixture
def churn_file(tmp_path):
    path = tmp_path / "churn.joblib"
    joblib.dump(train_churn(), path)
    return path


CLEAN_ENV = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": "/tmp"}


def card(*args, **env):
    return subprocess.run([str(VENV_BIN / "mlapi"), "card", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**CLEAN_ENV, **env})


def test_the_card_of_a_model_in_models(churn_file, trained, tmp_path):
    env = {"MODELS": f"churn={churn_file},text={trained['text'][0]}", "MODEL_CACHE_DIR": str(tmp_path / "cache")}
    shown = card("churn", **env)
    assert shown.returncode == 0, shown.stderr
    digest = hashlib.sha256(churn_file.read_bytes()).hexdigest()
    lines = shown.stdout.splitlines()
    assert lines[0] == "churn:1"
    assert "  task         classification, tabular input" in lines
    assert f"  source       {churn_file}" in lines and f"  sha256       {digest}" in lines
    assert "  classes      no, yes" in lines and "  features     3" in lines
    assert "    plan           string: basic, premium, pro" in lines
    assert "    tenure_months  number" in lines and "    monthly_spend  number" in lines
    assert lines[-1] == '  example      {"plan": "basic", "tenure_months": 0.0, "monthly_spend": 0.0}'
    [path] = [line for line in lines if line.startswith("  compute path ")]
    assert "features=compiled" in path and "predict_proba=" in path  # which code computes each step

    as_json = json.loads(card("churn:1", "--json", **env).stdout)
    assert as_json["name"] == "churn" and as_json["sha256"] == digest
    assert as_json["features"][0] == {"name": "plan", "type": "string", "categories": ["basic", "premium", "pro"],
                                      "accepts_unknown": True}

    both = card("--json", **env)  # no name: every model MODELS lists
    assert [c["name"] for c in json.loads(both.stdout)] == ["churn", "text"]
    text = card("text", **env).stdout
    assert "  input        one text per instance" in text and '  example      "example text"' in text


def test_the_card_of_a_file_named_like_mlapi_serve_takes_them(churn_file, tmp_path):
    shown = card(str(churn_file), "--json", MODEL_CACHE_DIR=str(tmp_path / "cache"))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "churn"
    named = json.loads(card(f"mine:3={churn_file}", "--json").stdout)
    assert (named["name"], named["version"]) == ("mine", "3")


def test_what_cannot_be_shown_is_one_line(churn_file, tmp_path):
    env = {"MODELS": f"churn={churn_file}", "MODEL_CACHE_DIR": str(tmp_path / "cache")}
    unknown = card("nope", **env)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("mlapi: no model 'nope' to show; configured: churn:1")
    missing = card(str(tmp_path / "gone.joblib"))
    assert missing.returncode == 2 and missing.stderr == f"mlapi: no such model file: {tmp_path / 'gone.joblib'}\n"
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a pickle")
    failed = card(str(churn_file), str(broken))
    assert failed.returncode == 1 and failed.stdout.startswith("churn:1\n")
    assert failed.stderr.startswith(f"broken:1 NOT loaded from {broken}: could not unpickle")


# ---- a reader that leaves early (`mlapi card --json | head -3`): quiet, for every command -------------
def into_closed_pipe(*args, **env) -> subprocess.CompletedProcess:
    """`mlapi ARGS` writing into a pipe whose reader has already gone, as `| head` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([str(VENV_BIN / "mlapi"), *args], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**CLEAN_ENV, **env})
    finally:
        os.close(write_end)


def test_output_cut_short_by_its_reader_ends_quietly(churn_file, tmp_path):
    env = {"MODELS": f"churn={churn_file}", "MODEL_CACHE_DIR": str(tmp_path / "cache")}
    cut = into_closed_pipe("card", "--json", **env)
    assert (cut.returncode, cut.stderr) == (141, "")  # 128 + SIGPIPE, as `cat big | head` leaves cat
    assert into_closed_pipe("demo", "--help").stderr == ""
    piped = subprocess.run(f"{VENV_BIN / 'mlapi'} card --json | head -3", shell=True, cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env={**CLEAN_ENV, **env})
    assert piped.stdout.splitlines() == ["{", '  "name": "churn",', '  "version": "1",'] and piped.stderr == ""


def test_a_broken_pipe_that_is_not_the_output_is_still_shown():
    # A database's or Pub/Sub's socket breaking is a fault, not a reader that left.
    code = ("import mlapi.cli as cli\n"
            "def fail(argv): raise BrokenPipeError(32, 'Broken pipe')\n"
            "cli._run = fail\n"
            "cli.main([])\n")
    result = subprocess.run([str(VENV_BIN / "python"), "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "BrokenPipeError: [Errno 32] Broken pipe" in result.stderr
