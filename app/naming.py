"""How a model is named in text: `name` or `name:version`, in MODELS, a Pub/Sub batch
request's "model" field and `mlapi batch-predict --model` (one rule for all of them); and
MODELS' grammar, `name[:version]=URI[#sha256=HEX]`, which `mlapi serve FILE ...` writes too.

Imports only mlapi.errors, so config.py can use it as well as the request codecs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Sequence

from mlapi.errors import ConfigurationError


def split_model_ref(text: str | None) -> tuple[str | None, str | None]:
    """`name` or `name:version` → (name, version), split at the first ':'; a part left empty
    is None (the default model, or its default version: the caller decides what that means)."""
    name, _, version = (text or "").partition(":")
    return name or None, version or None


@dataclass(frozen=True)
class ModelSpec:
    """One entry of MODELS: which artifact to serve under which name and version."""

    name: str
    version: str
    uri: str
    sha256: str | None = None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"#sha256=([0-9a-fA-F]{64})$")


def split_digest(uri: str, variable: str = "MODELS") -> tuple[str, str | None]:
    """`path#sha256=<hex>` → (path, hex); the digest pins the artifact's content."""
    match = _DIGEST.search(uri)
    if not match:
        if "#sha256=" in uri:
            raise ConfigurationError(f"{variable}: malformed #sha256= digest in {uri!r} (need 64 hex digits)")
        return uri, None
    return uri[: match.start()], match.group(1).lower()


def parse_models(value: str | Sequence[str], source: str = "MODELS") -> tuple[ModelSpec, ...]:
    """Parse `name=URI` / `name:version=URI` entries: MODELS' comma-separated text, or the
    model files named on a command line (`mlapi serve FILE ...`, a list: no comma splitting),
    where an entry may also be a bare URI, named after its file (`models/churn.joblib`: churn).
    `source` names where the entries come from in errors.

    An entry without a version gets its position among its name's entries ("1", "2", ...),
    so `a=x.joblib,a=y.joblib` serves versions 1 and 2 and requests default to 2.
    """
    listed = not isinstance(value, str)
    specs: list[ModelSpec] = []
    for raw in (value if listed else value.split(",")):
        entry = raw.strip()
        if not entry:
            continue
        if listed and "=" not in split_digest(entry, source)[0]:  # a bare URI (its digest has an "=")
            entry = f"{PurePosixPath(split_digest(entry, source)[0]).stem}={entry}"
        if "=" not in entry:
            raise ConfigurationError(f"{source} entry {entry!r} is not name=URI or name:version=URI")
        key, uri = (part.strip() for part in entry.split("=", 1))
        name, version = split_model_ref(key)
        name = name or ""  # an empty name is refused below, with its entry
        version = version or str(1 + sum(1 for spec in specs if spec.name == name))
        for label, part in (("name", name), ("version", version)):
            if not _NAME.match(part):
                raise ConfigurationError(
                    f"{source} entry {entry!r}: model {label} {part!r} must be letters, digits, '_', '.' or '-'"
                    + (" (name it: NAME=PATH)" if listed and label == "name" else ""))
        if not uri:
            raise ConfigurationError(f"{source} entry {entry!r} has an empty URI")
        if any(spec.name == name and spec.version == version for spec in specs):
            raise ConfigurationError(f"{source} lists {name}:{version} twice")
        uri, sha = split_digest(uri, source)
        specs.append(ModelSpec(name, version, uri, sha))
    if not specs:
        raise ConfigurationError(f"{source} is set but lists no model")
    return tuple(specs)


def models_value(specs: Sequence[ModelSpec]) -> str:
    """The MODELS value that parse_models reads back as `specs`: how `mlapi serve` hands the
    files named on its command line to a server that reads its settings from the environment."""
    entries = []
    for spec in specs:
        if "," in spec.uri:
            raise ConfigurationError(f"cannot serve {spec.uri!r}: MODELS separates entries with commas, "
                                     f"so a model's path must not contain one (rename the file)")
        entries.append(f"{spec.name}:{spec.version}={spec.uri}" + (f"#sha256={spec.sha256}" if spec.sha256 else ""))
    return ",".join(entries)
