""".skops artifacts (skops.io) served beside joblib pickles: the same predictions as the model's
own methods, a format in /models, types trusted by SKOPS_TRUSTED_TYPES alone (never by the
artifact), the sha256 pin on the very bytes skops loads.

skops needs numpy >= 1.25: the oldest end of `make test-sklearn-range` (numpy 1.24) cannot
install it, so that target leaves these tests out. The project's own virtualenv installs it
(extra `skops`, in `dev`); without it they skip, and fail under CI=true."""
import logging

import joblib
import numpy as np
import pytest
import sklearn.base
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from conftest import VENV_BIN, models_env, service_missing, to_rows
from mlapi.config import SKOPS_DEFAULT_TRUSTED_TYPES, Settings
from mlapi.errors import ConfigurationError
from test_model_loading import WritesMarker as PickleRunsCode, sha256

try:
    import skops.io as skops_io
except ImportError:  # pragma: no cover - a virtualenv without the extra
    service_missing("skops is not installed (pip install -e '.[skops]'; it needs numpy >= 1.25)", module=True)

TREE = "sklearn.tree._tree.Tree"


def double(X):
    """A function of the model's author: skops names it, and builds it only when trusted."""
    return np.asarray(X, dtype=float) * 2


class WritesMarker(TransformerMixin, BaseEstimator):
    """A class of the model's author whose rebuilding has a visible effect: a file appears."""

    def __init__(self, marker=""):
        self.marker = marker

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X)

    def __setstate__(self, state):
        open(state["marker"], "w").close()
        super().__setstate__(state)


def type_name(kind) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


@pytest.fixture
def skops_file(tmp_path):
    def dump(estimator, name):
        path = tmp_path / f"{name}.skops"
        skops_io.dump(estimator, path)
        return path
    return dump


@pytest.fixture
def diabetes(trained):
    """A bare tabular regressor holding no Tree (trusted by default), and rows with names."""
    rows = trained["diabetes"][2]
    return Ridge().fit(rows, np.arange(len(rows))), rows


def test_a_text_pipeline_and_a_bare_regressor_answer_as_the_models_do(make_app, trained, skops_file, diabetes):
    _, text, texts = trained["text"]
    ridge, rows = diabetes
    models = f"text={skops_file(text, 'text')},ridge={skops_file(ridge, 'ridge')},{models_env(trained, 'cancer')}"
    client = make_app(MODELS=models).test_client()
    assert client.get("/readyz").status_code == 200
    answer = client.post("/models/text/predict", json={"instances": texts}).get_json()
    assert answer["predictions"] == text.predict(texts).tolist()
    assert answer["probabilities"] == text.predict_proba(texts).tolist()
    answer = client.post("/models/ridge/predict", json={"instances": rows.to_dict(orient="records")}).get_json()
    assert answer["predictions"] == ridge.predict(rows).tolist()
    formats = {model["name"]: model["format"] for model in client.get("/models").get_json()["models"]}
    assert formats == {"text": "skops", "ridge": "skops", "cancer": "joblib"}


def test_the_card_names_the_format(trained, skops_file):
    from mlapi.naming import ModelSpec
    from mlapi.serving.card import model_card
    from mlapi.serving.loading import load_model

    path = skops_file(trained["text"][1], "text")
    assert model_card(load_model(ModelSpec("text", "1", str(path)), Settings()))["format"] == "skops"
    assert model_card(load_model(ModelSpec("c", "1", str(trained["cancer"][0])), Settings()))["format"] == "joblib"


@pytest.mark.parametrize("step, untrusted", [
    (FunctionTransformer(double), type_name(double)),
    (WritesMarker(), type_name(WritesMarker)),
], ids=["function", "class"])
def test_an_untrusted_type_is_refused_until_the_setting_names_it(make_app, trained, skops_file, diabetes,
                                                                 step, untrusted, tmp_path, caplog):
    _, rows = diabetes
    marker = tmp_path / "built"
    if isinstance(step, WritesMarker):
        step.set_params(marker=str(marker))
    model = make_pipeline(step, Ridge()).fit(rows, np.arange(len(rows)))
    models = f"custom={skops_file(model, 'custom')},{models_env(trained, 'cancer')}"
    with caplog.at_level(logging.ERROR):
        client = make_app(MODELS=models).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    failure = ready.get_json()["failures"][0]
    assert failure["name"] == "custom" and failure["format"] == "skops"
    assert f"holds types this server does not trust: {untrusted};" in failure["error"]
    assert f"SKOPS_TRUSTED_TYPES=default,{untrusted} " in failure["error"]
    assert "NOT loaded" in caplog.text and untrusted in caplog.text
    assert not marker.exists()  # refused before anything of it was built
    refused = client.post("/models/custom/predict", json={"instances": to_rows(rows)})
    assert refused.status_code == 503 and untrusted in refused.get_json()["error"]["message"]
    assert client.post("/models/cancer/predict", json={"instances": [[0.0] * 30]}).status_code == 200

    client = make_app(MODELS=models, SKOPS_TRUSTED_TYPES=f"default,{untrusted}").test_client()
    assert client.get("/readyz").status_code == 200
    answer = client.post("/models/custom/predict", json={"instances": to_rows(rows)}).get_json()
    assert answer["predictions"] == model.predict(rows).tolist()
    assert marker.exists() == isinstance(step, WritesMarker)


