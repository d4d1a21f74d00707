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
        # scikit-learn's own encoder says it (a ValueError from a model's own code is a 500)
        from sklearn.preprocessing import OneHotEncoder

        return OneHotEncoder().fit([["red"]]).transform(np.asarray(X, dtype=object))


# ---- models that answer what cannot be an answer, or fail in their own code --------------------
class WrongCountModel:
    """predict returns more values than it was given rows: a bug of the model."""

    n_features_in_ = 2

    def predict(self, X):
        return np.zeros(len(X) + 5)


class OutputRegressor:
    """A regressor whose predictions are whatever it was built with, for the first rows."""

    n_features_in_ = 2
    _estimator_type = "regressor"

    def __init__(self, values):
        self.values = values

    def predict(self, X):
        out = np.ones(len(X))
        out[:len(self.values)] = self.values[:len(X)]
        return out


class BadProbaClassifier:
    """predict_proba of the wrong width, or with NaN in it."""

    n_features_in_ = 2
    classes_ = np.array([0, 1])

    def __init__(self, fault: str):
        self.fault = fault

    def predict_proba(self, X):
        if self.fault == "width":
            return np.full((len(X), 3), 1 / 3)
        if self.fault == "rows":
            return np.full((len(X) + 1, 2), 0.5)
        proba = np.full((len(X), 2), 0.5)
        proba[0, 0] = np.nan
        return proba

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


SECRET = "/srv/secret-config/model-settings.yaml"


class ReadsItsConfig:
    """predict raises a ValueError of its own, naming a path on the server."""

    n_features_in_ = 2

    def predict(self, X):
        raise ValueError(f"could not parse {SECRET}: expected a mapping")


class CustomStep:
    """A Pipeline step of the model author's: `checked` validates with scikit-learn's
    check_array (its refusals are the client's 422s); otherwise its own code fails on a value
    over 100."""

    def __init__(self, checked: bool):
        self.checked = checked

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        if self.checked:
            from sklearn.utils import check_array

            return check_array(X)
        X = np.asarray(X, dtype=float)
        if (X > 100).any():
            raise ValueError(f"the lookup table {SECRET} has no row for this input")
        return X

    def get_params(self, deep=True):
        return {"checked": self.checked}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self


class GatedLoad:
    """A model whose unpickling waits until its gate file exists (at most a minute): a model
    load exactly as long as a test wants. It predicts its rows' first column."""

    n_features_in_ = 1

    def __init__(self, gate: str):
        self.gate = gate

    def __setstate__(self, state):
        self.__dict__.update(state)
        deadline = time.monotonic() + 60
        while not Path(self.gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def predict(self, X):
        return np.asarray(X, dtype=float)[:, 0]
