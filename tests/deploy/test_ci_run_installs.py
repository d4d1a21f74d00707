""".ci/run installs the Debian packages tests need when they are missing (the Swagger UI test's
browser; podman, runc and mmdebstrap for the image test): with apt-get as root, through sudo
otherwise, and without sudo it stops with one line saying what to install (not apt's permission
error); a machine that has them all is left alone. Then the suite, `make test` last."""
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
    """Runs .ci/run as user FAKE_UID on a PATH with `make`, `apt-get` and (when asked) `sudo` as
    recording stand-ins, and the tools in `present` (else none the tests need): (exit status,
    stderr, calls)."""
    def run(uid: int, sudo: bool, present: tuple[str, ...] = ()):
        stand_ins = tmp_path / f"bin-{uid}-{sudo}-{len(present)}"
        stand_ins.mkdir()
        for tool in present:
            (stand_ins / tool).symlink_to(FAKEBIN / "record")
        for tool in ("bash", "dirname"):  # what the script runs on
            (stand_ins / tool).symlink_to(shutil.which(tool))
        (stand_ins / "python3").symlink_to(os.path.realpath(sys.executable))  # the stand-ins' (stdlib only)
        for tool in ("make", "apt-get") + (("sudo",) if sudo else ()):
            (stand_ins / tool).symlink_to(FAKEBIN / "record")
        (stand_ins / "id").write_text(f"#!/bin/sh\n[ \"$1\" = -u ] && echo {uid}\n")
        (stand_ins / "id").chmod(0o755)
        log = tmp_path / f"calls-{uid}-{sudo}-{len(present)}.jsonl"
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60,
                              env={"PATH": str(stand_ins), "HOME": str(tmp_path), "FAKEBIN_LOG": str(log)})
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return done.returncode, done.stderr, [[call["tool"], *call["argv"]] for call in calls]
    return run


BROWSER = ("chromium", "chromedriver")
CONTAINERS = ("podman", "runc", "mmdebstrap")
INSTALL = ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver", "podman", "runc", "mmdebstrap"]
SUITE = [["make", "test-sklearn-range"], ["make", "test"]]


def test_as_root_apt_get_runs_itself(ci_run):
    assert ci_run(0, sudo=False) == (0, "", [["apt-get", "update", "-qq"], INSTALL, *SUITE])


def test_not_root_goes_through_sudo(ci_run):
    assert ci_run(1000, sudo=True) == (0, "", [["sudo", "apt-get", "update", "-qq"], ["sudo", *INSTALL], *SUITE])


def test_not_root_without_sudo_says_what_to_install(ci_run):
    code, stderr, calls = ci_run(1000, sudo=False)
    assert (code, calls) == (1, [])  # no apt-get to fail on permissions, no suite
    assert stderr.count("\n") == 1 and stderr.startswith(".ci/run: the tests need Debian's chromium")
    assert "apt-get install chromium chromium-driver podman runc mmdebstrap" in stderr


def test_only_what_is_missing_is_installed(ci_run):
    update = ["apt-get", "update", "-qq"]
    assert ci_run(0, sudo=False, present=BROWSER) == (
        0, "", [update, ["apt-get", "install", "-y", "-qq", "podman", "runc", "mmdebstrap"], *SUITE])
    assert ci_run(0, sudo=False, present=CONTAINERS) == (
        0, "", [update, ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], *SUITE])
    assert ci_run(1000, sudo=False, present=BROWSER + CONTAINERS) == (0, "", SUITE)  # no apt-get, no sudo needed


def test_the_script_still_ends_with_make_test():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().rstrip().splitlines()[-1] == "make test"
