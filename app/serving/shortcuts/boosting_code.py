"""A NodeTable's trees as generated Python code, for requests of a few rows, built off the
start's critical path (DeferredCode).

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
np.add.accumulate. The function is used only once it has given the walk's sums bit for bit on
the probe rows (DeferredCode.build). Nothing from a request reaches the source: only the fitted
model's numbers, indices and finite-or-not literals.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref

import numpy as np

log = logging.getLogger(__name__)

# Rows answered by the generated function; more go to the level walk. One thread, M3's 100
# trees: 1 row 7 µs vs 76, 4 rows 40 vs 106, 8 rows 80 vs 126, 16 rows 159
# vs 152: the code costs ~10 µs a row, the walk ~70 µs plus ~5 µs a row.
CODE_ROWS = 8
# Larger tables are not compiled: compiling costs ~3-5 µs a node (M3's 6,102 nodes: 18-40 ms),
# and a large model's few-row requests are dominated by its trees anyway.
MAX_CODE_NODES = 20_000
# Deeper trees are not compiled: each level is one nested parenthesis, and Python's parser
# refuses 200 (the tokenizer's limit).
MAX_CODE_DEPTH = 90
# Trees added in one statement: fewer loads and stores of the running sum, and a nesting
# depth (the parser's, the compiler's) bounded whatever the number of trees.
SUM_TERMS = 10
# Nodes compiled in one compile() call (DeferredCode: what a request thread may wait for while a
# worker builds its code: M3's parts ~5-9 ms each). Each part costs a row one call and its
# features' reads (M3: 4 parts, one row 3.13 -> 3.27 µs hot; in one piece the compile took
# 21 ms, in parts 18).
PART_NODES = 1_500
# How long a worker's first few-row request (DeferredCode.request) leaves the interpreter to the
# requests before its code starts building.
BUILD_DELAY_SECONDS = 0.1
_NAMES = {"inf": math.inf, "nan": math.nan}  # the literals repr() writes for non-finite floats


def tree_function(table):
    """table's trees as `raw(row) -> (sum per output)` for a row given as a list of floats,
    or None when the table is too large, too deep, or has categorical splits. Compiled part by
    part (PART_NODES), one compile() call each."""
    if not compilable(table):
        return None
    namespace = dict(_NAMES)
    try:
        for source in _sources(table):
            exec(compile(source, "<boosted trees>", "exec"), namespace)
    except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        log.warning("the boosted trees could not be compiled to code (%s): the level walk serves every request",
                    exc)
        return None
    return namespace["raw"]


def compilable(table) -> bool:
    """Whether tree_function would write the table's trees as code (no categorical splits, not
    too large, not too deep)."""
    return table.category_rows is None and len(table.value) <= MAX_CODE_NODES \
        and len(table.walking) <= MAX_CODE_DEPTH


def code_sum(raw, X: np.ndarray) -> np.ndarray:
    """(n_rows, n_outputs) raw sums of float64 rows X, Fortran-ordered as NodeTable.raw_sum's."""
    return np.asfortranarray(np.array([raw(row) for row in X.tolist()], dtype=np.float64).reshape(len(X), -1))


class DeferredCode:
    """A table's generated code, built off the start's critical path and checked before use.

    Compiling the code is ~30 ms of a cold start (M3: 6,102 nodes), and the level walk answers
    the same numbers meanwhile (~70 µs a row slower). So the probe keeps its rows and the walk's
    sums, and the code is built in a background thread of the process that first asks for it: a
    server's worker on its first request of a few rows (its master, which only loads and forks,
    never does), after which the walk serves until the code has given those sums bit for bit.
    Each worker builds its own (a thread does not survive a fork; a process whose pid changed
    builds again), in parts (PART_NODES), so a request thread that wants the interpreter meanwhile
    waits for one part's compile(), a few milliseconds, not the whole."""

    @classmethod
    def keep(cls, table, rows: np.ndarray, walked: np.ndarray) -> DeferredCode | None:
        """The table's deferred code, or None for a table never written as code (nothing kept)."""
        return cls(table, rows, walked) if len(rows) and compilable(table) else None

    def __init__(self, table, rows: np.ndarray, walked: np.ndarray):
        # Copies: the probe's caller keeps its arrays (and `walked` may be a view of a larger one).
        self.table, self.rows, self.walked = table, np.array(rows, dtype=np.float64), np.array(walked)
        self.started_in = None  # the pid whose thread builds, or built, the code
        _DEFERRED.add(self)

    def request(self) -> None:
        """Start building in this process, once (two threads asking at once may both build:
        the same code, set twice). Never raises: the request that asks is answered by the walk."""
        if self.started_in == os.getpid():
            return
        self.started_in = os.getpid()
        try:
            threading.Thread(target=self._build_soon, args=(BUILD_DELAY_SECONDS,),
                             name="mlapi-boosted-trees-code", daemon=True).start()
        except Exception:  # noqa: BLE001 - no thread to be had (a pids limit): the walk serves, not retried
            log.warning("could not start the thread that builds the boosted trees' code: the walk serves", exc_info=True)

    def _build_soon(self, delay: float) -> None:
        # A pause first: the request that asked (and the first others of a cold start) finish
        # on the walk rather than wait for the interpreter while a part compiles.
        time.sleep(delay)
        self.build()

    def build(self) -> bool:
        """Compile, check against the walk's sums on the probe rows, and hand the code to the
        table only if they agree bit for bit (NaN for NaN). True when the table has it."""
        rows, walked, code = self.rows, self.walked, None
        if rows is None:  # built, or refused, already (here or in the parent of a fork)
            return self.table.code is not None
        try:
            code = tree_function(self.table)
            agrees = code is not None and np.array_equal(code_sum(code, rows), walked, equal_nan=True)
        except Exception:  # noqa: BLE001 - our fault, whatever it is: the walk serves
            log.warning("the boosted trees' generated code failed on the probe rows: not used", exc_info=True)
            agrees, code = False, None
        if agrees:
            self.table.code = code
        elif code is not None:  # our fault too: the walk (checked against the model) serves every request
            log.warning("the boosted trees' generated code differs from their walk on the probe rows: not used")
        self.rows = self.walked = None  # what the check needed, no longer
        return agrees


