"""Loading: a ModelSpec's artifact fetched, verified, loaded and checked, as a ServedModel.

Unpickling runs code from the file: only serve pickles you trust (see README, Security); a
.skops artifact builds only the types the settings trust (serving/formats.py). The sha256 pin
is checked before loading, in either format, on the very bytes that are loaded (read once, into
memory): a file swapped or rewritten after the check is never what is executed. Loading
therefore holds the artifact's bytes beside the model it makes, until the model is built.
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from datetime import datetime, timezone

import sklearn

from mlapi.config import Settings
from mlapi.errors import ArtifactError
from mlapi.hidden_imports import hidden
from mlapi.naming import ModelSpec
from mlapi.serving.formats import artifact_format, load_estimator
from mlapi.serving.model import ServedModel
from mlapi.serving.storage import read_artifact

log = logging.getLogger(__name__)


def load_model(spec: ModelSpec, settings: Settings) -> ServedModel:
    """Fetch, verify and load one artifact. Raises ArtifactError with a readable reason."""
    started = time.time()
    data = read_artifact(spec.uri, settings.model_cache_dir, settings.storage_emulator_host,
                         settings.google_cloud_project, spec.sha256)
    digest = hashlib.sha256(data).hexdigest()
    if spec.sha256 and digest != spec.sha256:
        raise ArtifactError(f"sha256 mismatch for {spec.uri}: expected {spec.sha256}, file has {digest}; refusing to load it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # both formats warn of another scikit-learn version: its estimators' own __setstate__
            estimator = load_estimator(data, spec.uri, settings.skops_trusted_types)
        except ArtifactError as exc:
            cause = exc.__cause__
            if isinstance(cause, ImportError) and "pyarrow" in str(cause) and not settings.server_pyarrow:
                # pandas 3's strings in the pickle, and pandas already imported without pyarrow
                # (an earlier model's probe, or a reload after the start's import): say the setting.
                raise ArtifactError(f"{exc.message}: {spec.uri} holds pandas data backed by pyarrow and this "
                                    "server imported pandas without it: set SERVER_PYARROW=1") from cause
            raise
        finally:
            del data
    trained_with = check_sklearn_version(spec, caught, settings.strict_sklearn_version)
    # The compute path's probe hands a ColumnTransformer DataFrames, and may be the first to
    # import pandas: without pyarrow then, as the server imports it (server/startup.py,
    # import_pandas; ~0.07 s and 34 MB). Not the unpickling above: a pickle's pandas data may
    # need pyarrow (pandas 3 backs its strings with it when installed), and then it is loaded.
    with hidden(*(() if settings.server_pyarrow else ("pyarrow",))):
        served = ServedModel(spec.name, spec.version, estimator, {
            "uri": spec.uri,
            "format": artifact_format(spec.uri),
            "sha256": digest,
            "sklearn_version": trained_with,
            "serving_sklearn_version": sklearn.__version__,
            # Milliseconds: two reloads within a second still show two times (/models).
            "loaded_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "load_seconds": round(time.time() - started, 3),
        }, compiled_path=settings.compiled_path)
    log.info("loaded model %s:%s from %s (%s, %s, sha256 %s); compute path: %s", spec.name, spec.version,
             spec.uri, type(estimator).__name__, served.metadata["format"], digest[:12],
             describe_compute_path(served.compute_path))
    return served


def describe_compute_path(compute_path: dict) -> str:
    """One line for the load log: `predict_proba=forest, labels=scikit-learn (why)`."""
    return ", ".join(f"{output}={route['path']}" + (f" ({route['reason']})" if "reason" in route else "")
                     for output, route in compute_path.items()) or "none"


def check_sklearn_version(spec: ModelSpec, caught, strict: bool) -> str:
    """The scikit-learn version the artifact was saved with; a different one than this
    server's is a warning, or under STRICT_SKLEARN_VERSION an ArtifactError."""
    mismatch = next((w.message for w in caught
                     if type(w.message).__name__ == "InconsistentVersionWarning"), None)
    if mismatch is None:
        return sklearn.__version__
    pickled = mismatch.original_sklearn_version
    message = (f"model {spec.name}:{spec.version} was pickled with scikit-learn {pickled} "
               f"but this server runs {sklearn.__version__}")
    if strict:
        raise ArtifactError(message + "; refused because STRICT_SKLEARN_VERSION=1")
    log.warning("%s; predictions may differ (set STRICT_SKLEARN_VERSION=1 to refuse)", message)
    return pickled
