"""as_floats: many rows take np.fromiter, which must read every value exactly as np.asarray
(the path below FROMITER_ROWS rows, and the reference) does: the same matrix, or the same refusal.
frame_from_rows / frame_from_matrix: each column built once gives the DataFrame (dtypes, values,
refusals) that converting a DataFrame of objects column by column gave."""
import random

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlapi.errors import InvalidInput
from mlapi.serving.frames import column_index
from mlapi.serving.instances import to_model_input
from mlapi.serving.model import ServedModel
from mlapi.serving.typed_rows import (FROMITER_ROWS, _as_text, _refuse_nested, as_cells, as_floats,
                                      frame_from_columns, frame_from_matrix, frame_from_rows)

ODD_VALUES = [1, 2.5, None, True, False, "1.5", " 2 ", 2**70, -0.0, float("nan"), float("inf"),
              "nan", "abc", "", [1, 2], {"a": 1}]


def reference(rows):
    try:
        return np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        return None


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_many_rows_read_each_value_as_numpy_does(value):
    rows = [[1.0, 2.0, 3.0] for _ in range(FROMITER_ROWS + 2)]
    rows[4][1] = value
    got, expected = as_floats(rows), reference(rows)
    if expected is None:
        assert got is None
    else:
        assert got.shape == expected.shape and got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)
        assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_ragged_or_odd_rows_are_judged_by_numpy():
    ragged = [[1.0, 2.0, 3.0] for _ in range(FROMITER_ROWS + 2)]
    ragged[3] = [1.0, 2.0]
    assert as_floats(ragged) is None
    tuples = [(1.0, 2.0)] * (FROMITER_ROWS + 2) + [[1.0, 2.0]]
    np.testing.assert_array_equal(as_floats(tuples), reference(tuples))
    many = [[float(i), i * 2.0] for i in range(100)]
    np.testing.assert_array_equal(as_floats(many), np.array(many))


# --- Rows → DataFrame: each column built once must give the frame the object-matrix conversion gave ---

PLAIN_INTS = [0, 1, -7, 2**31, 2**53 + 1, 2**63 - 1, -2**63]
PLAIN_FLOATS = [0.5, -0.0, 2.0, 1e300, float("nan"), float("inf"), -float("inf")]
NULLS = [None, float("nan")]
BOOLS = [True, False]
BIG_INTS = [2**63, 2**64 + 1, 2**70 + 1, -2**63 - 1, -2**70]
NUMERIC_TEXT = ["1.5", " 2 ", "01234", "1e3", "inf", "nan", "-0"]
TEXT = ["abc", "", "pro", "basic"]
NESTED = [[1], {"a": 1}, []]
# Pools a generated column draws from, the plain ones (what JSON usually carries) most often.
POOLS = [PLAIN_INTS] * 4 + [PLAIN_FLOATS] * 4 + [NULLS] * 2 + [TEXT] * 3 + [BOOLS, BIG_INTS, NUMERIC_TEXT, NESTED]
STRINGS = ["plan", "zip"]


def mixed_model():
    """plan and zip are string categories (zip codes look numeric: "01234"), x, y, z numbers."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"plan": rng.choice(["pro", "basic", "abc"], 60), "x": rng.normal(size=60),
                      "zip": rng.choice(["01234", "1.5", "nan"], 60), "y": rng.integers(0, 9, 60),
                      "z": rng.normal(size=60)})
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), STRINGS),
                                                  remainder="passthrough"),
                          HistGradientBoostingClassifier(max_iter=5, random_state=0))
    return ServedModel("mixed", "1", model.fit(X, X["x"] > 0)), list(X.columns)


def numbers_model():
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 0.0, 1.0, 0.0], "z": [3.0, 1.0, 2.0, 0.0]})
    return ServedModel("numbers", "1", LogisticRegression().fit(X, [0, 1, 0, 1])), list(X.columns)


def frame_the_old_way(model, matrix, names):
    """typed_rows.frame_from_matrix before columns were built one by one (41cb3a1): the reference."""
    frame = pd.DataFrame(matrix, columns=column_index(tuple(names)), copy=matrix.dtype == object)
    if matrix.dtype == object:
        for position, column in enumerate(names):
            if column in model.string_columns:
                frame[column] = _as_text(matrix[:, position], column)
                continue
            try:
                converted = pd.to_numeric(frame[column], errors="coerce")
            except TypeError:
                converted = None
            if converted is not None and converted.notna().sum() == frame[column].notna().sum():
                frame[column] = converted
            else:
                _refuse_nested(matrix[:, position], column)
    return frame


def old_frame_from_rows(model, rows, names):
    matrix = None if model.string_columns else as_floats(rows)
    if matrix is None or matrix.ndim != 2:
        matrix = as_cells(rows, len(names))
    return frame_the_old_way(model, matrix, names)


def generated_rows(rng: random.Random, names: list[str]) -> list[list]:
    count = rng.choice([1, 1, 2, 3, 9, 30])
    columns = []
    for _ in names:
        values = [value for pool in rng.sample(POOLS, rng.choice([1, 1, 2])) for value in pool]
        if NESTED[0] in values and rng.random() < 0.7:  # keep most row sets free of refusals
            values = [v for v in values if not isinstance(v, (list, dict))] or [1]
        columns.append([rng.choice(values) for _ in range(count)])
    return [list(row) for row in zip(*columns)]


def outcome(build):
    """The frame built, or the InvalidInput refusal's message and details."""
    try:
        return build()
    except InvalidInput as refused:
        return refused.message, refused.details


