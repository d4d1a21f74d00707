"""A model's compute path, decided once at load: which code computes each of its outputs.

Per feature step, a shortcut (app/serving/shortcuts/select.py) or the step's own transform;
when a tabular Pipeline's feature steps are not all covered that way, the whole feature side
compiled (compiled_pipeline.py) if every step compiles and the probe (compiled_probe.py) finds
it equal to scikit-learn's; then the final step's predict_proba / predict and the labels.
COMPILED_PATH=off (Settings.compiled_path) puts every output on scikit-learn's own method: the
switch that rules out every shortcut at once when a prediction is in doubt.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlapi.serving.shortcuts.compiled_pipeline import COMPILED, compile_features
from mlapi.serving.shortcuts.compiled_probe import verify
from mlapi.serving.shortcuts.probes import probe_rows, transformed
from mlapi.serving.shortcuts.select import Route, labels_route, own_method, shortcut

log = logging.getLogger(__name__)

OFF = "COMPILED_PATH=off"


@dataclass
class ComputePath:
    transforms: list            # the feature steps' calls, in order
    predict_proba: Callable | None   # None: the predictor's own
    predict_labels: Callable | None
    proba_relation: str | None  # labels read off predict_proba (select.ARGMAX / MONOTONE), or None
    routes: dict                # output → Route

    def describe(self) -> dict:
        return {output: route.describe() for output, route in self.routes.items()}


def choose(model, enabled: bool = True) -> ComputePath:
    """`model`: a ServedModel's feature_step, predictor, input_kind, feature_names, has_proba, classes."""
    steps = [] if model.feature_step is None else [
        (name, step) for name, step in model.feature_step.steps if step is not None and step != "passthrough"]
    if not enabled:
        return _scikit_learn_only(model, steps)
    routes = {}
    # The feature step's transforms, called one after the other: what Pipeline.transform does
    # without metadata routing, whose per-call bookkeeping (routing objects, deep-copied tags)
    # costs more than a one-row scaler. Probe rows for each step are the previous step's output.
    probe = probe_rows(steps[0][1]) if steps else None
    transforms = []
    for name, step in steps:
        route = shortcut(step, "transform", probe)
        routes[f"{name}.transform"] = route
        transforms.append(route.call or step.transform)
        probe = transformed(step, probe)
    mismatched = [output for output, route in routes.items() if (route.reason or "").startswith("probe mismatch")]
    if mismatched:  # the compiled step would run that shortcut's arithmetic: not trusted either
        routes["features"] = own_method(f"not compiled: {mismatched[0]}'s shortcut failed its probe")
    elif model.input_kind == "tabular" and any(route.call is None for route in routes.values()):
        compiled, why, probe_features = _compiled(model, steps, transforms)
        if compiled is not None:
            routes, transforms, probe = {"features": Route(compiled, COMPILED)}, [compiled], probe_features
        else:
            if not why.startswith("not compiled"):  # a probe mismatch: worth a warning
                log.warning("model %s:%s: compiled feature steps not used (%s); using scikit-learn's own",
                            model.name, model.version, why)
            routes["features"] = own_method(why)
    predictor = model.predictor
    # The predictor's own fitted range (a forest's splits) beside what the steps make.
    own = probe_rows(predictor)
    if probe is None or (own is not None and probe.shape[1] != own.shape[1]):
        probe = own
    elif own is not None:
        probe = np.ascontiguousarray(np.vstack([probe, own]))
    path = ComputePath(transforms, None, None, None, routes)
    if model.has_proba:
        route = shortcut(predictor, "predict_proba", probe)
        routes["predict_proba"], path.predict_proba = route, route.call
        path.proba_relation, routes["labels"] = labels_route(predictor, probe, route.probe_output)
    elif model.classes is not None:
        routes["labels"] = own_method("no predict_proba to read labels from")
    else:
        route = shortcut(predictor, "predict", probe)
        routes["predict"], path.predict_labels = route, route.call
    return path


def _compiled(model, steps, transforms):
    """(the compiled feature steps, None, their plain probe rows) or (None, why not, None)."""
    def own_chain(X):  # scikit-learn's steps, as Pipeline.transform runs them
        for _, step in steps:
            X = step.transform(X)
        return X

    def fallback(X):  # what the server runs without the compiled path: each step's own route
        for transform in transforms:
            X = transform(X)
        return X
    compiled = compile_features(steps, getattr(model.estimator, "n_features_in_", None), model.feature_names, fallback)
    if isinstance(compiled, str):
        return None, f"not compiled: {compiled}", None
    why, features = verify(compiled, own_chain, model.predictor)
    if why is not None:
        return None, why, None
    return compiled, None, features


def _scikit_learn_only(model, steps) -> ComputePath:
    routes = {f"{name}.transform": own_method(OFF) for name, _ in steps}
    if model.has_proba:
        routes["predict_proba"] = own_method(OFF)
    if model.classes is not None:
        routes["labels"] = own_method(OFF)
    else:
        routes["predict"] = own_method(OFF)
    return ComputePath([step.transform for _, step in steps], None, None, None, routes)
