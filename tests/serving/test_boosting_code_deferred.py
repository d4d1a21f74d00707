"""The boosted trees' generated code built off the cold start's path
(app/serving/shortcuts/boosting_code.py, DeferredCode): the probe keeps its rows and the walk's
sums; the first request of a few rows in a process starts a thread that compiles the code in
parts and hands it to the table only once it gives those sums bit for bit; the walk answers
meanwhile, and a forked process builds its own."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from mlapi.serving.model import ServedModel
from mlapi.serving.shortcuts import boosting_code
from mlapi.serving.shortcuts.boosting_code import CODE_ROWS, build_deferred, code_sum, tree_function
from mlapi.serving.shortcuts.hist_boosting import hist_table
from mlapi.serving.shortcuts.probes import probe_rows


@pytest.fixture(autouse=True)
def one_native_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def model_and_rows():
    X, y = load_breast_cancer(return_X_y=True)
    gaps = X.copy()
    gaps[np.random.default_rng(1).uniform(size=X.shape) < 0.1] = np.nan
    return HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(gaps, y), X


def _wait_for_code(table, seconds=20.0):
    deadline = time.monotonic() + seconds
    while table.code is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return table.code


def test_the_code_is_built_after_the_first_few_row_request_and_the_walk_answers_meanwhile(model_and_rows,
                                                                                          monkeypatch):
    model, X = model_and_rows
    table = hist_table(model)
    table.checked_raw_sum(probe_rows(model))
    assert table.code is None  # nothing compiled during the load
    monkeypatch.setattr(boosting_code, "BUILD_DELAY_SECONDS", 1.0)  # long enough to see the wait
    rows = X[:CODE_ROWS]
    assert np.array_equal(table.raw_sum(rows[:1]), model._raw_predict(rows[:1]))  # the walk, and it asks
    assert table.code is None  # BUILD_DELAY_SECONDS: the request that asked did not wait for it
    assert any(thread.name == "mlapi-boosted-trees-code" for thread in threading.enumerate())
    code = _wait_for_code(table)
    assert code is not None
    assert np.array_equal(table.raw_sum(rows), model._raw_predict(rows))  # now the code's, bit for bit
    assert np.array_equal(code_sum(code, rows), model._raw_predict(rows))


def test_more_rows_than_the_code_serves_do_not_ask_for_it(model_and_rows):
    model, X = model_and_rows
    table = hist_table(model)
    table.checked_raw_sum(probe_rows(model))
    table.raw_sum(X[:CODE_ROWS + 1])
    assert table.deferred_code.started_in is None


def _child_builds_its_own(table, rows, expected, results):
    # In the forked child: the parent's thread did not come along; asking again builds here.
    if table.code is not None:  # the parent's build finished before the fork: not this test's case
        results.put((os.getpid(), "inherited"))
        return
    table.raw_sum(rows[:1])
    code = _wait_for_code(table)
    results.put((os.getpid(), code is not None and bool(np.array_equal(code_sum(code, rows), expected))))


def test_a_forked_process_builds_its_own_code(model_and_rows, monkeypatch):
    model, X = model_and_rows
    table = hist_table(model)
    table.checked_raw_sum(probe_rows(model))
    # The parent asked (a master never does; a test process may) and forks before its thread
    # is done: the pause before the build is long enough for that here.
    monkeypatch.setattr(boosting_code, "BUILD_DELAY_SECONDS", 30.0)  # the parent's thread waits (a daemon)
    table.raw_sum(X[:1])
    assert table.deferred_code.started_in == os.getpid() and table.code is None
    monkeypatch.setattr(boosting_code, "BUILD_DELAY_SECONDS", 0.0)  # read by the child's request
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_child_builds_its_own, args=(table, X[:CODE_ROWS], model._raw_predict(X[:CODE_ROWS]), results))
    child.start()
    pid, built = results.get(timeout=60)
    child.join(30)
    assert pid != os.getpid() and built is True


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_big_tables_compile_in_parts_that_sum_in_the_walks_order(model_and_rows, kind, monkeypatch):
    model, X = model_and_rows
    if kind == "multiclass":  # one sum an output, each its own parts
        iris_X, iris_y = load_iris(return_X_y=True)
        model, X = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(iris_X, iris_y), iris_X
    table = hist_table(model)
    monkeypatch.setattr(boosting_code, "PART_NODES", 50)
    sources = boosting_code._sources(table)
    assert len(sources) > 5 and sources[-1].startswith("def raw(row):")
    code = tree_function(table)
    rows = np.vstack([X[:50], np.full((1, X.shape[1]), np.nan), np.full((1, X.shape[1]), -0.0)])
    assert np.array_equal(code_sum(code, rows), model._raw_predict(rows))


def test_nothing_is_kept_for_a_table_never_written_as_code(model_and_rows):
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 6, 600), rng.normal(size=600)]).astype(np.float64)
    y = (X[:, 0] % 2 == 0) ^ (X[:, 1] > 0)
    categorical = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0], random_state=0).fit(X, y)
    table = hist_table(categorical)
    table.checked_raw_sum(probe_rows(categorical))
    assert table.deferred_code is None  # no rows kept, no thread ever started for it
    assert np.array_equal(table.raw_sum(X[:1]), categorical._raw_predict(X[:1]))


def test_a_thread_that_cannot_start_leaves_the_walk_answering(model_and_rows, monkeypatch):
    model, X = model_and_rows
    table = hist_table(model)
    table.checked_raw_sum(probe_rows(model))

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    assert np.array_equal(table.raw_sum(X[:1]), model._raw_predict(X[:1]))  # no exception: the walk
    assert np.array_equal(table.raw_sum(X[:2]), model._raw_predict(X[:2]))  # not retried either
    assert table.code is None


def test_a_served_model_gets_its_code_through_build_deferred(model_and_rows):
    model, X = model_and_rows
    served = ServedModel("deferred", "1", model)
    assert served.compute_path["predict_proba"] == {"path": "hist-gradient-boosting"}
    assert build_deferred() >= 1
    for start in range(0, 40, CODE_ROWS):
        batch = X[start:start + CODE_ROWS]
        result = served.predict(batch)
        assert result.probabilities == model.predict_proba(batch).tolist()
        assert result.predictions == model.predict(batch).tolist()
