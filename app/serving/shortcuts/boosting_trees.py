"""The trees of a boosted ensemble walked together, one depth level per numpy step, and their
leaf values summed in the order scikit-learn adds them.

scikit-learn walks a boosted model one tree at a time, each in a compiled loop over the rows
(HistGradientBoosting's TreePredictor.predict, GradientBoosting's predict_stages): cheap per
tree, but a Python call, an output array and, for the histogram models, an OpenMP region per
tree. Here every (row, tree) pair advances one level per step over flat node arrays of all the
trees, so 100 trees of depth 6 cost 6 rounds of a few numpy calls for one row as for 100.

Exactness: a node compares exactly as scikit-learn's loops do (`x <= threshold` in float64, a
missing value where the node learned to send it, a category by its bitsets), and the sum is an
accumulation in scikit-learn's order (its starting values, then each iteration's tree in turn),
not numpy's pairwise sum, so the raw predictions are the same floats, not merely close ones.
"""
from __future__ import annotations

import numpy as np

# A categorical node's lookup row: one entry per category code (scikit-learn's bitsets hold
# codes 0..255), then one for a missing value.
_CODES = 256
_MISSING = _CODES


class NodeTable:
    """Every tree's nodes in flat arrays, children as global indices. A leaf is its own
    child both ways, so a walk of `depth` steps ends on every row's leaf whatever its depth.
    `roots` are in summation order (per iteration, each output in turn); each of `starts`
    (the values scikit-learn adds before any tree, per output) is a one-leaf tree in front."""

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

        leaf, own, shift = joined("is_leaf").astype(bool), np.arange(sizes.sum()), np.repeat(offsets, sizes)
        left = np.where(leaf, own, joined("left").astype(np.intp) + shift)
        right = np.where(leaf, own, joined("right").astype(np.intp) + shift)
        self.children = np.ascontiguousarray(np.column_stack([left, right]).ravel())  # [2i] left, [2i+1] right
        self.feature = np.where(leaf, 0, joined("feature")).astype(np.intp)
        self.threshold = joined("threshold").astype(np.float64)
        self.value = joined("value").astype(np.float64)
        self.roots, self.n_outputs = offsets, n_outputs
        self.depth = _depth(self.children, self.roots)
        self.missing_right = ~joined("missing_left").astype(bool) if with_missing else None
        rows = joined("category_rows", -1).astype(np.intp)
        self.category_rows = rows if category_lookup is not None and (rows >= 0).any() else None
        self.category_lookup = category_lookup

    def leaf_values(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_trees) leaf values for float64 rows X, trees (starts first) in order."""
        n_rows, width = X.shape
        flat = np.ascontiguousarray(X).ravel()
        row_start = np.arange(0, n_rows * width, width, dtype=np.intp)[:, None]
        node = np.broadcast_to(self.roots, (n_rows, len(self.roots)))
        missing = self.missing_right is not None and np.isnan(flat).any()
        for _ in range(self.depth):
            x = flat.take(row_start + self.feature.take(node))
            go_right = ~(x <= self.threshold.take(node))  # NaN compares False: decided below
            if missing:
                nan = np.isnan(x)
                go_right[nan] = self.missing_right.take(node[nan])
            if self.category_rows is not None:
                _categorical_directions(self, node, x, go_right)
            node = self.children.take(2 * node + go_right)
        return self.value.take(node)

    def raw_sum(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_outputs): starts then trees added one after the other, as scikit-learn's
        `raw[:, k] += tree_k(X)` loop over iterations does (np.add.accumulate is sequential;
        a sum() would pair the terms up and round differently)."""
        terms = self.leaf_values(X).reshape(X.shape[0], -1, self.n_outputs)
        return np.add.accumulate(terms, axis=1)[:, -1, :]


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


def _depth(children: np.ndarray, roots: np.ndarray) -> int:
    """Steps from the roots to the deepest leaf (leaves are their own children)."""
    depth, level = 0, roots
    while True:
        below = children.take(np.concatenate([2 * level, 2 * level + 1]))
        below = below[below != np.concatenate([level, level])]
        if below.size == 0:
            return depth
        depth, level = depth + 1, below
