"""µs per call of a function, the way the in-process measurements here take it: calibrated to
a time budget, repeated, the median kept (a shared machine's load moves single runs)."""
from __future__ import annotations

import statistics
import time


def per_call_us(fn, budget: float = 0.3, repeats: int = 3) -> float:
    """Median µs per call of fn over `repeats` runs of about `budget` seconds each."""
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.05:  # calibrate
        fn()
        calls += 1
    calls = max(1, int(calls * budget / 0.05))
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)
