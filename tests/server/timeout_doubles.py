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


class StuckModel:
    """A predict that never returns, whatever is raised into it (the app's RequestTimeout
    included): a native call that never comes back to Python, as far as the server can tell.
    Only the server's own kill (uWSGI's harakiri) ends it."""
    n_features_in_ = 1

    def predict(self, X):
        while True:
            try:
                time.sleep(3600)
            except BaseException:
                pass
