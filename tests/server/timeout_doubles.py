"""A model whose predict keeps running Python for as long as its first feature says: what a
request timeout can interrupt on any thread (a sleep, tests/model_doubles.SlowModel, is
interrupted only on the main thread). Its own module, importable by the server's workers
(PYTHONPATH), because its pickle names it."""
import time

import numpy as np


class BusyModel:
    n_features_in_ = 1

    def predict(self, X):
        seconds = float(np.asarray(X, dtype=float)[0, 0])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sum(range(1000))
        return np.full(len(X), seconds)
