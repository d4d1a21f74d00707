"""A NodeTable's trees as one generated Python function, for requests of a few rows.

The level-by-level numpy walk (boosting_trees.py) costs a few numpy calls per depth level
whatever the row count: one row of a 100-tree model 20 levels deep is ~120 numpy calls,
~70 µs, and ~100 µs served, where the CPU caches are cold at each request (numpy's dispatch
code and the node arrays evicted by the HTTP router, the client and the other workers between
requests). Written as code, each tree is one nested conditional expression over the row's
values, so one row is at most ~1,200 float comparisons in Python (M3: 100 trees, up to 20
levels) and no numpy call: ~6 µs hot, ~20 µs cold (measured in process with 8 MB written
between calls). Beyond a few rows the walk is cheaper again (its per-row cost is lower), so
NodeTable uses this up to CODE_ROWS rows.

Exactness: thresholds and leaf values are written with repr(float), which reads back as the
same double; a node compares as the walk does (`x <= t` where a missing value goes right,
`not x > t` where it goes left: NaN compares False either way); the sums are Python float
additions in the walk's order (starts, then each tree in turn), the same IEEE operations as
np.add.accumulate. NodeTable keeps the function only if it gives the walk's sums bit for bit on
the probe rows (checked_raw_sum). Nothing from a request reaches the source: only the fitted
model's numbers, indices and finite-or-not literals.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

# Rows answered by the generated function; more go to the level walk. One thread, M3's 100
# trees: 1 row 7 µs vs 76, 4 rows 40 vs 106, 8 rows 80 vs 126, 16 rows 159
# vs 152: the code costs ~10 µs a row, the walk ~70 µs plus ~5 µs a row.
CODE_ROWS = 8
# Larger tables are not compiled: compiling costs ~5 µs a node at load (M3's 6,102 nodes:
# 30-40 ms), and a large model's few-row requests are dominated by its trees anyway.
MAX_CODE_NODES = 20_000
# Deeper trees are not compiled: each level is one nested parenthesis, and Python's parser
# refuses 200 (the tokenizer's limit).
MAX_CODE_DEPTH = 90
# Trees added in one statement: fewer loads and stores of the running sum, and a nesting
# depth (the parser's, the compiler's) bounded whatever the number of trees.
SUM_TERMS = 10
_NAMES = {"inf": math.inf, "nan": math.nan}  # the literals repr() writes for non-finite floats


def tree_function(table):
    """table's trees as `raw(row) -> (sum per output)` for a row given as a list of floats,
    or None when the table is too large, too deep, or has categorical splits."""
    if table.category_rows is not None or len(table.value) > MAX_CODE_NODES \
            or len(table.walking) > MAX_CODE_DEPTH:
        return None
    source = _source(table)
    namespace = dict(_NAMES)
    try:
        exec(compile(source, "<boosted trees>", "exec"), namespace)
    except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        log.warning("the boosted trees could not be compiled to code (%s): the level walk serves every request",
                    exc)
        return None
    return namespace["raw"]


def code_sum(raw, X: np.ndarray) -> np.ndarray:
    """(n_rows, n_outputs) raw sums of float64 rows X, Fortran-ordered as NodeTable.raw_sum's."""
    return np.asfortranarray(np.array([raw(row) for row in X.tolist()], dtype=np.float64).reshape(len(X), -1))


def _source(table) -> str:
    bits, mask = table.feature_bits, (1 << table.feature_bits) - 1
    packed, threshold, value = table.left_and_feature.tolist(), table.threshold.tolist(), table.value.tolist()
    missing_right = None if table.missing_right is None else table.missing_right.tolist()

    def expression(node: int) -> str:
        left = packed[node] >> bits
        if left == node:  # a leaf is its own left child
            return _literal(value[node])
        feature, limit = packed[node] & mask, _literal(threshold[node])
        # The walk: go right if x > t, or, where missing values are tracked, if not x <= t
        # (NaN: to where the node sends it).
        goes_left = f"x{feature} <= {limit}" if missing_right is not None and missing_right[node] \
            else f"not x{feature} > {limit}"
        return f"({expression(left)} if {goes_left} else {expression(left + 1)})"

    walked_roots = table.roots.tolist()
    roots = [walked_roots[position] for position in table.in_order.tolist()]  # summation order
    features = sorted({packed[node] & mask for node in range(len(packed)) if packed[node] >> bits != node})
    outputs = table.n_outputs
    lines = ["def raw(row):"] + [f"    x{feature} = row[{feature}]" for feature in features]
    # Per output: its first term assigned, then its trees added SUM_TERMS to a statement,
    # `r = r + a + b` being `(r + a) + b`: the walk's order, one store a statement, not a tree.
    for output in range(outputs):
        terms = [expression(root) for root in roots[output::outputs]]
        lines.append(f"    r{output} = {terms[0]}")
        for start in range(1, len(terms), SUM_TERMS):
            lines.append(f"    r{output} = r{output} + " + " + ".join(terms[start:start + SUM_TERMS]))
    lines.append("    return (" + "".join(f"r{output}, " for output in range(outputs)) + ")")
    return "\n".join(lines) + "\n"


def _literal(number: float) -> str:
    # float(): only a plain float's repr is a literal (numpy's reads "np.float64(...)"), and
    # nothing but a number may reach the generated source.
    number = float(number)
    if math.isfinite(number):
        return repr(number)
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
