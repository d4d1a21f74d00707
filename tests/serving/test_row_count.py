"""One row count for a request at every stage: decoded instances (MAX_ROWS) and the model's
input (micro-batching), without reading a value."""
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from mlapi.serving.instances import Columns
from mlapi.serving.row_count import row_count


@pytest.mark.parametrize("rows,features,expected", [
    ([[1, 2], [3, 4], [5, 6]], False, 3),
    ([{"a": 1}, {"a": 2}], False, 2),
    (["a text", "another"], False, 2),             # instances, or a text model's input
    ([1.0, 2.0, 3.0], True, 1),                    # one flat row of features is one row
    ([1.0, 2.0, 3.0], False, 3),                   # as instances: three (wrong) rows, for MAX_ROWS
    ([], True, 0),
    (Columns(["a", "b"], [[1, 2], [3, 4]]), False, 2),
    (Columns(["a"], "not rows"), False, 0),
    ({"format": "csr", "indptr": [0, 1, 1, 3]}, True, 3),
    ({"format": "csr", "indptr": "broken"}, True, 0),
    ("not rows", False, 0),
    (np.zeros((4, 2)), False, 4),
    (pd.DataFrame({"a": [1, 2, 3, 4, 5]}), False, 5),
    (sparse.csr_matrix(np.eye(6)), True, 6),
])
def test_row_count(rows, features, expected):
    assert row_count(rows, features) == expected
