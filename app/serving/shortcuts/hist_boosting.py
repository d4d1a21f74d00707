"""HistGradientBoostingClassifier.predict_proba / HistGradientBoostingRegressor.predict from the
fitted float64 structures: each iteration's TreePredictor nodes, the baseline prediction and the
loss's own link.

scikit-learn's predict for one row spends ~2 ms on validation, its known-categories bitsets
(rebuilt on every call) and one OpenMP-parallel Cython call per tree; the trees themselves are a
few microseconds. The drop-in here validates nothing scikit-learn would not pass through
unchanged (float64 rows of the fitted width, NaN and infinity included: the model accepts them),
walks all trees at once (boosting_trees.py; a few rows through the trees as generated code,
boosting_code.py) and hands the raw sum to the model's own loss
(predict_proba, link.inverse), so the probabilities are computed by scikit-learn's code from
the same raw floats; a few rows of a binary classifier or an identity-link regressor go from
the generated code's sums to the answer in Python floats instead (boosting_link.py), where the
probe saw that give the loss's output bit for bit. Native categorical features
(categorical_features=...) are encoded here as the model's own OrdinalEncoder does for numeric
categories; string categories are left to scikit-learn. app/serving/shortcuts/select.py probes
the result against the model's own method.
"""
from __future__ import annotations

import numpy as np

from mlapi.serving.frames import is_plain_numeric_frame
from mlapi.serving.shortcuts.boosting import helper_mismatch
from mlapi.serving.shortcuts.boosting_code import CODE_ROWS
from mlapi.serving.shortcuts.boosting_link import link_for
from mlapi.serving.shortcuts.boosting_trees import MAX_ROWS, NodeTable, category_lookup
from mlapi.serving.shortcuts.sklearn_code import Candidate, find_known, fitted_names

HIST = "hist-gradient-boosting"

_MODULE = "sklearn.ensemble._hist_gradient_boosting.gradient_boosting."
HIST_METHODS = (
    (_MODULE + "HistGradientBoostingClassifier", "predict_proba"),
    (_MODULE + "HistGradientBoostingRegressor", "predict"),
)
# What those methods call, which must be scikit-learn's own too.
_HELPERS = tuple((name, _MODULE + "BaseHistGradientBoosting")
                 for name in ("_raw_predict", "_predict_iterations", "_preprocess_X"))


def hist_candidate(model, method: str) -> Candidate | str:
    """A drop-in for model.<method> when it is a plain HistGradientBoosting model's, else why
    not (UNRELATED for an estimator of another kind)."""
    known, why = find_known(model, method, HIST_METHODS)
    if known is None:
        return why
    why = helper_mismatch(model, _HELPERS)
    if why is not None:
        return why
    if not getattr(model, "_predictors", None) or getattr(model, "_baseline_prediction", None) is None:
        return "not fitted"
    encode = _categorical_encoder(model)
    if isinstance(encode, str):
        return encode
    table = hist_table(model)
    if encode is None and table.category_rows is not None:
        # Categorical splits read raw values as category codes (no internal encoder here).
        return "native categorical splits without scikit-learn's internal category encoder: left to scikit-learn"
    loss, n_features, names = model._loss, model.n_features_in_, fitted_names(model)
    original = getattr(model, method)
    few_rows_link = None  # raw sums → answer in Python floats (boosting_link.py), set by the probe

    def answer(raw):
        # Fortran order, as _raw_predict allocates it: the multiclass softmax sums along rows,
        # and numpy rounds a strided sum differently from a contiguous one.
        raw = np.asfortranarray(raw)
        return loss.predict_proba(raw) if method == "predict_proba" else loss.link.inverse(raw.ravel())

    def features_of(rows):  # the trees' columns, or None when scikit-learn must say why not
        return rows if encode is None else encode(rows)

    def compute(rows):
        features = features_of(rows)
        if features is None:
            return None
        code, link = table.code, few_rows_link
        if code is not None and link is not None and len(features) <= CODE_ROWS:
            out = link([code(row) for row in features.tolist()])
            if out is not None:
                return out
        return answer(table.raw_sum(features))

    def hist_output(X):
        rows = float_rows(X, n_features, names)
        out = compute(rows) if rows is not None and len(rows) <= MAX_ROWS else None
        return out if out is not None else original(X)

    def checked(rows):
        """The probe's call: the level walk and the loss's own code; the few-row code and
        Python link are kept only where they gave these same numbers bit for bit."""
        nonlocal few_rows_link
        features = features_of(rows)
        if features is None:
            return None
        raw = table.checked_raw_sum(features)
        few_rows_link = link_for(loss, method, model.n_trees_per_iteration_, raw)
        return answer(raw)

    return Candidate(hist_output, checked, HIST)


