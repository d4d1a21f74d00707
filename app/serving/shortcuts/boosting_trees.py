"""The trees of a boosted ensemble walked together, one depth level per numpy step, and their
leaf values summed in the order scikit-learn adds them.

scikit-learn walks a boosted model one tree at a time, each in a compiled loop over the rows
(HistGradientBoosting's TreePredictor.predict, GradientBoosting's predict_stages): cheap per
tree, but a Python call, an output array and, for the histogram models, an OpenMP region per
tree. Here every (row, tree) pair advances one level per step over flat node arrays of all the
trees, so 100 trees of depth 6 cost 6 rounds of a few numpy calls for one row as for 100.
A few rows of a HistGradientBoosting model (a request of one row, the common case) go instead
through the trees as generated Python code (boosting_code.py), built after the start and used
once it agrees with the walk (GradientBoosting's tables are never probed that way: walk only).

Exactness: a node compares exactly as scikit-learn's loops do (`x <= threshold` in float64, a
missing value where the node learned to send it, a category by its bitsets), and the sum is an
accumulation in scikit-learn's order (its starting values, then each iteration's tree in turn),
not numpy's pairwise sum, so the raw predictions are the same floats, not merely close ones.
"""
from __future__ import annotations

import numpy as np

from mlapi.serving.shortcuts.boosting_code import CODE_ROWS, DeferredCode, code_sum
from mlapi.serving.shortcuts.boosting_masks import LeafMasks

# A categorical node's lookup row: one entry per category code (scikit-learn's bitsets hold
# codes 0..255), then one for a missing value.
_CODES = 256
_MISSING = _CODES
# Rows walked together: beyond ~300 rows the (trees × rows) arrays leave the CPU caches and a
# row costs 2-3x more (M3's booster: 3,000 rows in one walk 64 ms, in chunks of 128 ~14 ms).
CHUNK_ROWS = 128
# Batches larger than this go to the model's own method: its compiled per-tree loop costs less
# per row once its per-call and per-tree overheads are spread over many rows (one thread,
# measured: M3's booster 1,000 rows 4.3 ms own vs 4.7 chunked here; GradientBoosting 300 rows
# 0.54 vs 0.62 ms), and it is the reference anyway.
MAX_ROWS = 256
# Most (tree, row) pairs reach their leaves long before their tree's deepest level (M3's 100
# trees, 20 levels: 1,175 steps a row level by level, 623 of them from a split; after step 6,
# 40 of the 100 pairs a row are still inside their trees, after step 9, 23), so from
# COMPACT_FROM on only the pairs not yet at a leaf are stepped, the list recompacted every
# COMPACT_EVERY steps. Callgrind, M3's walk of 100 rows: 7.21 M instructions without, 5.83 M
# with (6, 3); (4, 4) 6.05 M, (5, 3) 5.93 M, (6, 4) 5.88 M. Trees of 6 levels or fewer never compact.
COMPACT_FROM = 6
COMPACT_EVERY = 3
# The walk's gathers take indices it made itself, always in range: np.take's "wrap" mode
# then gives what the default "raise" does for fewer instructions (no per-index error
# path: callgrind, 10.5 against 13.5 a gathered element).
_VALID = "wrap"