def test_a_forest_needs_its_tree_trusted_by_name(make_app, trained, skops_file):
    # skops warns a crafted Tree can make predict read out of bounds: not trusted by default.
    _, forest, rows = trained["diabetes"]
    models = f"forest={skops_file(forest, 'forest')}"
    failure = make_app(MODELS=models).test_client().get("/readyz").get_json()["failures"][0]
    assert f"does not trust: {TREE} (skops warns that a crafted one can make predict crash" in failure["error"]
    assert f"SKOPS_TRUSTED_TYPES=default,{TREE} " in failure["error"]
    client = make_app(MODELS=models, SKOPS_TRUSTED_TYPES=f"default,{TREE}").test_client()
    answer = client.post("/models/forest/predict", json={"instances": to_rows(rows)}).get_json()
    assert answer["predictions"] == forest.predict(rows).tolist()


def test_a_setting_without_default_trusts_only_what_it_names(make_app, trained, skops_file):
    # SimpleImputer holds a numpy.dtype: one of the default's types, gone when the setting omits `default`.
    from sklearn.impute import SimpleImputer

    _, _, rows = trained["diabetes"]
    model = make_pipeline(SimpleImputer(), Ridge()).fit(rows, np.arange(len(rows)))
    models = f"m={skops_file(model, 'm')}"
    assert make_app(MODELS=models).test_client().get("/readyz").status_code == 200
    failure = make_app(MODELS=models, SKOPS_TRUSTED_TYPES=TREE).test_client().get("/readyz").get_json()["failures"][0]
    assert "does not trust: numpy.dtype;" in failure["error"]
    assert f"SKOPS_TRUSTED_TYPES={TREE},numpy.dtype " in failure["error"]


def test_the_pin_hashes_the_bytes_skops_loads(make_app, skops_file, diabetes, tmp_path):
    _, rows = diabetes
    marker = tmp_path / "built"
    path = skops_file(make_pipeline(WritesMarker(str(marker)), Ridge()).fit(rows, np.arange(len(rows))), "pinned")
    trusted = f"default,{type_name(WritesMarker)}"
    ready = make_app(MODELS=f"p={path}#sha256={'0' * 64}", SKOPS_TRUSTED_TYPES=trusted).test_client().get("/readyz")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.get_json()["failures"][0]["error"]
    assert not marker.exists()  # refused before skops read it
    client = make_app(MODELS=f"p={path}#sha256={sha256(path)}", SKOPS_TRUSTED_TYPES=trusted).test_client()
    assert client.get("/readyz").status_code == 200
    assert client.get("/models/p/versions/1").get_json()["sha256"] == sha256(path)
    assert marker.exists()


def test_a_pickle_named_skops_is_refused_not_unpickled(make_app, tmp_path):
    # The name decides the format: a pickle swapped in under a .skops name never reaches pickle.
    marker = tmp_path / "unpickled"
    path = tmp_path / "swapped.skops"
    joblib.dump(PickleRunsCode(marker), path)  # unpickling it creates the marker
    failure = make_app(MODELS=f"s={path}").test_client().get("/readyz").get_json()["failures"][0]
    assert failure["error"].startswith(f"could not load {path} as a skops artifact: ")
    assert not marker.exists()
    # The same bytes named .joblib are unpickled, and do run.
    path.rename(path.with_suffix(".joblib"))
    make_app(MODELS=f"s={path.with_suffix('.joblib')}").test_client().get("/readyz")
    assert marker.exists()


def test_a_skops_artifact_from_another_sklearn_version_warns(make_app, trained, tmp_path, monkeypatch, caplog):
    path = tmp_path / "old.skops"
    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.0.2")
        skops_io.dump(trained["cancer"][1], path)
    with caplog.at_level(logging.WARNING):
        client = make_app(MODELS=f"old={path}").test_client()
    assert client.get("/models/old/versions/1").get_json()["sklearn_version"] == "1.0.2"
    assert f"scikit-learn 1.0.2 but this server runs {sklearn.__version__}" in caplog.text
    assert make_app(MODELS=f"old={path}", STRICT_SKLEARN_VERSION="1").test_client().get("/readyz").status_code == 503


def test_skops_trusted_types_setting():
    assert Settings.from_env({}).skops_trusted_types == SKOPS_DEFAULT_TRUSTED_TYPES
    assert TREE not in SKOPS_DEFAULT_TRUSTED_TYPES
    extended = Settings.from_env({"SKOPS_TRUSTED_TYPES": f" default , {TREE},{TREE}"}).skops_trusted_types
    assert extended == SKOPS_DEFAULT_TRUSTED_TYPES + (TREE,)
    assert Settings.from_env({"SKOPS_TRUSTED_TYPES": TREE}).skops_trusted_types == (TREE,)
    with pytest.raises(ConfigurationError, match="SKOPS_TRUSTED_TYPES: 'os.system\\(1\\)' is not a dotted type name"):
        Settings.from_env({"SKOPS_TRUSTED_TYPES": "default,os.system(1)"})


@pytest.mark.slow
def test_a_real_server_serves_a_skops_model(start_server, trained, skops_file):
    if not (VENV_BIN / "uwsgi").exists():  # pragma: no cover - a virtualenv without the server
        service_missing("this virtualenv has no uWSGI (make install-dev installs it)")
    import requests

    _, text, texts = trained["text"]
    path = skops_file(text, "text")
    server = start_server({"MODELS": f"text={path}#sha256={sha256(path)}"})
    answer = requests.post(f"{server.url}/models/text/predict", json={"instances": texts}, timeout=10).json()
    assert answer["probabilities"] == text.predict_proba(texts).tolist()
    assert requests.get(f"{server.url}/models", timeout=10).json()["models"][0]["format"] == "skops"
