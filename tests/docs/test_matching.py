"""The output matcher (docs_matching.py): each rule lets through what it should, and no more."""
from __future__ import annotations

import pytest

from docs_matching import mismatch


def matches(expected: str, actual: str) -> bool:
    return mismatch(expected, actual) is None


# ---- JSON ----------------------------------------------------------------------------------------
def test_json_objects_compare_as_values_in_any_key_order_and_layout():
    page = '{"model": {"name": "iris", "version": "1"},\n "predictions": ["setosa"]}'
    assert matches(page, '{"predictions":["setosa"],"model":{"version":"1","name":"iris"}}')
    assert not matches(page, '{"predictions":["virginica"],"model":{"version":"1","name":"iris"}}')
    assert not matches(page, '{"predictions":["setosa"],"model":{"version":"2","name":"iris"}}')


def test_json_keys_must_be_the_same_unless_the_page_allows_more():
    assert "missing ['classes']" in mismatch('{"a": 1, "classes": []}', '{"a": 1}')
    assert "not on the page ['extra']" in mismatch('{"a": 1}', '{"a": 1, "extra": 2}')
    assert matches('{"a": 1, "...": "..."}', '{"a": 1, "extra": 2, "more": [3]}')
    assert matches('{"a": 1, "...": "..."}', '{"a": 1}')
    assert not matches('{"a": 1, "...": "..."}', '{"extra": 2}')  # a written key is still required


@pytest.mark.parametrize("page, actual, equal", [
    ("0.98", "0.9812", True),
    ("0.98", "0.975", True),      # half a unit either side of the last decimal written
    ("0.98", "0.985", True),
    ("0.98", "0.9749", False),
    ("0.98", "0.9851", False),
    ("0.980", "0.9812", False),   # three decimals written: three compared
    ("0.00", "0.0021", True),
    ("0.00", "0.0051", False),
    ("1e-05", "0.0000123", True),
    ("1e-05", "0.000016", False),
    ("2", "2", True),             # integers: exactly
    ("2", "3", False),
    ("2", "2.4", True),           # a float shown without decimals: rounded to none
    ("2", "2.6", False),
    ("-1.5", "-1.54", True),
    ("-1.5", "1.5", False),
])
def test_numbers_are_equal_when_rounded_to_the_decimals_written(page, actual, equal):
    assert matches(f'{{"p": {page}}}', f'{{"p": {actual}}}') is equal


def test_numbers_do_not_match_other_types():
    assert "expected the number 1" in mismatch('{"p": 1}', '{"p": "1"}')
    assert not matches('{"p": 1}', '{"p": true}')
    assert not matches('{"p": 0}', '{"p": null}')
    assert not matches('[true]', '[1]')
    assert matches('{"p": NaN}', '{"p": NaN}')
    assert not matches('{"p": NaN}', '{"p": 0.5}')
    assert not matches('{"p": 0.5}', '{"p": NaN}')


def test_json_where_the_error_is_is_named():
    page = '{"probabilities": [[0.98, 0.02, 0.00]]}'
    assert mismatch(page, '{"probabilities": [[0.98, 0.2, 0.0]]}') == \
        "$.probabilities[0][1]: expected 0.02 (to the decimals written), got 0.2"
    assert mismatch(page, '{"probabilities": [[0.98, 0.02]]}') == "$.probabilities[0]: expected 3 elements, got 2"


def test_an_ellipsis_value_matches_anything_and_an_ellipsis_element_any_number_of_elements():
    assert matches('{"a": "...", "b": 1}', '{"a": {"deep": [1, 2]}, "b": 1}')
    assert matches('{"a": "..."}', '{"a": null}')
    assert not matches('{"a": "...", "b": 1}', '{"a": 5, "b": 2}')
    assert matches('["x", "..."]', '["x"]')
    assert matches('["x", "..."]', '["x", "y", "z"]')
    assert matches('["...", "z"]', '["x", "y", "z"]')
    assert matches('["x", "...", "z"]', '["x", "z"]')
    assert not matches('["x", "..."]', '["y", "x"]')
    assert not matches('["...", "z"]', '["z", "y"]')
    assert not matches('["x", "..."]', '[]')


def test_an_ellipsis_inside_a_string_matches_any_text_there():
    page = '{"error": "unknown columns: ... (the model knows sepal_length, ...)"}'
    assert matches(page, '{"error": "unknown columns: colour (the model knows sepal_length, sepal_width)"}')
    assert not matches(page, '{"error": "missing columns: colour (the model knows sepal_length, x)"}')
    assert not matches('{"error": "exact"}', '{"error": "exact, and more"}')


def test_the_page_showing_json_needs_json():
    assert mismatch('{"a": 1}', "<html>Internal Server Error</html>") == \
        "the page shows JSON, the command printed something that is not JSON"
    assert matches("404", "404\n")
    assert not matches("404", "200")


# ---- text ----------------------------------------------------------------------------------------
def test_text_compares_line_by_line_ignoring_trailing_whitespace_and_blank_ends():
    assert matches("one\ntwo", "\none  \ntwo\n\n")
    assert not matches("one\ntwo", "one\ntwo\nthree")
    assert not matches("one\ntwo", "one")
    assert not matches("one\ntwo", "  one\ntwo")  # leading whitespace counts
    assert mismatch("one\ntwo", "one\nTWO") == "output line 2: expected 'two', got 'TWO'"
    assert mismatch("one\ntwo", "one\ntwo\nthree") == "the output has 1 more lines than the page shows"
    assert mismatch("one\ntwo", "one") == "output line 2: expected 'two', the output has only 1 lines"


def test_an_ellipsis_line_matches_any_number_of_lines():
    page = "start\n...\nend"
    assert matches(page, "start\nend")
    assert matches(page, "start\na\nb\nc\nend")
    assert not matches(page, "start\na\nb")
    assert not matches(page, "a\nstart\nend")
    assert matches("...\nserving on http://localhost:8080\n...", "x\ny\nserving on http://localhost:8080\nz")
    assert mismatch("...\nserving on http://localhost:8080\n...", "a\nserving on http://localhost:8181\nb") == \
        "the page's line 2, 'serving on http://localhost:8080', is not in the output"
    assert mismatch("start\n...\nend\nafter", "start\nx\nend\nnot after") == \
        "output line 4: expected 'after', got 'not after'"


def test_an_ellipsis_in_a_line_matches_text_within_that_line_only():
    assert matches("wrote ... rows to scored.csv", "wrote 150 rows to scored.csv")
    assert not matches("wrote ... rows to scored.csv", "wrote 150 rows to scored.parquet")
    assert not matches("a ... b", "a x\ny b")  # does not reach into the next line
    assert matches("took ... s", "took 0.3 s")


def test_json_lines_compare_as_json_line_by_line():
    page = '{"row": 0, "prediction": "setosa", "p": 0.98}\n...\n{"row": 149, "...": "..."}'
    assert matches(page, '{"p": 0.981, "row": 0, "prediction": "setosa"}\n{"row": 1}\n{"row": 149, "x": 1}')
    assert not matches(page, '{"p": 0.5, "row": 0, "prediction": "setosa"}\n{"row": 149}')
    assert not matches('{"row": 0}', "row 0")
