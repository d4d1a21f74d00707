"""Test doubles served as models. They live in a module of their own, importable from tests/
(PYTHONPATH), because their pickles name it: a server worker unpickles them by module name."""
import os
import threading
import time
from pathlib import Path

import numpy as np


class SlowModel:
    """Takes as long as its first feature says: requests in flight on demand.

    Given a folder, each predict leaves a file there as it starts, so a test can wait until
    requests are inside predict (in whichever worker process) instead of guessing with a sleep."""

    n_features_in_ = 1

    def __init__(self, started_folder: str | None = None):
        self.started_folder = started_folder

    def predict(self, X):
        if self.started_folder is not None:
            marker = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
            Path(self.started_folder, marker).touch()
        time.sleep(float(np.asarray(X, dtype=float)[0, 0]))
        return np.zeros(len(X))

    @staticmethod
    def wait_until_started(started_folder: Path, count: int, timeout: float = 10) -> None:
        """Return once `count` predicts have started; fail the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(list(started_folder.iterdir())) < count:
            if time.monotonic() > deadline:
                started = len(list(started_folder.iterdir()))
                raise AssertionError(f"{started} of {count} predicts started within {timeout}s")
            time.sleep(0.02)


class ExplodingModel:
    """A 'model' whose predict has a bug (not an input error)."""

    n_features_in_ = 2

    def predict(self, X):
        raise RuntimeError("boom: a bug in the model code")


class UnexplainableModel:
    """Rejects every input in scikit-learn's words for an unknown category, with learned
    categories the diagnosis cannot search (one is a list, unhashable): explaining the
    rejection itself fails, and the client must still get its 422."""

    feature_names_in_ = np.array(["colour"], dtype=object)
    n_features_in_ = 1
    categories_ = [np.array(["red", ["not", "hashable"]], dtype=object)]

    def predict(self, X):
        raise ValueError("Found unknown categories ['green'] in column 0 during transform")
