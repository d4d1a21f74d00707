"""How a model is named in text: `name` or `name:version`, in MODELS, a Pub/Sub batch
request's "model" field and `mlapi batch-predict --model`. One rule for all of them.

Imports nothing from mlapi, so config.py can use it as well as the request codecs.
"""
from __future__ import annotations


def split_model_ref(text: str | None) -> tuple[str | None, str | None]:
    """`name` or `name:version` → (name, version), split at the first ':'; a part left empty
    is None (the default model, or its default version: the caller decides what that means)."""
    name, _, version = (text or "").partition(":")
    return name or None, version or None