def build_deferred() -> int:
    """Build, here and now, the code of every table of this process that has none yet (the
    tests, which check the code's answers without waiting for a thread). How many got theirs."""
    return sum(deferred.build() for deferred in list(_DEFERRED) if deferred.table.code is None)


# Every DeferredCode of the process (weakly: a model unloaded takes its own with it).
_DEFERRED: weakref.WeakSet = weakref.WeakSet()


def _sources(table) -> list[str]:
    """The code's parts, then `raw`, which calls them: per output, its trees in summation
    order split into parts of about PART_NODES nodes, each `def p<k>(row[, r])` adding its
    trees to the running sum it is given, SUM_TERMS to a statement (`r = r + a + b` is
    `(r + a) + b`: the walk's order, one store a statement, not a tree)."""
    bits, mask = table.feature_bits, (1 << table.feature_bits) - 1
    packed, threshold, value = table.left_and_feature.tolist(), table.threshold.tolist(), table.value.tolist()
    missing_right = None if table.missing_right is None else table.missing_right.tolist()

    def expression(node: int, used: set) -> str:
        size[0] += 1
        left = packed[node] >> bits
        if left == node:  # a leaf is its own left child
            return _literal(value[node])
        feature, limit = packed[node] & mask, _literal(threshold[node])
        used.add(feature)
        # The walk: go right if x > t, or, where missing values are tracked, if not x <= t
        # (NaN: to where the node sends it).
        goes_left = f"x{feature} <= {limit}" if missing_right is not None and missing_right[node] \
            else f"not x{feature} > {limit}"
        return f"({expression(left, used)} if {goes_left} else {expression(left + 1, used)})"

    def part(name: str, terms: list[str], used: set, first: bool) -> str:
        lines = [f"def {name}(row):" if first else f"def {name}(row, r):"]
        lines += [f"    x{feature} = row[{feature}]" for feature in sorted(used)]
        if first:
            lines.append(f"    r = {terms[0]}")
            terms = terms[1:]
        for start in range(0, len(terms), SUM_TERMS):
            lines.append("    r = r + " + " + ".join(terms[start:start + SUM_TERMS]))
        return "\n".join(lines + ["    return r"]) + "\n"

    walked_roots = table.roots.tolist()
    roots = [walked_roots[position] for position in table.in_order.tolist()]  # summation order
    outputs = table.n_outputs
    sources, calls, size = [], [], [0]  # size: nodes written since the last part
    for output in range(outputs):
        terms, used, first = [], set(), True
        output_roots = roots[output::outputs]
        for k, root in enumerate(output_roots):
            terms.append(expression(root, used))
            if size[0] >= PART_NODES or k == len(output_roots) - 1:
                name = f"p{len(sources)}"
                sources.append(part(name, terms, used, first))
                calls.append(f"    r{output} = {name}(row)" if first else f"    r{output} = {name}(row, r{output})")
                terms, used, first, size[0] = [], set(), False, 0
    returned = "".join(f"r{output}, " for output in range(outputs))
    sources.append("\n".join(["def raw(row):", *calls, f"    return ({returned})"]) + "\n")
    return sources


def _literal(number: float) -> str:
    # float(): only a plain float's repr is a literal (numpy's reads "np.float64(...)"), and
    # nothing but a number may reach the generated source.
    number = float(number)
    if math.isfinite(number):
        return repr(number)
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
