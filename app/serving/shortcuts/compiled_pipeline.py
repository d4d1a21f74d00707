"""A Pipeline's feature steps compiled into one function: request columns → the final step's
float64 matrix, without scikit-learn's per-call validation and pandas bookkeeping.

For a DataFrame-fitted model, ColumnTransformer.transform of one row spends ~2.4 ms selecting
sub-frames, validating each and stacking the parts; the arithmetic is microseconds. Here each
input column is read once (the request's columns as app/serving/typed_rows.py typed them, with
no DataFrame built (RequestColumns), or a DataFrame's or an array's), every supported step
(compiled_steps.py) writes its part, and the parts are stacked in scikit-learn's order
(transformers in order, then the remainder) into one C-ordered float64 matrix, which the final
step's shortcut (or scikit-learn) takes.

Anything the compiled steps do not handle exactly as scikit-learn would (another container,
another dtype, a value validation refuses) goes to `fallback`, scikit-learn's own chain, for
the same answer or the same error. compiled_probe.py checks the whole function at load.
"""
from __future__ import annotations

import logging

import numpy as np

from mlapi.serving.frames import RequestColumns, as_frame, column_index, is_dataframe
from mlapi.serving.shortcuts.compiled_steps import Defer, Step, compile_step, is_missing, wraps_output
from mlapi.serving.shortcuts.sklearn_code import owner_mismatch

log = logging.getLogger(__name__)

COMPILED = "compiled"
COLUMN_TRANSFORMER = "sklearn.compose._column_transformer.ColumnTransformer"


class CompiledFeatures:
    """The compiled feature steps: `__call__` as the server calls them (falling back to
    scikit-learn's chain for what it defers), `compute` as the probe checks them (None: deferred)."""

    def __init__(self, step: Step, fitted_steps: list, n_features: int, names: list[str] | None, fallback):
        self.step, self.n_features, self.names, self.fallback = step, n_features, names, fallback
        self.fitted_steps = fitted_steps  # what the probe draws its rows from
        # Whether scikit-learn's own steps give a sparse matrix (found by the probe): the
        # features route answers in the steps' own form (own_form), predictions take the matrix.
        self.sparse_output = False
        # Whether the final step takes them as CSR too: it sums sparse rows in another order.
        self.sparse_rows = False
        self.failed = False  # a failure of ours was logged

    def own_form(self, features):
        """`features` as scikit-learn's steps would give them: CSR when theirs is sparse."""
        if self.sparse_output and not hasattr(features, "toarray"):
            from scipy import sparse

            return sparse.csr_matrix(features)
        return features

    def __call__(self, X):
        out = self.compute(X)
        if out is None:  # scikit-learn's chain, on the DataFrame it always had
            return self.fallback(as_frame(X))
        return self.own_form(out) if self.sparse_rows else out

    def compute(self, X) -> np.ndarray | None:
        columns = read_columns(X, self.n_features, self.names)
        if columns is None:
            return None
        try:
            return np.ascontiguousarray(self.step.transform(columns), dtype=np.float64)
        except Defer:
            return None
        except (ArithmeticError, LookupError, TypeError, ValueError):
            # Our fault, not the request's: scikit-learn answers it, and the log says so once.
            if not self.failed:
                self.failed = True
                log.warning("the compiled feature steps failed on a request (scikit-learn answered it)",
                            exc_info=True)
            return None


def compile_features(steps: list, n_features, names: list[str] | None, fallback) -> CompiledFeatures | str:
    """The compiled form of a Pipeline's feature steps [(name, step)], or which step has none and why."""
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        return "the model does not say how many input columns it takes"
    compiled = _compile_chain(steps)
    if isinstance(compiled, str):
        return compiled
    if not compiled.numeric:
        return "the feature steps output text, not numbers"
    return CompiledFeatures(compiled, [step for _, step in steps], int(n_features), names, fallback)


def compile_transformer(step) -> Step | str:
    if owner_mismatch(step, "transform", COLUMN_TRANSFORMER) is None:
        return _column_transformer(step)
    if type(step).__name__ == "Pipeline" and type(step).__module__ == "sklearn.pipeline":
        # Pipeline.transform is made per access (available_if): the class itself, not a subclass
        return _compile_chain(step.steps)
    return compile_step(step)


