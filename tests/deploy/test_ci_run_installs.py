""".ci/run installs the Swagger UI test's browser when it is missing: with apt-get as root, through
sudo otherwise, and without sudo it stops with one line saying what to install (not apt's
permission error); then the suite, `make test` last."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from makefile_helpers import FAKEBIN

SCRIPT = ROOT / ".ci" / "run"


@pytest.fixture
def ci_run(tmp_path):
    """Runs .ci/run on a PATH without chromium, as user FAKE_UID, with `make`, `apt-get` and
    (when asked) `sudo` as recording stand-ins: (exit status, stderr, calls)."""
    def run(uid: int, sudo: bool):
        stand_ins = tmp_path / f"bin-{uid}-{sudo}"
        stand_ins.mkdir()
        for tool in ("bash", "dirname"):  # what the script runs on
            (stand_ins / tool).symlink_to(shutil.which(tool))
        (stand_ins / "python3").symlink_to(os.path.realpath(sys.executable))  # the stand-ins' (stdlib only)
        for tool in ("make", "apt-get") + (("sudo",) if sudo else ()):
            (stand_ins / tool).symlink_to(FAKEBIN / "record")
        (stand_ins / "id").write_text(f"#!/bin/sh\n[ \"$1\" = -u ] && echo {uid}\n")
        (stand_ins / "id").chmod(0o755)
        log = tmp_path / f"calls-{uid}-{sudo}.jsonl"
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60,
                              env={"PATH": str(stand_ins), "HOME": str(tmp_path), "FAKEBIN_LOG": str(log)})
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return done.returncode, done.stderr, [[call["tool"], *call["argv"]] for call in calls]
    return run


INSTALL = ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]
SUITE = [["make", "test-sklearn-range"], ["make", "test"]]


def test_as_root_apt_get_runs_itself(ci_run):
    assert ci_run(0, sudo=False) == (0, "", [["apt-get", "update", "-qq"], INSTALL, *SUITE])


def test_not_root_goes_through_sudo(ci_run):
    assert ci_run(1000, sudo=True) == (0, "", [["sudo", "apt-get", "update", "-qq"], ["sudo", *INSTALL], *SUITE])


def test_not_root_without_sudo_says_what_to_install(ci_run):
    code, stderr, calls = ci_run(1000, sudo=False)
    assert (code, calls) == (1, [])  # no apt-get to fail on permissions, no suite
    assert stderr.count("\n") == 1 and stderr.startswith(".ci/run: the Swagger UI test needs chromium")
    assert "apt-get install chromium chromium-driver" in stderr


def test_the_script_still_ends_with_make_test():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().rstrip().splitlines()[-1] == "make test"
