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
call fail is isolated: the batch is retried request by request, so only it fails
(predict_merged: the same rule serves Pub/Sub batches).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import sparse

from mlapi.errors import InvalidInput, ModelFailure
from mlapi.serving.frames import is_dataframe
from mlapi.serving.input_faults import explaining, explanations
from mlapi.serving.model import PredictionResult
from mlapi.serving.row_count import row_count


# Threads inside a micro-batcher. An exception raised into one of them from outside (the request
# timeout: http/deadline.py) would break the hand-over between requests (a follower chosen to
# lead that raises instead leaves every later request of the model waiting for ever), so the
# timeout waits until the thread leaves. The model call itself is mostly native code, which no
# such exception interrupts anyway.
UNINTERRUPTIBLE: set[int] = set()


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
        thread = threading.get_ident()
        UNINTERRUPTIBLE.add(thread)
        try:
            return self._predict_in_turn(model_input, probabilities)
        finally:
            UNINTERRUPTIBLE.discard(thread)

    def _predict_in_turn(self, model_input, probabilities: bool | None) -> PredictionResult:
        pending = _Pending(model_input, row_count(model_input), probabilities)
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
        outcomes = predict_merged(self._predict, [p.model_input for p in batch], [p.probabilities for p in batch])
        for pending, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                pending.error = outcome
            else:
                pending.result = outcome


def predict_merged(predict: Callable[[Any, bool | None], PredictionResult], inputs: list,
                   probabilities: list[bool | None],
                   alone: Callable[[Any, bool | None], PredictionResult] | None = None,
                   ) -> list[PredictionResult | BaseException]:
    """Answer several inputs with one call, each getting exactly its own rows' answers.

    The one rule for a merged call the model rejects (InvalidInput) or fails on (ModelFailure),
    or inputs that cannot be merged (sparse beside dense rows): every input is retried alone
    (with `alone`, default `predict`), so only the input at fault fails. Any other exception is
    a bug (or the model not ready) and every input sees it. Micro-batching and Pub/Sub batches both use this.
    """
    alone = alone or predict
    if len(inputs) == 1:
        return [_attempt(alone, inputs[0], probabilities[0])]
    try:
        merged_input = _concat(inputs)
    except (ValueError, TypeError):
        return [_attempt(alone, one, wanted) for one, wanted in zip(inputs, probabilities)]
    # Probabilities are computed when anyone wants them (None = the model's default, which
    # is to include them); those who said False get labels only.
    want = None if all(p is None for p in probabilities) else any(p is not False for p in probabilities)
    try:
        with explanations(False):  # a rejection is explained part by part, below
            merged = predict(merged_input, want)
    except (InvalidInput, ModelFailure):  # a model's own code failing on one part's rows too
        return [_attempt(alone, one, wanted) for one, wanted in zip(inputs, probabilities)]
    except BaseException as exc:
        return [exc] * len(inputs)
    outcomes: list[PredictionResult | BaseException] = []
    start = 0
    for one, wanted in zip(inputs, probabilities):
        stop = start + row_count(one)
        outcomes.append(_slice(merged, start, stop, wanted))
        start = stop
    return outcomes


def merge_results(results: list[PredictionResult]) -> PredictionResult:
    """Several results of one model, in order, as one."""
    proba = None if results[0].probabilities is None else [row for r in results for row in r.probabilities]
    return PredictionResult([label for r in results for label in r.predictions], proba, results[0].classes)


def _attempt(predict, model_input, probabilities) -> PredictionResult | BaseException:
    try:
        if explaining():  # the common case (a micro-batch of one request): no switch to pay for
            return predict(model_input, probabilities)
        # explained, even inside another merged call (a Pub/Sub message's rows, led through a batcher)
        with explanations(True):
            return predict(model_input, probabilities)
    except BaseException as exc:
        return exc


def _outcome(pending: _Pending) -> PredictionResult:
    if pending.error is not None:
        raise pending.error
    return pending.result


def _concat(inputs: list):
    """One input of all the inputs' rows; ValueError / TypeError when they cannot be merged."""
    first = inputs[0]
    if is_dataframe(first):
        import pandas as pd  # imported already: the inputs are DataFrames

        return pd.concat(inputs, ignore_index=True)
    if sparse.issparse(first) or any(sparse.issparse(one) for one in inputs):
        if not all(sparse.issparse(one) for one in inputs):
            raise TypeError("sparse and dense rows are answered apart")
        return sparse.vstack(inputs, format="csr")
    if isinstance(first, np.ndarray):
        return np.concatenate(inputs)
    return [item for part in inputs for item in part]


def _slice(merged: PredictionResult, start: int, stop: int, probabilities: bool | None) -> PredictionResult:
    proba = merged.probabilities[start:stop] if merged.probabilities is not None else None
    if probabilities is False:
        return PredictionResult(merged.predictions[start:stop])
    return PredictionResult(merged.predictions[start:stop], proba, merged.classes if proba is not None else None)