def float_rows(X, n_features: int, names: list | None) -> np.ndarray | None:
    """X as the float64 array the model's validation (dtype float64, NaN and infinity allowed)
    hands on unchanged, or None when it would convert, warn or refuse."""
    if names is not None:
        if not is_plain_numeric_frame(X, names):
            return None
        X = X.to_numpy()
    ok = type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
    return X if ok and X.shape[0] > 0 and X.shape[1] == n_features else None


def hist_table(model) -> NodeTable:
    """The model's trees in summation order, after 0 and the baseline (what _raw_predict adds
    first); categorical nodes decided by their bitsets and the known categories."""
    known_bitsets, known_row = model._bin_mapper.make_known_categories_bitsets()
    trees, left_bitsets, known, missing, n_rows = [], [], [], [], 0
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            categorical = nodes["is_categorical"].astype(bool) & ~nodes["is_leaf"].astype(bool)
            rows = np.full(len(nodes), -1, dtype=np.intp)
            rows[categorical] = np.arange(n_rows, n_rows + categorical.sum())
            n_rows += int(categorical.sum())
            if categorical.any():
                left_bitsets.append(predictor.raw_left_cat_bitsets[nodes["bitset_idx"][categorical]])
                known.append(known_bitsets[known_row[nodes["feature_idx"][categorical]]])
                missing.append(nodes["missing_go_to_left"][categorical])
            trees.append(dict(feature=nodes["feature_idx"], threshold=nodes["num_threshold"], left=nodes["left"],
                              right=nodes["right"], is_leaf=nodes["is_leaf"], value=nodes["value"],
                              missing_left=nodes["missing_go_to_left"], category_rows=rows))
    lookup = category_lookup(*map(np.concatenate, (left_bitsets, known, missing))) if n_rows else None
    n_outputs = model.n_trees_per_iteration_
    return NodeTable(trees, n_outputs, starts=(np.zeros(n_outputs), model._baseline_prediction), category_lookup=lookup)


def original_columns(model) -> np.ndarray:
    """For each column the trees read, the model's input column it comes from: the preprocessor
    of a model with categorical features puts those first."""
    mask = getattr(model, "is_categorical_", None)
    if getattr(model, "_preprocessor", None) is None or mask is None:
        return np.arange(model.n_features_in_)
    return np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])


def model_categories(model) -> list[tuple[int, np.ndarray]] | str | None:
    """(input column, its known categories as float64 without NaN) per categorical feature, None
    without any, or why they are not numbers we can encode."""
    preprocessor = getattr(model, "_preprocessor", None)
    if preprocessor is None:
        return None
    encoder = preprocessor.named_transformers_.get("encoder")
    n_categorical = int(np.sum(model.is_categorical_))
    slices = preprocessor.output_indices_
    if encoder is None or slices.get("encoder") != slice(0, n_categorical):
        return "scikit-learn's categorical preprocessor is laid out differently in this release"
    found = []
    for column, categories in zip(np.flatnonzero(model.is_categorical_), encoder.categories_):
        if categories.dtype.kind not in "fiub":
            return ("native categorical features with non-numeric categories (strings, a pandas category "
                    "column): encoded by scikit-learn")
        categories = categories.astype(np.float64)
        found.append((int(column), categories[~np.isnan(categories)]))
    return found


def _categorical_encoder(model):
    """None (no categorical features), why not, or rows → the trees' columns: each categorical
    column's code (its index among the known categories; NaN for missing and unknown values, as
    the model's OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=nan) gives),
    then the numeric columns, as the model's ColumnTransformer lays them out."""
    categories = model_categories(model)
    if categories is None or isinstance(categories, str):
        return categories
    columns = original_columns(model)
    n_categorical = len(categories)

    def encode(rows):
        features = rows[:, columns]
        codes = features[:, :n_categorical]
        if np.isinf(codes).any():
            return None  # the encoder's validation refuses infinity: scikit-learn says so
        for j, (_, known) in enumerate(categories):
            value = codes[:, j]
            at = np.minimum(np.searchsorted(known, value), max(len(known) - 1, 0))
            found = known.take(at) == value if len(known) else np.zeros(len(value), bool)
            codes[:, j] = np.where(found, at, np.nan)
        return features

    return encode