class NodeTable:
    """Every tree's nodes in flat arrays, laid out level by level so that each split's two
    children sit side by side (right = left + 1): a step is `left[node] + go_right`. A leaf is
    its own left child and never goes right (threshold +inf, missing values left), so a walk
    may step past it. Trees are walked deepest first, each step only those not yet at their
    leaves; `starts` (the values scikit-learn adds before any tree, per output) are one-leaf
    trees in front, and the leaf values come back in summation order."""

    def __init__(self, trees, n_outputs: int, starts=(), category_lookup=None):
        """trees: per tree, a dict of equal-length node arrays: feature, threshold, left,
        right (tree-local, unused on leaves), is_leaf, value, and optionally missing_left
        (every tree or none: without it inputs are finite, validation refuses NaN) and
        category_rows (the node's row in category_lookup, or -1 for a numeric split)."""
        trees = list(trees)
        with_missing = bool(trees) and "missing_left" in trees[0]
        constant = [_one_leaf(value) for start in starts
                    for value in np.asarray(start, dtype=np.float64).reshape(n_outputs)]
        trees = constant + trees
        sizes = np.array([len(tree["value"]) for tree in trees])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)

        def joined(key, default=0):
            return np.concatenate([tree.get(key, np.full(len(tree["value"]), default)) for tree in trees])

        leaf, shift = joined("is_leaf").astype(bool), np.repeat(offsets, sizes)
        left = np.where(leaf, -1, joined("left").astype(np.intp) + shift)
        right = np.where(leaf, -1, joined("right").astype(np.intp) + shift)
        order, depths = _level_order(leaf, left, right, offsets)
        new = np.full(len(leaf), -1, dtype=np.intp)
        new[order] = np.arange(len(order))
        leaf = self.is_leaf = leaf[order]
        left = np.where(leaf, np.arange(len(order)), new.take(left[order]))
        feature = np.where(leaf, 0, joined("feature")[order]).astype(np.intp)
        # One gather per step for both: the left child above the feature's bits.
        self.feature_bits = max(int(feature.max(initial=0)).bit_length(), 1)
        self.left_and_feature = (left << self.feature_bits) | feature
        self.threshold = np.where(leaf, np.inf, joined("threshold")[order]).astype(np.float64)
        self.value = joined("value")[order].astype(np.float64)
        self.missing_right = (~leaf & ~joined("missing_left")[order].astype(bool)) if with_missing else None
        rows = np.where(leaf, -1, joined("category_rows", -1)[order]).astype(np.intp)
        self.category_rows = rows if category_lookup is not None and (rows >= 0).any() else None
        self.category_lookup = category_lookup
        # Built from the arrays above by the first walk (the load-time probe's), see _RankedNodes
        # and boosting_masks.LeafMasks; False when they cannot serve these trees.
        self.ranks = self.masks = None
        deepest_first = np.argsort(-depths, kind="stable")
        self.roots = new.take(offsets[deepest_first])
        self.in_order = np.argsort(deepest_first)  # walked position of each tree, in summation order
        # Step s walks the first walking[s] trees (those deeper than s).
        self.walking = [int((depths > step).sum()) for step in range(int(depths.max(initial=0)))]
        self.n_outputs = n_outputs
        # The trees as generated code for requests of a few rows (boosting_code.py): set only by
        # deferred_code (made by checked_raw_sum), once it has given the walk's sums on the probe rows.
        self.code = None
        self.deferred_code = None

    def leaf_values(self, X: np.ndarray, way: str = "fastest") -> np.ndarray:
        """(n_trees, n_rows) leaf values for float64 rows X, trees (starts first) in order.
        `way`: "fastest" finds the leaves by bit masks (boosting_masks.py) for rows without a
        missing value, else walks on the rows' threshold ranks where that pays, else on their
        values; "masks", "ranks" and "values" force one (checked_raw_sum compares them)."""
        n_rows, width = X.shape
        if self.ranks is None:
            self.ranks = _RankedNodes.of(self)
            self.masks = LeafMasks.of(self, self.ranks)
        if self.masks and (way == "masks" or (way == "fastest" and not np.isnan(X).any())):
            return self.masks.leaf_values(X)
        ranks = self.ranks if self.ranks and (way == "ranks" or (way == "fastest" and self.ranks.pays(n_rows))) else None
        if ranks is not None:  # the rows' threshold ranks stand for X (see _RankedNodes)
            X = ranks.rows(X)
            width = X.shape[1]
        flat = np.ascontiguousarray(X).ravel()
        node = np.repeat(self.roots[:, None], n_rows, axis=1)  # (trees, rows), deepest trees first
        # Where each (tree, row) finds its row in `flat`, laid out as `node` (an add of
        # equal shapes: a broadcast one costs three times as much); one row starts at 0.
        row_start = None if n_rows == 1 else \
            np.repeat(np.arange(0, n_rows * width, width, dtype=np.intp)[None, :], len(node), axis=0)
        missing = ranks is None and self.missing_right is not None and np.isnan(flat).any()
        advance = self._step if ranks is None else ranks.step
        # From COMPACT_FROM on, only the (tree, row) pairs not yet at a leaf are stepped, as a
        # list of their places in `node` (compacted again every COMPACT_EVERY steps).
        places = at = starts = None
        stored = node.reshape(-1)  # a view: writes land in `node`
        for step, walking in enumerate(self.walking):
            if step >= COMPACT_FROM and (step - COMPACT_FROM) % COMPACT_EVERY == 0:
                if places is None:
                    places = np.flatnonzero(~self.is_leaf.take(node, mode=_VALID))
                else:
                    stored[places] = at
                    places = places[~self.is_leaf.take(at, mode=_VALID)]
                if not len(places):
                    break
                at = stored.take(places, mode=_VALID)
                starts = None if row_start is None else row_start.reshape(-1).take(places, mode=_VALID)
            if places is None:
                advance(node[:walking], None if row_start is None else row_start[:walking], flat, missing)
            else:
                advance(at, starts, flat, missing)
        if places is not None and len(places):
            stored[places] = at
        return self.value.take(node, mode=_VALID).take(self.in_order, axis=0)

    def _step(self, at: np.ndarray, starts: np.ndarray | None, flat: np.ndarray, missing: bool) -> None:
        """Every (tree, row) pair at nodes `at` one level down, in place."""
        packed = self.left_and_feature.take(at, mode=_VALID)
        where = packed & ((1 << self.feature_bits) - 1)
        x = flat.take(where if starts is None else np.add(where, starts, out=where), mode=_VALID)
        if missing:
            go_right = ~(x <= self.threshold.take(at, mode=_VALID))  # NaN compares False: decided here
            nan = np.isnan(x)
            go_right[nan] = self.missing_right.take(at[nan])
        else:
            go_right = x > self.threshold.take(at, mode=_VALID)
        if self.category_rows is not None:
            _categorical_directions(self, at, x, go_right)
        np.add(packed >> self.feature_bits, go_right, out=at)

    def raw_sum(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_outputs), Fortran-ordered: starts then trees added one after the other,
        as scikit-learn's `raw[:, k] += tree_k(X)` loop over iterations does
        (np.add.accumulate is sequential; a sum() may pair terms up and round differently)."""
        if X.shape[0] <= CODE_ROWS:
            if self.code is not None:
                return code_sum(self.code, X)
            if self.deferred_code is not None:
                self.deferred_code.request()  # built in the background; the walk answers meanwhile
        return self._walked_sum(X)

    def _walked_sum(self, X: np.ndarray, way: str = "fastest") -> np.ndarray:
        if X.shape[0] > CHUNK_ROWS:
            return np.asfortranarray(np.concatenate(
                [self._walked_sum(X[start:start + CHUNK_ROWS], way) for start in range(0, X.shape[0], CHUNK_ROWS)]))
        terms = self.leaf_values(X, way).reshape(-1, self.n_outputs, X.shape[0])
        return np.add.accumulate(terms, axis=0)[-1].T

    def checked_raw_sum(self, X: np.ndarray) -> np.ndarray:
        """raw_sum by the level walk, for a probe to compare with the model's own method. The
        trees' generated code is not compiled here, on the cold start's path: these rows and
        sums are kept for it (DeferredCode), which a first request of a few rows in a process
        builds and checks against them."""
        self.code = self.deferred_code = None
        walked = self._walked_sum(X, "values")  # (builds the ranks and the masks)
        # Requests find their leaves by masks (rows without a missing value), on ranks (many
        # rows) or on values (a few): each way must give the walk on values' sums on these rows,
        # or none is trusted (the caller's probe then sees the error and leaves the model on
        # scikit-learn, saying why).
        complete = ~np.isnan(X).any(axis=1)  # the masks take rows without a missing value
        for way, rows in (("ranks", np.ones(len(X), dtype=bool)), ("masks", complete)):
            if getattr(self, way) and rows.any():
                differing = _differing_rows(self._walked_sum(X[rows], way), walked[rows])
                if differing:
                    raise ArithmeticError(f"the leaves found by {way} and the walk on values differ on "
                                          f"{differing} of {int(rows.sum())} probe rows")
        self.deferred_code = DeferredCode.keep(self, X, walked)
        return walked


class _RankedNodes:
    """The walk's nodes for rows given as threshold ranks, so that a step gathers one number a
    (tree, row) pair, not a value and a threshold, and needs no comparison (callgrind, M3's
    100 rows: the walk 5.08 M instructions -> 3.95 M).
    A feature's distinct split thresholds u (sorted) turn a value x into rank(x) = #{u < x}
    (np.searchsorted), and `x > u[k]` is exactly `rank(x) > k` (±inf included). A missing value
    takes rank len(u) (right of every split) in the columns of the nodes sending missing values
    right and -1 (left of every split) in the others' columns, a second copy of the feature's
    ranks. A leaf's k is above every rank: it never goes right. One packed number a node holds
    its left child, k and its rank column, so that with ranks stored as `rank << bits` a step is
    a gather of the node's number, one of the row's rank, an add and a shift (see __init__)."""

    @classmethod
    def of(cls, table: NodeTable) -> _RankedNodes | bool:
        """The table's ranked nodes, or False: categorical splits (decided on codes, not ranks)
        or a node number too wide to pack."""
        if table.category_rows is not None:
            return False
        ranked = cls(table)
        return ranked if ranked.left_shift + len(table.is_leaf).bit_length() <= 62 else False

    def __init__(self, table: NodeTable):
        leaf, threshold, missing_right = table.is_leaf, table.threshold, table.missing_right
        left, feature = table.left_and_feature >> table.feature_bits, table.left_and_feature & ((1 << table.feature_bits) - 1)
        split = ~leaf
        self.width = int(feature.max(initial=0)) + 1
        self.thresholds = [np.unique(threshold[split & (feature == f)]) for f in range(self.width)]
        self.used = [(f, limits) for f, limits in enumerate(self.thresholds) if len(limits)]
        # Pair-steps a row, about: half of every tree's depth (most pairs reach a leaf sooner).
        self.steps = sum(table.walking) / 2
        k = np.zeros(len(leaf), dtype=np.intp)
        for f, limits in enumerate(self.thresholds):
            on = split & (feature == f)
            k[on] = np.searchsorted(limits, threshold[on])
        self.threshold_ranks = k.copy()  # a split's k (boosting_masks.py's tables); a leaf's 0
        column = feature + (self.width if missing_right is None else np.where(missing_right, 0, self.width))
        self.bits = max(int(2 * self.width - 1).bit_length(), 1)
        # The step's sum: (left << left_shift) + ((top - k + rank) << bits) + column carries into
        # left exactly when rank > k: top - k + rank reaches top + 1 = 2^(left_shift - bits)
        # (and stays below twice that: rank <= len(u) <= top / 2), and stays >= 0 for rank -1.
        # A leaf has k = top: its sum never carries (its column, 0, has no -1 ranks).
        top = (1 << (max(len(limits) for limits in self.thresholds).bit_length() + 1)) - 1
        k[leaf] = top
        self.left_shift = self.bits + top.bit_length()
        self.packed = (left << self.left_shift) | ((top - k) << self.bits) | np.where(leaf, 0, column)

    def pays(self, n_rows: int) -> bool:
        """Whether the rank walk costs less for n_rows rows than the value walk: it saves ~15
        instructions a pair-step and costs a binary search a used feature (~3,500 a call, ~100 a
        row; callgrind): M3's 7 features at 9 rows and more, not 30 features at 9 rows."""
        return n_rows * self.steps * 15 > len(self.used) * (3500 + 100 * n_rows)

    def rows(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, 2 * width) shifted ranks: the columns of missing-goes-right nodes, then the others."""
        ranks = np.zeros((len(X), 2 * self.width), dtype=np.intp)
        for f, limits in self.used:
            ranks[:, f] = limits.searchsorted(X[:, f])  # NaN sorts last: len(limits)
        ranks <<= self.bits
        ranks[:, self.width:] = ranks[:, :self.width]
        missing = np.isnan(X[:, :self.width])
        if missing.any():
            ranks[:, self.width:][missing] = -1 << self.bits
        return ranks

    def step(self, at: np.ndarray, starts: np.ndarray | None, flat: np.ndarray, missing: bool) -> None:
        """NodeTable._step on rank rows (`missing` is in the ranks already)."""
        packed = self.packed.take(at, mode=_VALID)
        where = packed & ((1 << self.bits) - 1)
        rank = flat.take(where if starts is None else np.add(where, starts, out=where), mode=_VALID)
        np.right_shift(np.add(packed, rank, out=packed), self.left_shift, out=at)  # left + (rank > k)


def _differing_rows(got: np.ndarray, expected: np.ndarray) -> int:
    return int((~((got == expected) | (np.isnan(got) & np.isnan(expected)))).any(axis=1).sum())


def _categorical_directions(table: NodeTable, node: np.ndarray, x: np.ndarray, go_right: np.ndarray) -> None:
    rows = table.category_rows.take(node)
    at = rows >= 0
    if not at.any():
        return
    codes = x[at]
    # Codes are what the model's own encoder gives (0..n_categories-1, or NaN for missing and
    # unknown values); see hist_boosting.py.
    codes = np.where(np.isnan(codes), _MISSING, codes).astype(np.intp)
    go_right[at] = table.category_lookup.ravel().take(rows[at] * (_CODES + 1) + codes)


def category_lookup(left_bitsets: np.ndarray, known_bitsets: np.ndarray, missing_left: np.ndarray) -> np.ndarray:
    """Go-right per categorical node and code, as _predict_one_from_raw_data decides: a code in
    the node's left bitset goes left, else a known code goes right, else (unknown, missing) where
    the node sends missing values. Bitsets: (n_nodes, 8) uint32, bit v of word v // 32."""
    codes = np.arange(_CODES)
    def has(bitsets):
        return ((bitsets[:, codes // 32] >> (codes % 32).astype(np.uint32)) & 1).astype(bool)
    missing_right = ~missing_left.astype(bool)[:, None]
    go_right = np.where(has(left_bitsets), False, np.where(has(known_bitsets), True, missing_right))
    return np.ascontiguousarray(np.hstack([go_right, missing_right]))


def _one_leaf(value: float) -> dict:
    one = np.zeros(1)
    return dict(feature=one, threshold=one, left=one, right=one, is_leaf=np.ones(1), value=np.array([value]))


def _level_order(leaf, left, right, roots) -> tuple[np.ndarray, np.ndarray]:
    """Every node reachable from the roots, level by level with each split's children side
    by side, and each tree's depth (steps from its root to its deepest leaf)."""
    order, level, tree = [roots], roots, np.arange(len(roots))
    depths, depth = np.zeros(len(roots), dtype=np.intp), 0
    while True:
        split = ~leaf[level]
        if not split.any():
            return np.concatenate(order), depths
        depth += 1
        parents, tree = level[split], tree[split]
        depths[tree] = depth
        level = np.column_stack([left[parents], right[parents]]).ravel()
        tree = np.repeat(tree, 2)
        order.append(level)
