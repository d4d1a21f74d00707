"""Recognising scikit-learn's own code in a loaded estimator, and saying why when we do not.

The shortcuts (forests.py, linear.py) and the labels-from-probabilities relation
(select.py) are each known for particular scikit-learn methods, named by their private
module paths. A method counts as known only when the estimator's class resolves it to exactly
that function. When it does not, the reason is kept for /models and the load log: a private
module that moved in this scikit-learn, a method scikit-learn now defines elsewhere, a subclass
that overrides it, or simply an estimator of another kind.

Classes are looked up among modules already imported, never imported here: a model of that kind
has imported its module by being unpickled, and importing the others (73 modules for a logistic
model) would only add to start-up and memory to learn that the model is not one of them.
"""
from __future__ import annotations

import sys

import numpy as np

from mlapi.serving.frames import is_plain_numeric_frame

# owner_mismatch's answer for an estimator that is simply not of the owner's kind.
UNRELATED = ""


def owner_mismatch(estimator, method: str, owner_path: str) -> str | None:
    """None when estimator.<method> is exactly the function the class at owner_path defines;
    otherwise why not, or UNRELATED when the estimator is not that kind of estimator at all."""
    module, _, name = owner_path.rpartition(".")
    kind = type(estimator)
    owner = getattr(sys.modules.get(module), name, None)
    if owner is None:
        # Not loaded. An estimator of that kind would have loaded it, unless scikit-learn moved
        # the class: then a class of the same name sits in the estimator's ancestry elsewhere.
        moved = next((cls for cls in kind.__mro__ if cls.__name__ == name and cls.__module__.startswith("sklearn")),
                     None)
        if moved is None:
            return UNRELATED
        return f"scikit-learn's private module {module} moved: {name} is now in {moved.__module__}"
    if getattr(kind, method, None) is getattr(owner, method, False):
        return None
    if not issubclass(kind, owner):
        return UNRELATED
    definer = next((cls for cls in kind.__mro__ if method in vars(cls)), None)
    if definer is None:
        return f"{kind.__name__} has no {method}"
    where = f"{definer.__module__}.{definer.__qualname__}"
    if definer.__module__.startswith("sklearn"):
        return f"scikit-learn now defines {kind.__name__}.{method} in {where}, not in {owner_path}"
    return f"{where} overrides {name}.{method}"


def find_known(estimator, method: str, table) -> tuple[tuple | None, str]:
    """The first row of table ((owner path, method, ...) rows) whose owner defines
    estimator.<method>, else (None, the most telling reason, or UNRELATED)."""
    reasons = []
    for row in table:
        if row[1] != method:
            continue
        why = owner_mismatch(estimator, method, row[0])
        if why is None:
            return row, UNRELATED
        reasons.append(why)
    return None, next((why for why in reasons if why), UNRELATED)


def fitted_names(estimator) -> list[str] | None:
    """The column names the estimator was fitted with, as plain strings (what DataFrame
    columns compare equal to), or None for an estimator fitted on an array."""
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def plain_rows(X, n_features: int | None, names: list | None) -> np.ndarray | None:
    """X as the array scikit-learn's validation would pass through unchanged — C-ordered
    float64, 2-D, the fitted width, every value finite — or None when validation would convert,
    warn or refuse (then the estimator's own method must see X). An estimator fitted on a
    DataFrame takes a DataFrame with exactly its columns in order, as that array."""
    if names is not None:
        if not is_plain_numeric_frame(X, names):
            return None
        X = X.to_numpy()  # the array np.asarray (validation's conversion) gives, 25x faster
    # C order too: validation hands it on as it is, and a Fortran-ordered array's matrix product
    # (the linear models') can round differently. No rows: validation refuses them.
    if (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2 and X.shape[0] > 0
            and X.shape[1] == n_features and X.flags.c_contiguous and np.isfinite(X).all()):
        return X
    return None


class Candidate:
    """A shortcut on offer for one method, before the probe has checked it: `call` is the
    drop-in the server would call, `checked` the computation it stands on, run by the probe on
    bare float64 rows (given those, `call` may hand a DataFrame-fitted model's rows to
    scikit-learn instead and prove nothing), `path` its name in /models."""

    __slots__ = ("call", "checked", "path")

    def __init__(self, call, checked, path: str):
        self.call, self.checked, self.path = call, checked, path
