"""The model floor for bench/serve_bench.py: µs per in-process call, no HTTP.

For each model and request body: the estimator's own `predict`, and `mlapi.serving.model.ServedModel.predict`
(what a request computes by default: labels and probabilities, as lists; for a forest both come
from one `predict_proba`). serve_bench.py runs this in a fresh process with the server's
one-thread BLAS caps and reads the JSON it prints.

    python bench/serve_floor.py '{"m1": {"path": "m1.joblib", "bodies": {"1": "m1_1.json"}}}' 0.3
"""
import json
import sys
import time

import joblib
import numpy as np

from mlapi.serving.model import TEXT, ServedModel


def per_call_us(call, budget: float) -> float:
    """Median of three timed loops of about `budget` seconds each."""
    call()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.05:  # calibrate the loop length
        call()
        calls += 1
    calls = max(1, int(calls * budget / 0.05))
    loops = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        loops.append((time.perf_counter() - started) / calls * 1e6)
    return sorted(loops)[1]


def main() -> None:
    models, budget = json.loads(sys.argv[1]), float(sys.argv[2])
    floors = {}
    for name, model in models.items():
        estimator = joblib.load(model["path"])
        served = ServedModel(name, "1", estimator)
        for rows, path in model["bodies"].items():
            with open(path) as body:
                instances = json.load(body)["instances"]
            x = instances if served.input_kind == TEXT else np.asarray(instances, dtype=np.float64)
            floors[f"{name}_{rows}"] = {"predict_us": per_call_us(lambda: estimator.predict(x), budget),
                                        "served_us": per_call_us(lambda: served.predict(x), budget)}
    print(json.dumps(floors))


if __name__ == "__main__":
    main()