def assert_same_frame(got, expected) -> None:
    if isinstance(expected, tuple):
        assert got == expected
        return
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=True,
                                  check_column_type=True)
    assert got.columns is expected.columns  # the shared Index app/serving/frames.py recognizes
    if all(dtype == np.float64 for dtype in got.dtypes):  # rows of floats: the linear shortcut's if C-ordered
        assert got.to_numpy().flags.c_contiguous == expected.to_numpy().flags.c_contiguous
    for name in got.columns:
        mine, theirs = got[name].to_numpy(), expected[name].to_numpy()
        if mine.dtype == object:  # 1 == 1.0 == True: the values' own types must match too
            assert [type(v) for v in mine] == [type(v) for v in theirs], name
        elif mine.dtype.kind == "f":  # -0.0 == 0.0
            assert np.array_equal(np.signbit(mine), np.signbit(theirs)), name


@pytest.mark.parametrize("build_model", [mixed_model, numbers_model])
@pytest.mark.parametrize("text_storage", ["python", "pyarrow"])  # the server's (server/startup.py), the CLI's
def test_generated_rows_give_the_frame_the_object_conversion_gave(build_model, text_storage):
    with pd.option_context("mode.string_storage", text_storage):  # what pandas 3 backs inferred text with
        served, names = build_model()
        rng = random.Random(f"typed-rows-{served.name}")
        for _ in range(400):
            rows = generated_rows(rng, names)
            expected = outcome(lambda: old_frame_from_rows(served, rows, names))
            assert_same_frame(outcome(lambda: frame_from_rows(served, rows, names)), expected)
            cells = as_cells(rows, len(names))  # rows sent as lists (instances._from_lists) for a mixed model
            assert_same_frame(outcome(lambda: frame_from_matrix(served, cells, names)),
                              outcome(lambda: frame_the_old_way(served, cells, names)))
            records = [dict(zip(names, row)) for row in rows]
            assert_same_frame(outcome(lambda: to_model_input(served, records)), expected)
            if served.string_columns:  # without one, rows of numbers alone are one float64 matrix instead
                columns = [[record[name] for record in records] for name in names]
                assert_same_frame(outcome(lambda: frame_from_columns(served, columns, names)), expected)


def test_the_frame_predicts_as_the_object_conversion_did():
    served, names = mixed_model()
    rows = [["pro", 1, "01234", 2, 0.5], ["basic", None, 7, 3, -1.0], [None, 2.5, "1.5", 2**40, float("nan")]]
    for count in (1, 3):
        frame, reference = frame_from_rows(served, rows[:count], names), old_frame_from_rows(served, rows[:count], names)
        assert frame["zip"].tolist()[0] == "01234"
        np.testing.assert_array_equal(served.predict(frame).probabilities, served.estimator.predict_proba(reference))


def test_rows_of_other_lengths_or_none_are_read_as_before():
    served, names = mixed_model()
    for rows in ([], [["pro", 1, "01234"], ["basic", 2.5, "1", 3, 4.0]], [["pro", 1, "01234", 2, 0.5], ["basic"]]):
        assert_same_frame(outcome(lambda: frame_from_rows(served, rows, names)),
                          outcome(lambda: old_frame_from_rows(served, rows, names)))


def test_without_pandas_own_column_constructor_the_frame_is_the_same(monkeypatch):
    served, names = mixed_model()
    rng = random.Random("typed-rows-fallback")
    cases = [generated_rows(rng, names) for _ in range(40)]
    expected = [outcome(lambda: frame_from_rows(served, rows, names)) for rows in cases]
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")  # stands for a pandas release without it
    for rows, frame in zip(cases, expected):
        assert_same_frame(outcome(lambda: frame_from_rows(served, rows, names)), frame)
