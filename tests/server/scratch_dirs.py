"""A fixture for tests that call launch.prepare in process: the directories it makes with
tempfile (the metrics directory, uWSGI's socket directory) go to the test's tmp_path instead
of being left in /tmp, where only a server's exit removes them."""
import tempfile

import pytest


@pytest.fixture(autouse=True)
def scratch_dirs_in_tmp_path(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
