"""A reload of the served models: every configured artifact read again (pins and sha256 checked,
gs:// and MODEL_CACHE_DIR as at start: the same loader), then swapped in at once.

A model whose artifact no longer loads keeps what it served: the version that was loaded goes
on answering, and the reload's outcome names it with the reason (a bad upload must not take a
working model down; the operator sees the failure and fixes the artifact). A version that had
failed at start and loads now is served from the swap on.

Where this runs is the server's business (app/server/reloads.py: in the master process, so
the workers forked after it share the new models' memory); this module knows no process.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable

from mlapi.naming import ModelSpec
from mlapi.serving.model import ServedModel
from mlapi.serving.registry import LOAD_FAILED, ModelRegistry, load_entry

if TYPE_CHECKING:
    from mlapi.server.fleet_reload import FleetReloads
    from mlapi.services import Services

log = logging.getLogger(__name__)

EXTENSION = "mlapi.reloads"  # app.extensions key: what POST /admin/reload calls (.reload())


@dataclass
class ReloadOutcome:
    generation: int
    reloaded: list[dict] = field(default_factory=list)  # {"model", "sha256", "loaded_at"}
    failed: list[dict] = field(default_factory=list)  # {"model", "error", "serving"}
    broadcast: str = "none"  # what the fleet heard of it (app/server/fleet_reload.py)

    @property
    def complete(self) -> bool:
        return not self.failed

    def as_json(self, hide_reasons: bool) -> dict:
        failed = [{**failure, "error": LOAD_FAILED} if hide_reasons else failure for failure in self.failed]
        return {"generation": self.generation, "complete": self.complete, "reloaded": self.reloaded,
                "failed": failed, "broadcast": self.broadcast}


def reload_models(registry: ModelRegistry, specs: Iterable[ModelSpec], loader: Callable[[ModelSpec], ServedModel],
                  generation: int) -> ReloadOutcome:
    """Load every spec again into a new table and swap it into `registry` in one step."""
    fresh = ModelRegistry(registry.default_model)
    outcome = ReloadOutcome(generation)
    for spec in specs:
        label = f"{spec.name}:{spec.version}"
        entry = load_entry(spec, loader)
        if isinstance(entry, ServedModel):
            fresh.add(entry)
            outcome.reloaded.append({"model": label, "sha256": entry.metadata["sha256"],
                                     "loaded_at": entry.metadata["loaded_at"]})
            continue
        previous = registry.entry(spec)
        if isinstance(previous, ServedModel):
            fresh.add(previous)
            serving = f"the artifact loaded at {previous.metadata.get('loaded_at')}"
        else:
            fresh.add_failure(entry)
            serving = "nothing: it has not loaded since the server started"
        log.error("reload: model %s keeps serving %s", label, serving)
        outcome.failed.append({"model": label, "error": entry.reason, "serving": serving})
    registry.swap(fresh, generation)
    log.info("reload generation %d: %d models reloaded, %d kept their previous state", generation,
             len(outcome.reloaded), len(outcome.failed))
    return outcome


class Reloader:
    """One reload in this process: generation, load, swap, announce to the fleet."""

    def __init__(self, services: Services, fleet: FleetReloads | None):
        from mlapi.serving.loading import load_model

        self.services = services
        self.fleet = fleet
        self.load = partial(load_model, settings=services.settings)
        self.lock = threading.Lock()
        # The fleet's counter as this instance last followed it (or took it, INCR, for its own
        # reload): an announcement reloads here when the counter differs from it
        # (app/server/fleet_reload.py says why not "is newer").
        self.followed = 0

    def run(self, generation: int | None = None) -> ReloadOutcome:
        """generation None: a reload asked of this instance (the fleet is told); a number: the
        fleet's reload of that generation, heard from another instance."""
        registry = self.services.registry
        announced = generation is None and self.fleet is not None
        if generation is None:
            taken = self.fleet.next_generation() if self.fleet else None
            self.followed = taken or self.followed  # Redis down: the fleet's counter is unchanged
            generation = taken or registry.generation + 1
        else:
            self.followed = generation
        outcome = reload_models(registry, self.services.settings.models, self.load, generation)
        if announced:
            outcome.broadcast = self.fleet.publish(generation)
        elif self.fleet is not None:
            outcome.broadcast = "heard from the fleet"
        return outcome

    def reload(self) -> ReloadOutcome:
        with self.lock:
            return self.run()
