"""Probe rows drawn from what a model was fitted on, and the check that a shortcut agrees.

A shortcut is used only after it gave bit-for-bit the estimator's own output on these rows at
load time. Rows of zeros and ones prove little for a forest whose splits sit at 300.5 or a
scaler centred on 1000: the rows here span each estimator's fitted statistics (a scaler's
mean_ ± 3 scale_, a tree's split thresholds, values exactly at those thresholds), and rows for
a pipeline's later steps are the earlier steps' own output. Deterministic (a fixed seed), and
a few dozen rows — for a boosted model, every split and its neighbours, a few hundred (see
boosted_splits): the probe is part of cold start.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from mlapi.serving.shortcuts.hist_boosting import model_categories, original_columns

SEED = 20240917
N_ROWS = 24


def probe_rows(estimator) -> np.ndarray | None:
    """C-ordered float64 rows of the estimator's fitted width spanning its fitted range, or
    None when it has no fixed width (a text vectorizer, an unfitted step)."""
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        return None
    rng = np.random.default_rng(SEED)
    boosted = boosted_splits(estimator, n_features)
    if boosted is not None:
        return _rows_for_boosting(rng, *boosted)
    thresholds = _split_thresholds(estimator, n_features)
    if thresholds is not None:
        return _rows_around_splits(rng, thresholds)
    low_high = _scaler_range(estimator)
    if low_high is not None:
        low, high = low_high
        unit = rng.uniform(size=(N_ROWS, n_features))
        return np.ascontiguousarray(np.vstack([low + unit * (high - low), low, high, (low + high) / 2]))
    # Nothing fitted to span (a linear model): standard normal rows at several magnitudes.
    scales = np.repeat([1e-2, 1.0, 1e2], N_ROWS // 3)[:, None]
    return np.ascontiguousarray(np.vstack([rng.standard_normal((len(scales), n_features)) * scales,
                                           np.zeros(n_features)]))


def disagreement(checked: Callable, original: Callable, rows: np.ndarray, outputs: dict | None = None) -> str | None:
    """None when checked(rows) equals original(rows) bit for bit, else what differed;
    outputs["expected"] receives original(rows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model fitted on a DataFrame warns about a bare array
        try:
            expected = original(rows)
        except Exception as exc:  # e.g. a model that needs more than numbers
            return f"scikit-learn's own method refused the probe rows ({type(exc).__name__}: {exc})"
        if outputs is not None:
            outputs["expected"] = expected
        try:
            got = checked(rows)
        except Exception as exc:
            return f"the shortcut raised {type(exc).__name__}: {exc}"
    return compare(got, expected, len(rows))


def compare(got, expected, n_rows: int) -> str | None:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"output shape {got.shape} where scikit-learn gives {expected.shape}"
    if np.array_equal(got, expected):
        return None
    differing = got != expected
    rows_differing = int(differing.reshape(n_rows, -1).any(axis=1).sum()) if n_rows else 0
    return f"differs from scikit-learn on {rows_differing} of {n_rows} probe rows"


def transformed(step, rows: np.ndarray | None) -> np.ndarray | None:
    """The step's own transform of the probe rows, as dense C-ordered float64, or None."""
    if rows is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = step.transform(rows)
        except Exception:
            return None
    if hasattr(out, "toarray"):
        out = out.toarray()
    out = np.asarray(out)
    if out.ndim != 2 or out.dtype.kind not in "fiub":
        return None
    return np.ascontiguousarray(out, dtype=np.float64)


def _split_thresholds(estimator, n_features: int) -> list[np.ndarray] | None:
    members = getattr(estimator, "estimators_", None)
    if isinstance(members, np.ndarray):  # gradient boosting: stages × outputs
        members = members.ravel().tolist()
    trees = [tree.tree_ for tree in (members or [estimator]) if hasattr(tree, "tree_")]
    if not trees:
        return None
    features = np.concatenate([tree.feature for tree in trees])
    values = np.concatenate([tree.threshold for tree in trees])
    split = features >= 0  # leaves have feature -2
    return [np.unique(values[split & (features == j)]) for j in range(n_features)]


def _rows_around_splits(rng, thresholds: list[np.ndarray]) -> np.ndarray:
    # Uniform between each feature's outermost splits (a little beyond), and a quarter of the
    # values exactly at a split, where the tree's `<=` in float32 decides the branch.
    columns = []
    for values in thresholds:
        if len(values) == 0:
            columns.append(rng.uniform(-1.0, 1.0, N_ROWS))
            continue
        low, high = values[0], values[-1]
        margin = 0.1 * (high - low) or 1.0
        column = rng.uniform(low - margin, high + margin, N_ROWS)
        at_split = rng.uniform(size=N_ROWS) < 0.25
        column[at_split] = rng.choice(values, int(at_split.sum()))
        columns.append(column)
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float64)


