"""The loaded models and their versions. The default model is the first one configured; a
model's default version is the last one listed for it (`default_version`, the one rule that
requests and `/models/<name>` both follow).

A model that failed to load stays in the registry as a LoadFailure, so `/readyz` and
requests for it can say why (503) instead of pretending it does not exist (404).

A reload (serving/reload.py) builds a whole new table of versions and swaps it in with one
assignment (`swap`): a request reads either the old table or the new one, never half of each.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from mlapi.naming import ModelSpec
from mlapi.errors import MlapiError, ModelNotFound, ModelNotReady, shown
from mlapi.serving.formats import artifact_format
from mlapi.serving.model import ServedModel

log = logging.getLogger(__name__)

# What a caller is told of a failed load when the reason must stay in the log (production: the
# reason may name the artifact's path or bucket).
LOAD_FAILED = "failed to load: the server's log says why"


@dataclass(frozen=True)
class LoadFailure:
    spec: ModelSpec
    reason: str

    def describe(self) -> dict:
        # The format too: a .skops artifact refused for its types says so beside the reason.
        return {"name": self.spec.name, "version": self.spec.version, "ready": False,
                "uri": self.spec.uri, "format": artifact_format(self.spec.uri), "error": self.reason}


def load_entry(spec: ModelSpec, loader: Callable[[ModelSpec], ServedModel]) -> ServedModel | LoadFailure:
    """The model spec names, or why it did not load (logged)."""
    try:
        return loader(spec)
    except MlapiError as exc:
        log.error("model %s:%s NOT loaded from %s: %s", spec.name, spec.version, spec.uri, exc.message)
        return LoadFailure(spec, exc.message)
    except Exception as exc:  # a bug or an exotic pickle: refuse the model, keep serving
        log.exception("model %s:%s NOT loaded from %s", spec.name, spec.version, spec.uri)
        return LoadFailure(spec, f"{exc.__class__.__name__}: {exc}")


class ModelRegistry:
    def __init__(self, default_model: str | None = None):
        self._versions: dict[str, dict[str, ServedModel | LoadFailure]] = {}
        self.default_model = default_model
        # How many reloads this table has seen (with REDIS_URL: the fleet's count, the same on
        # every instance that has taken the last one); 0 as loaded at start. /models shows it.
        self.generation = 0
        # Production: a predict route's 503 says LOAD_FAILED rather than the reason (as /readyz does).
        self.hide_load_reasons = False

    @classmethod
    def load(cls, specs: Iterable[ModelSpec], loader: Callable[[ModelSpec], ServedModel]) -> "ModelRegistry":
        specs = list(specs)
        registry = cls(specs[0].name if specs else None)
        for spec in specs:
            registry.put(load_entry(spec, loader))
        return registry

    def put(self, entry: ServedModel | LoadFailure) -> None:
        if isinstance(entry, LoadFailure):
            self.add_failure(entry)
        else:
            self.add(entry)

    def entry(self, spec: ModelSpec) -> ServedModel | LoadFailure | None:
        """What is served for spec's name and version, if anything."""
        return self._versions.get(spec.name, {}).get(spec.version)

    def swap(self, other: "ModelRegistry", generation: int) -> None:
        """Serve `other`'s versions from now on: one assignment, atomic for every reader (a
        request that already resolved its model keeps it to the end)."""
        self._versions = other._versions
        self.generation = generation

    def add(self, model: ServedModel) -> None:
        self._versions.setdefault(model.name, {})[model.version] = model

    def add_failure(self, failure: LoadFailure) -> None:
        self._versions.setdefault(failure.spec.name, {})[failure.spec.version] = failure

    def _versions_of(self, name: str | None) -> dict[str, ServedModel | LoadFailure]:
        versions = self._versions.get(name) if name else None
        if not versions:
            served = sorted(self._versions)
            if served:
                choose = f"name one of the served models: {', '.join(served)}"
            else:
                choose = "no model is served: set MODELS (or name model files on `mlapi serve`) and restart"
            raise ModelNotFound(f"unknown model {shown(name)}; {choose}", models=served)
        return versions

    def default_version(self, name: str) -> str:
        """The version served when a request names none: the last one listed (in MODELS,
        unversioned entries are numbered in order, so that is the newest). A version that
        failed to load stays the default: requests then get its 503, not an older model."""
        return next(reversed(self._versions_of(name)))

    def get(self, name: str | None = None, version: str | None = None) -> ServedModel:
        name = name or self.default_model
        versions = self._versions_of(name)
        if version is None:
            version = self.default_version(name)
        entry = versions.get(version)
        if entry is None:
            raise ModelNotFound(f"model {name!r} has no version {shown(version)}; name one of its versions: "
                                f"{', '.join(versions)}, or leave the version out for the newest",
                                versions=list(versions))
        if isinstance(entry, LoadFailure):
            reason = LOAD_FAILED if self.hide_load_reasons else entry.reason
            raise ModelNotReady(f"model {name}:{version} is not loaded: {reason}")
        return entry

    def entries(self, name: str | None = None) -> list[ServedModel | LoadFailure]:
        if name is not None:
            return list(self._versions_of(name).values())
        return [entry for versions in self._versions.values() for entry in versions.values()]

    def failures(self) -> list[LoadFailure]:
        return [entry for entry in self.entries() if isinstance(entry, LoadFailure)]

    def models(self) -> list[ServedModel]:
        return [entry for entry in self.entries() if isinstance(entry, ServedModel)]
