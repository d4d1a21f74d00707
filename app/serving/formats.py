"""Artifact formats: how an artifact's bytes become an estimator.

- joblib (`.joblib`, `.pkl`, anything not `.skops`): a pickle. Unpickling runs whatever code the
  file names, so a pickle is only as safe as its source.
- skops (`.skops`, skops.io): a zip of JSON and arrays that names every type it holds. A type
  is built only when the server trusts it: skops' own trusted types (scikit-learn's estimators,
  builtins, numpy arrays and ufuncs) and SKOPS_TRUSTED_TYPES. Anything else refuses the model.

The format is chosen by the artifact's name, which the operator wrote, never by its content:
bytes swapped under a `.skops` name are refused by skops, never unpickled. What the artifact
says it holds (skops.io.get_untrusted_types) only words the refusal; what is trusted comes from
the settings alone (a model format that trusted what its file asked for was MLflow's advisory).

skops is imported only when a `.skops` artifact is loaded (extra `skops`): its import walks
every scikit-learn module (~0.3 s, ~20 MB), which a server of pickles need not pay.
"""
from __future__ import annotations

import io
from pathlib import PurePosixPath

import joblib

from mlapi.config import SKOPS_DEFAULT_TRUSTED_TYPES
from mlapi.errors import ArtifactError

JOBLIB = "joblib"
SKOPS = "skops"


def artifact_format(uri: str) -> str:
    """`skops` for a URI whose file name ends in .skops, else `joblib` (a pickle)."""
    return SKOPS if PurePosixPath(uri).suffix.lower() == ".skops" else JOBLIB


def load_estimator(data: bytes, uri: str, trusted_types: tuple[str, ...]):
    """The estimator the artifact's bytes hold, read in the format its URI names."""
    if artifact_format(uri) == SKOPS:
        return _load_skops(data, uri, trusted_types)
    try:
        # joblib reads a file object as it reads a path (compressed or not); memory-mapping
        # (mmap_mode) is for paths only and is not used here anyway.
        return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactError(f"could not unpickle {uri}: {exc.__class__.__name__}: {exc}") from exc


def _load_skops(data: bytes, uri: str, trusted_types: tuple[str, ...]):
    try:
        import skops.io
        from skops.io import exceptions
    except ImportError:  # pragma: no cover - depends on the install
        raise ArtifactError(f"{uri} is a .skops artifact, which needs skops: pip install 'mlapi[skops]'") from None
    try:
        return skops.io.loads(data, trusted=list(trusted_types))
    except exceptions.UntrustedTypesFoundException:
        # Named for the message only: the refusal was skops.io.loads' own audit, against the settings.
        refused = [name for name in skops.io.get_untrusted_types(data=data) if name not in trusted_types]
        known_risks = getattr(exceptions, "UNTRUSTED_TYPE_REASONS", {})  # Tree, TreePredictor
        raise ArtifactError(_untrusted_reason(uri, refused, trusted_types, known_risks)) from None
    except Exception as exc:  # not a skops zip, a truncated one, a type that fails to build
        raise ArtifactError(f"could not load {uri} as a skops artifact: {exc.__class__.__name__}: {exc}") from exc


def _untrusted_reason(uri: str, refused: list[str], trusted_types: tuple[str, ...], known_risks) -> str:
    """Why a .skops artifact was refused: the types, and the setting that would trust them."""
    setting = [name for name in trusted_types if name not in SKOPS_DEFAULT_TRUSTED_TYPES]
    if set(SKOPS_DEFAULT_TRUSTED_TYPES) <= set(trusted_types):
        setting.insert(0, "default")
    named = [name + (" (skops warns that a crafted one can make predict crash or read out of bounds)"
                     if name in known_risks else "") for name in refused]
    return (f"{uri} holds types this server does not trust: {', '.join(named)}; refusing to load it. "
            f"Only if you trust where the artifact comes from, trust them by name: "
            f"SKOPS_TRUSTED_TYPES={','.join(setting + refused)} (docs/models.md: Safer model formats)")
