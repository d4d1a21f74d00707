"""Test doubles served as models. They live in a module of their own, importable from tests/
(PYTHONPATH), because their pickles name it: a server worker unpickles them by module name."""
import time

import numpy as np


class SlowModel:
    """Takes as long as its first feature says: requests in flight on demand."""

    n_features_in_ = 1

    def predict(self, X):
        time.sleep(float(np.asarray(X, dtype=float)[0, 0]))
        return np.zeros(len(X))


class ExplodingModel:
    """A 'model' whose predict has a bug (not an input error)."""

    n_features_in_ = 2

    def predict(self, X):
        raise RuntimeError("boom: a bug in the model code")
