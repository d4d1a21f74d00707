"""Counting scikit-learn's per-call input validation, in any supported release: 1.6 and later
validate through sklearn.utils.validation.validate_data, earlier releases through
BaseEstimator._validate_data; both end in check_array, looked up in these two modules."""
from __future__ import annotations

import sklearn.base
import sklearn.utils.validation


def count_validations(monkeypatch) -> dict:
    """{"calls": n}: check_array calls since the last reset; zero means a shortcut ran."""
    counter = {"calls": 0}
    for module in (sklearn.utils.validation, sklearn.base):
        original = getattr(module, "check_array", None)
        if original is None:
            continue

        def counted(*args, _original=original, **kwargs):
            counter["calls"] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "check_array", counted)
    return counter
