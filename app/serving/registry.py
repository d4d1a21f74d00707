"""The loaded models and their versions; the default version is the last one listed.

A model that failed to load stays in the registry as a LoadFailure, so `/readyz` and
requests for it can say why (503) instead of pretending it does not exist (404).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from mlapi.config import ModelSpec
from mlapi.errors import MlapiError, ModelNotFound, ModelNotReady
from mlapi.serving.model import ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadFailure:
    spec: ModelSpec
    reason: str

    def describe(self) -> dict:
        return {"name": self.spec.name, "version": self.spec.version, "ready": False,
                "uri": self.spec.uri, "error": self.reason}


class ModelRegistry:
    def __init__(self, default_model: str | None = None):
        self._versions: dict[str, dict[str, ServedModel | LoadFailure]] = {}
        self.default_model = default_model

    @classmethod
    def load(cls, specs: Iterable[ModelSpec], loader: Callable[[ModelSpec], ServedModel]) -> "ModelRegistry":
        specs = list(specs)
        registry = cls(specs[0].name if specs else None)
        for spec in specs:
            try:
                registry.add(loader(spec))
            except MlapiError as exc:
                log.error("model %s:%s NOT loaded from %s: %s", spec.name, spec.version, spec.uri, exc.message)
                registry.add_failure(LoadFailure(spec, exc.message))
            except Exception as exc:  # a bug or an exotic pickle: refuse the model, keep serving
                log.exception("model %s:%s NOT loaded from %s", spec.name, spec.version, spec.uri)
                registry.add_failure(LoadFailure(spec, f"{exc.__class__.__name__}: {exc}"))
        return registry

    def add(self, model: ServedModel) -> None:
        self._versions.setdefault(model.name, {})[model.version] = model

    def add_failure(self, failure: LoadFailure) -> None:
        self._versions.setdefault(failure.spec.name, {})[failure.spec.version] = failure

    def get(self, name: str | None = None, version: str | None = None) -> ServedModel:
        name = name or self.default_model
        versions = self._versions.get(name) if name else None
        if not versions:
            raise ModelNotFound(f"unknown model {name!r}; served models: {sorted(self._versions)}",
                                models=sorted(self._versions))
        if version is None:
            version = next(reversed(versions))
        entry = versions.get(version)
        if entry is None:
            raise ModelNotFound(f"model {name!r} has no version {version!r}; versions: {list(versions)}",
                                versions=list(versions))
        if isinstance(entry, LoadFailure):
            raise ModelNotReady(f"model {name}:{version} is not loaded: {entry.reason}")
        return entry

    def names(self) -> list[str]:
        return list(self._versions)

    def entries(self, name: str | None = None) -> list[ServedModel | LoadFailure]:
        if name is not None:
            if name not in self._versions:
                raise ModelNotFound(f"unknown model {name!r}; served models: {sorted(self._versions)}")
            return list(self._versions[name].values())
        return [entry for versions in self._versions.values() for entry in versions.values()]

    def failures(self) -> list[LoadFailure]:
        return [entry for entry in self.entries() if isinstance(entry, LoadFailure)]

    def models(self) -> list[ServedModel]:
        return [entry for entry in self.entries() if isinstance(entry, ServedModel)]
