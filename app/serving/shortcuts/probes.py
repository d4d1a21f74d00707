"""Probe rows drawn from what a model was fitted on, and the check that a shortcut agrees.

A shortcut is used only after it gave bit-for-bit the estimator's own output on these rows at
load time. Rows of zeros and ones prove little for a forest whose splits sit at 300.5 or a
scaler centred on 1000: the rows here span each estimator's fitted statistics (a scaler's
mean_ ± 3 scale_, a tree's split thresholds, values exactly at those thresholds), and rows for
a pipeline's later steps are the earlier steps' own output. Deterministic (a fixed seed), and
a few dozen rows: the probe is part of cold start.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

SEED = 20240917
N_ROWS = 24


def probe_rows(estimator) -> np.ndarray | None:
    """C-ordered float64 rows of the estimator's fitted width spanning its fitted range, or
    None when it has no fixed width (a text vectorizer, an unfitted step)."""
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        return None
    rng = np.random.default_rng(SEED)
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
    trees = [tree.tree_ for tree in (getattr(estimator, "estimators_", None) or [estimator])
             if hasattr(tree, "tree_")]
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
