"""Input the model rejected, explained: which instance, which column, what to send instead.

scikit-learn says "could not convert string to float: 'twelve'" or "Input X contains NaN" and
stops there. When a model call fails on a request's rows, `explain_rejection` looks at those
rows once more — only then, so a request that succeeds pays nothing — and names the first
cell at fault: its instance (the position in the request) and column, the value, and what the
column takes (a number, or one of the categories the model's encoder learned; see
app/serving/columns.py). What it cannot pin on a cell keeps scikit-learn's words, with a hint.
Of missing values in several columns, the one named is in a column the model refuses one in,
found by asking the model about each gap alone (serving/missing_values.py): an imputed
column's gap is not at fault.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

import numpy as np

from mlapi.errors import InvalidInput, RequestTimeout, shown
from mlapi.serving.frames import as_frame, is_dataframe
from mlapi.serving.missing_values import first_refused_alone, missing_mask, says_missing

if TYPE_CHECKING:
    from mlapi.serving.model import ServedModel

SHOWN_CATEGORIES = 20  # a longer list is cut (`mlapi card` and /openapi.json list them all)
SHOWN_NAMES = 12

log = logging.getLogger(__name__)

# Off for a merged call (app/serving/batching.py): one it rejects is retried part by part, and
# each part's rejection is explained then; explaining the merged rows would be work thrown away.
_explaining: ContextVar[bool] = ContextVar("mlapi_explaining", default=True)


def explaining() -> bool:
    """Whether a rejection here would be explained (explanations' setting; on by default)."""
    return _explaining.get()


@contextmanager
def explanations(on: bool) -> Iterator[None]:
    """Rejections inside this block are explained (on) or keep the model's words (off)."""
    token = _explaining.set(on)
    try:
        yield
    finally:
        _explaining.reset(token)


class Fault(NamedTuple):
    row: int
    column: int
    value: Any


def explain_rejection(model: ServedModel, model_input, exc: InvalidInput) -> InvalidInput:
    """A 422 naming the instance and column at fault, or the model's own words and a hint.
    A diagnosis that fails (a model whose words or categories it cannot read) leaves the
    model's words: the client's 422 never becomes a 500."""
    if not _explaining.get():
        return _in_the_models_words(model, exc)
    try:
        return _diagnose(model, model_input, exc)
    except RequestTimeout:  # the request's time is up while diagnosing: a 504, not the 422
        raise
    except Exception:
        log.debug("could not explain why %s:%s rejected its input; its own words stand",
                  model.name, model.version, exc_info=True)
        return _in_the_models_words(model, exc)


def _diagnose(model: ServedModel, model_input, exc: InvalidInput) -> InvalidInput:
    said = " ".join(str(exc.__cause__ or exc.message).split())  # scikit-learn's, on one line
    table = _columns_of(model_input)
    if table is not None:
        labels, columns = table
        for family, detector, message in _DIAGNOSES:
            if family(said.lower()):
                fault = _first_at_fault(model, model_input, table, detector(model, labels, columns), message)
                if fault is not None:
                    text, details = message(model, labels[fault.column], fault.value)
                    where = _where(fault.row, labels[fault.column])
                    first_sentence = said.split(". ")[0].rstrip(".")
                    return InvalidInput(f"{where}{text} (scikit-learn: {first_sentence})",
                                        instance=fault.row, column=labels[fault.column], **details)
    return _in_the_models_words(model, exc)


def _in_the_models_words(model: ServedModel, exc: InvalidInput) -> InvalidInput:
    return InvalidInput(f"{' '.join(exc.message.split())}; {instance_hint(model)}")


def name_rows(exc: InvalidInput, word: str, name: Callable[[int], Any], key: str) -> InvalidInput:
    """`exc` with the instance it names called what the caller knows that row by: a file's row
    number ("row 20037", details["row"]), a store record's id ("record c-12", details["id"]).
    An error that names an instance starts its message "instance N" and holds N in
    details["instance"] (here and in app/serving/instances.py); any other error is kept as it is."""
    index = exc.details.get("instance")
    prefix = f"instance {index}"
    if not isinstance(index, int) or not exc.message.startswith(prefix):
        return exc
    details = {k: v for k, v in exc.details.items() if k != "instance"}
    return InvalidInput(f"{word} {name(index)}{exc.message[len(prefix):]}", **{key: name(index)}, **details)


def instance_hint(model: ServedModel) -> str:
    """What one instance of this model looks like, as advice to the client."""
    if model.input_kind == "text":
        return 'send each instance as a string, e.g. {"instances": ["some text"]}'
    names = model.feature_names
    if names:
        listed = ", ".join(names[:SHOWN_NAMES]) + (f", … ({len(names)} in all)" if len(names) > SHOWN_NAMES else "")
        return (f"send each instance as an object with keys {listed}, or as a list of their {len(names)} "
                f"values in that order")
    if model.n_features:
        return f"send each instance as a list of {model.n_features} numbers"
    return "send each instance as a list of feature values"


def column_expects(model: ServedModel, column) -> str:
    """What a column takes, in words: a number, a text, or one of its known categories."""
    if not isinstance(column, str) or column not in model.string_columns:
        return "a number"
    categories = model.string_columns[column]
    if categories is None:  # read by a text vectorizer
        return "a text"
    listed = ", ".join(repr(c) for c in categories[:SHOWN_CATEGORIES])
    more = f", … ({len(categories)} in all)" if len(categories) > SHOWN_CATEGORIES else ""
    return f"one of the known categories {listed}{more}"


# ---- the table the model was given: (labels, one object or float array per column) ----------
def _columns_of(model_input) -> tuple[list, list[np.ndarray]] | None:
    model_input = as_frame(model_input)  # a request's columns without a DataFrame yet: its DataFrame
    if is_dataframe(model_input):
        labels = [str(c) for c in model_input.columns]
        return labels, [model_input.iloc[:, j].to_numpy() for j in range(model_input.shape[1])]
    if isinstance(model_input, np.ndarray) and model_input.ndim == 2:
        return list(range(model_input.shape[1])), list(model_input.T)
    return None  # texts, sparse matrices: nothing to point at


def _where(row: int, label) -> str:
    column = f"column {label!r}" if isinstance(label, str) else f"feature {label}"
    return f"instance {row}, {column}: "


def _first(per_column: list[tuple[int, int, Any]]) -> Fault | None:
    """The first fault in request order (row, then column) among each column's first."""
    found = _in_request_order(per_column)
    return found[0] if found else None


def _in_request_order(per_column: list[tuple[int, int, Any]]) -> list[Fault]:
    found = [Fault(row, column, value) for column, row, value in per_column]
    return sorted(found, key=lambda fault: (fault.row, fault.column))


def _first_where(mask: np.ndarray, values: np.ndarray, column: int) -> list[tuple[int, int, Any]]:
    rows = np.flatnonzero(mask)
    return [(column, int(rows[0]), values[rows[0]])] if len(rows) else []


# ---- one detector per kind of fault: each column's first faulty row -------------------------
def _not_numbers(model, labels, columns):
    import pandas as pd

    faults = []
    for j, values in enumerate(columns):
        if values.dtype != object or labels[j] in model.string_columns:
            continue
        present = ~missing_mask(values)
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").notna().to_numpy()
        faults += _first_where(present & ~numbers, values, j)
    return faults


def _unknown_categories(model, labels, columns):
    faults = []
    for j, values in enumerate(columns):
        categories = model.string_columns.get(labels[j])
        if categories is not None:
            known = set(categories)
            unknown = np.fromiter((not _among(value, known) for value in values), dtype=bool, count=len(values))
            faults += _first_where(unknown & ~missing_mask(values), values, j)
    return faults


def _among(value, known: set) -> bool:
    try:
        return value in known
    except TypeError:  # unhashable: a list or an object is no category
        return False


def _missing_in(strings: bool | None):
    """Each column's first missing value, among the string columns (True), the others (False)
    or all (None)."""
    def detector(model, labels, columns):
        faults = []
        for j, values in enumerate(columns):
            if strings is None or (labels[j] in model.string_columns) == strings:
                faults += _first_where(missing_mask(values), values, j)
        return faults
    return detector


def _infinite(model, labels, columns):
    faults = []
    for j, values in enumerate(columns):
        if values.dtype.kind == "f":
            faults += _first_where(np.isinf(values), values, j)
    return faults


# ---- of missing values in several columns, the one the model refuses -------------------
def _first_at_fault(model, model_input, table, per_column, message) -> Fault | None:
    """The first fault in request order; of missing values in more than one column, the first
    the model refuses on its own when one can be shown (in one column: that one, no call)."""
    if message is _a_missing_value and len(per_column) > 1:
        refused = first_refused_alone(model, model_input, table, _in_request_order(per_column))
        if refused is not None:
            return refused
    return _first(per_column)


# ---- what each fault is called, and what to send instead ------------------------------------
def _not_a_number(model, column, value):
    return f"{shown(value)} is not a number; send a number", {"value": value, "expected": "a number"}


def _not_a_category(model, column, value):
    categories = model.string_columns[column]
    # as many as the message shows, and how many there are (`mlapi card` lists them all)
    return (f"{shown(value)} is not {column_expects(model, column)}; send one of those",
            {"value": value, "expected": "a known category", "categories": categories[:SHOWN_CATEGORIES],
             "category_count": len(categories)})


def _a_missing_value(model, column, value):
    return (f"the value is missing (null or NaN) and model {model.name}:{model.version} cannot take a "
            f"missing value here; send {column_expects(model, column)}",
            {"expected": column_expects(model, column)})


def _an_infinity(model, column, value):
    return (f"{value} is infinite and model {model.name}:{model.version} cannot take infinity; "
            f"send a finite number", {"value": str(value), "expected": "a finite number"})


def _mentions(*words: str) -> Callable[[str], bool]:
    return lambda said: any(word in said for word in words)


# (which of scikit-learn's messages it explains, the detector, the message), tried in order:
# only the family scikit-learn named is searched, so a cell is never blamed for another fault.
_DIAGNOSES = [
    (_mentions("could not convert", "string", "invalid literal"), _not_numbers, _not_a_number),
    (_mentions("unknown categor"), _unknown_categories, _not_a_category),
    # A missing value is blamed on the kind of column that said so: an encoder's "unknown
    # categories [nan]" or a text vectorizer's "np.nan is an invalid document" on a string
    # column; a numeric step's "Input X contains NaN" on a number column (a string column's
    # missing value, which its encoder took, is not at fault); else on any column.
    (_mentions("unknown categor", "invalid document"), _missing_in(strings=True), _a_missing_value),
    (_mentions("contains nan", "missing value"), _missing_in(strings=False), _a_missing_value),
    (says_missing, _missing_in(None), _a_missing_value),
    (_mentions("infinity"), _infinite, _an_infinity),
]
