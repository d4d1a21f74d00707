"""as_floats: many rows take np.fromiter, which must read every value exactly as np.asarray
(the path below FROMITER_ROWS rows, and the reference) does: the same matrix, or the same refusal."""
import numpy as np
import pytest

from mlapi.serving.typed_rows import FROMITER_ROWS, as_floats

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