def _scaler_range(estimator):
    mean, scale = getattr(estimator, "mean_", None), getattr(estimator, "scale_", None)
    if mean is not None or scale is not None:
        centre = np.asarray(mean if mean is not None else 0.0, dtype=np.float64)
        spread = np.asarray(scale if scale is not None else 1.0, dtype=np.float64)
        return centre - 3 * spread, centre + 3 * spread
    data_min, data_max = getattr(estimator, "data_min_", None), getattr(estimator, "data_max_", None)
    if data_min is not None and data_max is not None:
        margin = 0.1 * (data_max - data_min)
        return data_min - margin, data_max + margin
    return None


# ---- boosted trees: every split's neighbourhood --------------------------------------------
# A boosted model adds hundreds of small trees, each a few splits deep, and a shortcut that
# compared one of them the wrong way at its threshold (float32 against float64, `<` for `<=`,
# a missing value sent the wrong way, a category's bit misread) would change a few rows in a
# million. So its probe puts every split threshold and the floats just below and above it (for
# trees that compare float32 values, the float32 ones around it), NaN and infinities where the
# model accepts them, and every known category, unknown ones and NaN for a categorical feature,
# into rows that otherwise vary over the fitted range. A column has one such value per row, so
# the rows are as many as the most split column needs: at most 3 × 255 for HistGradientBoosting
# (255 bins a feature); a large GradientBoosting model's column beyond MAX_SPLIT_ROWS values
# gets a seeded sample of them, to keep the probe within cold start.
MAX_SPLIT_ROWS = 2048


def boosted_splits(estimator, n_features: int):
    """(per column: values to probe, per column: categories or None, whether NaN and infinity
    are accepted) for a gradient-boosting model, else None."""
    if getattr(estimator, "_predictors", None):  # HistGradientBoosting
        nodes = np.concatenate([predictor.nodes for iteration in estimator._predictors for predictor in iteration])
        numeric = ~nodes["is_leaf"].astype(bool) & ~nodes["is_categorical"].astype(bool)
        columns = original_columns(estimator)[nodes["feature_idx"][numeric]]
        values = nodes["num_threshold"][numeric]
        categories = [None] * n_features
        found = model_categories(estimator)
        for column, known in (found if isinstance(found, list) else []):
            categories[column] = known
        return _neighbours(columns, values, n_features, float32=False), categories, True
    if isinstance(getattr(estimator, "estimators_", None), np.ndarray):  # GradientBoosting
        thresholds = _split_thresholds(estimator, n_features)
        if thresholds is None:
            return None
        columns = np.concatenate([np.full(len(values), j) for j, values in enumerate(thresholds)])
        values = np.concatenate(thresholds) if columns.size else np.zeros(0)
        return _neighbours(columns, values, n_features, float32=True), [None] * n_features, False
    return None


def _neighbours(columns: np.ndarray, thresholds: np.ndarray, n_features: int, float32: bool) -> list[np.ndarray]:
    finite = np.isfinite(thresholds)
    columns, thresholds = columns[finite], thresholds[finite]
    if float32:  # the model compares float32 values: the float32 ones around the threshold
        as32 = thresholds.astype(np.float32)
        near = [as32, np.nextafter(as32, np.float32(-np.inf)), np.nextafter(as32, np.float32(np.inf))]
    else:
        near = [thresholds, np.nextafter(thresholds, -np.inf), np.nextafter(thresholds, np.inf)]
    values = np.concatenate([np.asarray(value, dtype=np.float64) for value in near])
    columns = np.tile(columns, len(near))
    return [np.unique(values[columns == j]) for j in range(n_features)]


def _rows_for_boosting(rng, values: list[np.ndarray], categories: list, accepts_nan: bool) -> np.ndarray:
    spread = [v if v.size else np.array([-1.0, 0.0, 1.0]) for v in values]
    spread = [v if len(v) <= MAX_SPLIT_ROWS else np.sort(rng.choice(v, MAX_SPLIT_ROWS, replace=False)) for v in spread]
    base = _rows_around_splits(rng, spread)
    # Every probed value of each column once at least, columns shuffled independently so that
    # rows take varied paths through the trees.
    n_rows = max(len(v) for v in spread + [c for c in categories if c is not None] + [np.zeros(N_ROWS)])
    at_splits = np.column_stack([rng.permutation(np.resize(v, n_rows)) for v in spread])
    for j, known in enumerate(categories):
        if known is not None:
            unseen = [known.max() + 1 if known.size else 0.0, -1.0, 0.5]
            choices = np.concatenate([known, unseen, [np.nan]])
            at_splits[:, j] = rng.permutation(np.resize(choices, n_rows))
            base[:, j] = rng.choice(choices, len(base))
    rows = np.vstack([base, at_splits])
    if accepts_nan:
        numeric = [j for j, known in enumerate(categories) if known is None]
        gaps = base.copy()
        gaps[rng.uniform(size=gaps.shape) < 0.3] = np.nan
        extremes = np.repeat(base[:2], 2, axis=0)
        extremes[0, numeric], extremes[1, numeric], extremes[2, :] = np.inf, -np.inf, np.nan
        for j, known in enumerate(categories):  # categorical columns take no infinity
            if known is not None:
                extremes[:2, j] = known[0] if known.size else np.nan
        rows = np.vstack([rows, gaps, extremes])
    return np.ascontiguousarray(rows, dtype=np.float64)