def _compile_chain(named_steps: list) -> Step | str:
    """Steps [(name, step)] applied one after the other, as Pipeline.transform applies them."""
    chain = []
    for name, step in named_steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        compiled = compile_transformer(step)
        if isinstance(compiled, str):
            return f"step {name!r} ({type(step).__name__}): {compiled}"
        chain.append(compiled)
    return _chained(chain) if chain else compile_step("passthrough")


def _chained(chain: list[Step]) -> Step:
    if len(chain) == 1:
        return chain[0]

    def transform(columns):
        for step in chain[:-1]:
            columns = list(step.transform(columns).T)
        return chain[-1].transform(columns)
    return Step(transform, chain[-1].numeric)


def _column_transformer(transformer) -> Step | str:
    if wraps_output(transformer):
        return "set_output is configured: scikit-learn wraps the output"
    indices = getattr(transformer, "_transformer_to_input_indices", None)
    if not isinstance(indices, dict):
        return "scikit-learn's private attribute ColumnTransformer._transformer_to_input_indices is gone"
    weights = transformer.transformer_weights or {}
    parts = []
    for name, inner, columns in transformer.transformers_:
        selected = [int(i) for i in indices.get(name, ())]
        if isinstance(inner, str) and inner == "drop" or not selected:
            continue
        if np.isscalar(columns):  # a 1-D selection: what text vectorizers take
            return f"transformer {name!r} is given one column as a 1-D array"
        compiled = compile_transformer(inner)
        if isinstance(compiled, str):
            return f"transformer {name!r} ({type(inner).__name__}): {compiled}"
        if not compiled.numeric:
            return f"transformer {name!r} outputs text, not numbers"
        parts.append((selected, compiled.transform, weights.get(name)))

    def transform(columns):
        if not parts:
            return np.zeros((len(columns[0]), 0))
        blocks = []
        for selected, part, weight in parts:
            block = part([columns[i] for i in selected])
            blocks.append(block if weight is None else block * weight)
        # concatenate: np.hstack's own result for 2-D blocks, without its Python wrapper (~2 µs)
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return Step(transform)


def reads_request_columns(model) -> bool:
    """Whether `model` (a ServedModel) computes its features with compiled steps that read a
    request's named columns (RequestColumns) themselves."""
    return model.feature_names is not None and model.compute_path.get("features", _NONE).get("path") == COMPILED


_NONE: dict = {}


def read_columns(X, n_features: int, names: list[str] | None) -> list[np.ndarray] | None:
    """Each input column as a 1-D numpy array (text as objects, missing text as NaN), or None
    for input left to scikit-learn: another container, other columns, an extension dtype, no rows."""
    if type(X) is RequestColumns:
        if X.names is not names and X.names != names:
            return None
        if not X.plain:  # what pandas makes of its objects: read off the DataFrame itself
            X = X.frame()
        elif X.shape[0] == 0:
            return None
        else:
            return X.arrays
    if names is not None:
        if not is_dataframe(X) or type(X).__name__ != "DataFrame" or len(X) == 0:
            return None
        if X.columns is not column_index(tuple(names)) and X.columns.tolist() != names:
            return None
        return _frame_columns(X)
    if type(X) is not np.ndarray or X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        return None
    if X.dtype != np.float64 and X.dtype != object:
        return None
    return list(X.T)


def _frame_columns(frame) -> list[np.ndarray] | None:
    columns = []
    for j in range(frame.shape[1]):
        values = _column_values(frame, j)
        if type(values) is np.ndarray:
            columns.append(values)
            continue
        dtype = values.dtype
        if dtype.name == "str" or (dtype.name == "string" and is_missing(getattr(dtype, "na_value", None))):
            # pandas' text dtype (pandas 3's default): the objects np.asarray (scikit-learn's
            # conversion) gives, missing values as NaN
            columns.append(values.to_numpy(dtype=object))
        else:  # another extension dtype (nullable integers, categoricals, ...): scikit-learn's
            return None
    return columns


def _column_values(frame, j: int):
    """The j-th column's array (a numpy array or a pandas extension array), not copied."""
    try:
        return frame._get_column_array(j)  # pandas' own, 0.5 us; iloc[:, j] builds a Series (37 us)
    except AttributeError:  # a pandas without it
        return frame.iloc[:, j].array if not isinstance(frame.dtypes.iloc[j], np.dtype) \
            else frame.iloc[:, j].to_numpy()
