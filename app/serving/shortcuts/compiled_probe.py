"""The compiled feature steps checked at load against scikit-learn's own, bit for bit.

Probe inputs are drawn from what the model learned: each encoded column from its categories
(missing values included when learned), each scaled column from its fitted range (mean ± 3
scale, data_min..data_max and beyond), other numbers at several magnitudes. Then the same rows
with NaN in the number columns, NaN and None in the text columns, unseen categories, infinities,
whole numbers as int64 (what a request of mixed values becomes) and text as plain objects. On
every probe the compiled function either defers (scikit-learn then answers, so nothing can
differ) or gives exactly scikit-learn's matrix; where scikit-learn refuses, it must defer.
Deterministic (a fixed seed) and a few dozen rows per probe: the check is part of cold start.
"""
from __future__ import annotations

import warnings

import numpy as np

from mlapi.serving.shortcuts.compiled_encoders import UNSEEN_TEXT
from mlapi.serving.shortcuts.compiled_pipeline import CompiledFeatures
from mlapi.serving.shortcuts.probes import SEED, N_ROWS

SCALES = (1e-2, 1.0, 1e2, 1e4)


def verify(compiled: CompiledFeatures, own_transform, predictor=None) -> tuple[str | None, np.ndarray | None]:
    """(None, the compiled features of the plain probe rows) when the compiled function agrees
    with `own_transform` (scikit-learn's chain) on every probe, else (why not, None)."""
    plain = None
    for label, X in probe_inputs(compiled):
        got = compiled.compute(X)
        expected, refused = _own(own_transform, X)
        if got is None:
            if label == "plain":
                return f"the compiled steps defer even plain probe rows ({refused or 'no reason'})", None
            continue
        if refused is not None:
            return f"the compiled steps accept {label} probe rows scikit-learn refuses ({refused})", None
        why = _differs(got, expected)
        if why is not None:
            return f"probe mismatch: {why} ({label} rows)", None
        if label == "plain":
            plain, compiled.sparse_output = got, hasattr(expected, "toarray")
            why = _final_step_agrees(compiled, predictor, got, expected)
            if why is not None:
                return why, None
    return None, plain


def _own(own_transform, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return own_transform(X), None
        except Exception as exc:  # validation refusing it: the compiled steps must defer
            return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)


def _differs(got: np.ndarray, expected) -> str | None:
    expected = _dense(expected)
    if expected.dtype.kind not in "fiub":
        return f"scikit-learn's features are of dtype {expected.dtype}"
    expected = expected.astype(np.float64)
    if got.shape != expected.shape:
        return f"output shape {got.shape} where scikit-learn gives {expected.shape}"
    # Bit for bit, NaN for NaN (whatever its payload); -0.0 is not 0.0.
    same = (got.view(np.uint64) == expected.view(np.uint64)) | (np.isnan(got) & np.isnan(expected))
    if same.all():
        return None
    return f"features differ from scikit-learn's on {int((~same).any(axis=1).sum())} of {len(got)} probe rows"


def _final_step_agrees(compiled: CompiledFeatures, predictor, dense: np.ndarray, expected) -> str | None:
    """The final step must answer the same on the compiled rows as on what scikit-learn's steps
    hand it. Those being sparse, a linear model sums a row in another order than over dense
    rows: the compiled rows then go to it as CSR too (sparse_rows), if that agrees."""
    if predictor is None or (type(expected) is np.ndarray and expected.dtype == np.float64):
        return None
    method = getattr(predictor, "predict_proba", None) or predictor.predict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            answer = method(expected)
            if np.array_equal(method(dense), answer):
                return None
            if hasattr(expected, "toarray") and np.array_equal(method(compiled.own_form(dense)), answer):
                compiled.sparse_rows = True
                return None
        except Exception as exc:
            return f"the final step refuses the compiled rows ({type(exc).__name__})"
    kind = "sparse matrix" if hasattr(expected, "toarray") else f"{expected.dtype} array"
    return f"the final step answers differently on the compiled rows than on the steps' own {kind}"


# ---- probe inputs ---------------------------------------------------------------------------
def probe_inputs(compiled: CompiledFeatures) -> list[tuple[str, object]]:
    """[(label, input)]: the plain rows, then each kind of unusual value alone."""
    rng = np.random.default_rng(SEED)
    profiles = column_profiles(compiled.fitted_steps, compiled.n_features)
    plain = [_draw(rng, profile) for profile in profiles]
    text = [profile[0] == "categories" and profile[1].dtype.kind == "O" for profile in profiles]
    numbers = [not t for t in text]
    variants = [("plain", plain, False),
                ("missing numbers", _where(numbers, plain, lambda c: _sprinkle(rng, c, np.nan)), False),
                ("missing text", _where(text, plain, lambda c: _sprinkle(rng, c, np.nan)), False),
                ("None text", _where(text, plain, lambda c: _sprinkle(rng, c, None)), True),
                ("unseen categories", [_sprinkle(rng, c, _unseen_like(p)) if p[0] == "categories" else c
                                       for c, p in zip(plain, profiles)], False),
                ("infinite numbers", _where(numbers, plain, lambda c: _sprinkle(rng, c, np.inf)), False),
                ("whole numbers", _where(numbers, plain, _whole), False),
                ("text as objects", plain, True)]
    names = compiled.names
    inputs = [(label, _container(columns, names, keep_objects)) for label, columns, keep_objects in variants]
    return inputs


