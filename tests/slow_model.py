"""A 'model' that takes as long as its first feature says: in-flight requests on demand."""
import time

import numpy as np


class SlowModel:
    n_features_in_ = 1

    def predict(self, X):
        time.sleep(float(np.asarray(X, dtype=float)[0, 0]))
        return np.zeros(len(X))
