"""Adaptive micro-batching: concurrent predict calls for one model version become one call.

scikit-learn's per-call overhead dominates small requests (a Pipeline's predict costs about
the same for 1 row as for 100), so when requests arrive together, answering them with one
predict / predict_proba call multiplies throughput.

How it adapts ("group commit"): a request that finds the model idle runs at once, alone —
under low load nobody waits for anything. Requests that arrive while a call is running queue
up; when the call ends, the first queued request becomes the leader and runs everyone queued
(up to MAX_BATCH_SIZE rows) in one call. Only a leader that inherited a queue (i.e. under
load) may wait up to MAX_BATCH_WAIT_MS for more rows to fill its batch.

Each request still gets exactly its own rows' answers. A request whose rows make the merged
call fail is isolated: the batch is retried request by request, so only it fails.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mlapi.errors import InvalidInput
from mlapi.serving.frames import is_dataframe
from mlapi.serving.model import PredictionResult


@dataclass
class _Pending:
    model_input: Any
    rows: int
    probabilities: bool | None
    done: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)
    lead: bool = False
    result: PredictionResult | None = None
    error: BaseException | None = None


class MicroBatcher:
    """One per served model version; thread-safe."""

    def __init__(self, predict: Callable[[Any, bool | None], PredictionResult], max_rows: int, max_wait_s: float):
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)
        self._queue: list[_Pending] = []
        self._busy = False

    def predict(self, model_input, probabilities: bool | None = None) -> PredictionResult:
        pending = _Pending(model_input, _row_count(model_input), probabilities)
        with self._lock:
            if self._busy:
                self._queue.append(pending)
                self._more.notify()
            else:
                self._busy = True
                pending.lead = True
        if not pending.lead:
            pending.done.wait()
            if not pending.lead:  # answered by another leader
                return _outcome(pending)
            inherited = True
        else:
            inherited = False
        return self._lead(pending, inherited)

    def _lead(self, me: _Pending, inherited: bool) -> PredictionResult:
        batch = [me]
        with self._lock:
            if inherited and self.max_wait_s > 0:
                # MAX_BATCH_WAIT_MS bounds how long the oldest request waits in all: the
                # leader is the oldest queued, and has already waited out the previous call.
                deadline = me.arrived + self.max_wait_s
                while sum(p.rows for p in batch + self._queue) < self.max_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._more.wait(remaining):
                        break
            rows = me.rows
            while self._queue and rows + self._queue[0].rows <= self.max_rows:
                rows += self._queue[0].rows
                batch.append(self._queue.pop(0))
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue.pop(0)
                    successor.lead = True
                    successor.done.set()  # it leads the next batch; we return at once
                else:
                    self._busy = False
            for pending in batch[1:]:
                pending.done.set()
        return _outcome(me)

    def _run(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            _settle(batch[0], self._predict, batch[0].model_input)
            return
        want = None if all(p.probabilities is None for p in batch) else any(
            p.probabilities is not False for p in batch)
        try:
            merged = self._predict(_concat([p.model_input for p in batch]), want)
        except InvalidInput:
            for pending in batch:  # isolate the request the model rejects
                _settle(pending, self._predict, pending.model_input)
            return
        except BaseException as exc:  # a bug: every request in the call sees it
            for pending in batch:
                pending.error = exc
            return
        start = 0
        for pending in batch:
            stop = start + pending.rows
            pending.result = _slice(merged, start, stop, pending.probabilities)
            start = stop


def _settle(pending: _Pending, predict, model_input) -> None:
    try:
        pending.result = predict(model_input, pending.probabilities)
    except BaseException as exc:
        pending.error = exc


def _outcome(pending: _Pending) -> PredictionResult:
    if pending.error is not None:
        raise pending.error
    return pending.result


def _row_count(model_input) -> int:
    return model_input.shape[0] if hasattr(model_input, "shape") else len(model_input)


def _concat(inputs: list):
    first = inputs[0]
    if is_dataframe(first):
        import pandas as pd  # imported already: the inputs are DataFrames

        return pd.concat(inputs, ignore_index=True)
    if isinstance(first, np.ndarray):
        return np.concatenate(inputs)
    return [item for part in inputs for item in part]


def _slice(merged: PredictionResult, start: int, stop: int, probabilities: bool | None) -> PredictionResult:
    proba = merged.probabilities[start:stop] if merged.probabilities is not None else None
    if probabilities is False:
        return PredictionResult(merged.predictions[start:stop])
    return PredictionResult(merged.predictions[start:stop], proba, merged.classes if proba is not None else None)