def _where(chosen: list[bool], columns: list[np.ndarray], change) -> list[np.ndarray]:
    return [change(column) if pick else column for column, pick in zip(columns, chosen)]


def _whole(column: np.ndarray) -> np.ndarray:
    """Whole numbers as int64: what a request of mixed values (text and numbers) becomes."""
    if column.dtype.kind != "f" or not np.isfinite(column).all():
        return column
    return np.round(column).astype(np.int64)


def _container(columns: list[np.ndarray], names, keep_objects: bool):
    if names is None:
        if any(column.dtype.kind == "O" for column in columns):
            return np.column_stack([column.astype(object) for column in columns])
        return np.ascontiguousarray(np.column_stack(columns), dtype=np.float64)
    import pandas as pd

    return pd.DataFrame({name: pd.Series(column, dtype=object) if keep_objects and column.dtype.kind == "O"
                         else column for name, column in zip(names, columns)})


def _draw(rng, profile) -> np.ndarray:
    if profile[0] == "categories":
        return rng.choice(profile[1], N_ROWS).astype(profile[1].dtype)
    _, low, high = profile
    column = rng.uniform(low, high, N_ROWS)
    column[: N_ROWS // 4] = [low, high, (low + high) / 2, 0.0, -0.0, 1.0][: N_ROWS // 4]
    return column


def _sprinkle(rng, column: np.ndarray, value) -> np.ndarray:
    if value is None or isinstance(value, str):
        column = column.astype(object)
    elif column.dtype.kind in "iub":
        column = column.astype(np.float64)
    else:
        column = column.copy()
    at = rng.uniform(size=len(column)) < 0.3
    at[0] = True
    column[at] = value
    return column


def _unseen_like(profile):
    categories = profile[1]
    if categories.dtype.kind == "O":
        return UNSEEN_TEXT
    finite = categories[np.isfinite(categories)] if categories.dtype.kind == "f" else categories
    return float(finite.max() + 1.5) if len(finite) else 0.5


def column_profiles(steps, n_features: int) -> list[tuple]:
    """Per input column: ("categories", learned values) or ("numbers", low, high)."""
    found: dict[int, tuple] = {}
    _profile(steps, list(range(n_features)), found)
    return [found.get(j, ("numbers", -SCALES[j % len(SCALES)], SCALES[j % len(SCALES)])) for j in range(n_features)]


def _profile(step, columns: list[int], found: dict) -> bool:
    """Note what `step` learned about `columns`; True when it passes them on unchanged in number."""
    if isinstance(step, list):  # the feature steps: the first ones see the input columns
        for inner in step:
            if not _profile(inner, columns, found):
                return False
        return True
    if hasattr(step, "transformers_"):
        indices = getattr(step, "_transformer_to_input_indices", {})
        for name, inner, _ in step.transformers_:
            selected = [columns[int(i)] for i in indices.get(name, ()) if int(i) < len(columns)]
            if selected and not isinstance(inner, str):
                _profile(inner, selected, found)
        return False
    if hasattr(step, "steps"):
        return _profile([inner for _, inner in step.steps if inner is not None and inner != "passthrough"],
                        columns, found)
    categories = getattr(step, "categories_", None)
    if isinstance(categories, list) and len(categories) == len(columns):
        for column, values in zip(columns, categories):
            found.setdefault(column, ("categories", np.asarray(values)))
        return False
    low_high = _fitted_range(step)
    if low_high is not None and len(low_high[0]) == len(columns):
        for column, low, high in zip(columns, *low_high):
            found.setdefault(column, ("numbers", float(low), float(high)))
    statistics = getattr(step, "statistics_", None)
    if statistics is not None and np.asarray(statistics).dtype.kind == "O":
        return True  # text imputed: the encoder after it knows the categories
    return low_high is not None or statistics is not None


def _fitted_range(step):
    mean, scale = getattr(step, "mean_", None), getattr(step, "scale_", None)
    if mean is not None and scale is not None:
        return mean - 3 * scale, mean + 3 * scale
    data_min, data_max = getattr(step, "data_min_", None), getattr(step, "data_max_", None)
    if data_min is not None and data_max is not None:
        margin = 0.2 * (data_max - data_min) + 1e-3
        return data_min - margin, data_max + margin
    return None
