"""A HistGradientBoosting model's raw sums → its answer, for a few rows, in plain Python floats.

For one row, HalfBinomialLoss.predict_proba is a dozen numpy calls around two numbers (an
empty array, the array-API namespace lookup, scipy's expit, two strided writes, a subtraction),
and the raw sums reach it through three more (a list to an array, a reshape, a Fortran copy).
Here the generated trees' sums (boosting_code.py) go straight to `1 / (1 + exp(-raw))` and
`1 - p`, and the rows become one array in one call.

Exactness: scipy's expit is `1 / (1 + exp(-x))` in float64 and the loss takes `1 - p`; math.exp
is the C library's exp, and Python's float arithmetic is the same IEEE double arithmetic. That
the two exps round alike is what this machine's libraries do, not what any API promises, so
link_for keeps the Python form only if it gives the loss's own output bit for bit on the
probe's raw sums and on a spread of raw values (to ±800, where exp overflows).
A regressor with the identity link answers its raw sums as they are. Other links (the
multiclass softmax, whose sum numpy orders by the array's layout; exp for Poisson) keep the
loss's numpy code.
"""
from __future__ import annotations

import math

import numpy as np

_LOSS = "sklearn._loss.loss."
_LINK = "sklearn._loss.link."
# Raw values the Python form must also agree on: both tails of the sigmoid (exp overflows past
# 709.78), the region probabilities live in, and values near zero.
_SPREAD = np.concatenate([np.linspace(-800.0, 800.0, 1601), np.linspace(-40.0, 40.0, 4001),
                          np.geomspace(1e-300, 1e-3, 301), -np.geomspace(1e-300, 1e-3, 301), [0.0, -0.0]])


def _path(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _sigmoid_rows(sums: list) -> np.ndarray | None:
    """(n, 2) [1 - p, p] for the one-output sums, or None if exp overflows (left to scipy)."""
    out = []
    try:
        for (raw,) in sums:
            p = 1.0 / (1.0 + math.exp(-raw))
            out.append((1.0 - p, p))
    except OverflowError:
        return None
    return np.array(out)


def _identity_rows(sums: list) -> np.ndarray:
    return np.array([raw for (raw,) in sums], dtype=np.float64)


def link_for(loss, method: str, n_outputs: int, probe_raw: np.ndarray | None):
    """`answer(sums) -> ndarray or None` (sums: one tuple of raw sums per row, None: use the
    loss's numpy code for these rows), or None when the model's link has no exact Python form
    here. probe_raw: (n, n_outputs) raw sums the check also runs on."""
    if n_outputs != 1:
        return None
    if method == "predict" and _path(loss.link) == _LINK + "IdentityLink":
        return _identity_rows  # the raw sums themselves: nothing to check
    if method != "predict_proba" or _path(loss) != _LOSS + "HalfBinomialLoss" \
            or _path(loss.link) != _LINK + "LogitLink":
        return None
    raw = _SPREAD if probe_raw is None else np.concatenate([np.asarray(probe_raw, np.float64).ravel(), _SPREAD])
    return _sigmoid_rows if _agrees(raw, loss) else None


def _agrees(raw: np.ndarray, loss) -> bool:
    """Whether the Python sigmoid gives the loss's own probabilities bit for bit on `raw`
    (a value whose exp overflows in Python is left to the loss at serving time too)."""
    for value, (q, p) in zip(raw.tolist(), loss.predict_proba(raw).tolist()):
        try:
            got = 1.0 / (1.0 + math.exp(-value))
        except OverflowError:
            continue
        if got != p or 1.0 - got != q:
            return False
    return True
