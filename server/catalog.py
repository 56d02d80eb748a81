"""What the serving path knows of each loop: its configuration and its live model.

A background thread polls the store (config generation, live model version)
and swaps in new models; Rank only reads a reference and never waits for a
model to load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from nextbest import policies
from nextbest.server.errors import NotFound
from nextbest.server.store import Store
from nextbest.v1 import types_pb2

log = logging.getLogger("nextbest")


class LiveModel:
    """An immutable published model and a lock that serializes calls into it."""

    def __init__(self, version: int, policy: policies.Policy) -> None:
        self.version = version
        self.policy = policy
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        return self.policy.spec

    def pmf(self, example: policies.Example, event_id: str) -> np.ndarray:
        with self._lock:
            return self.policy.pmf(example, event_id)


@dataclass(frozen=True)
class LoopView:
    config: types_pb2.LoopConfig
    model: LiveModel


class Catalog:
    """Loops and live models by name, refreshed from the store."""

    def __init__(self, store: Store, poll_seconds: float = 0.02) -> None:
        self._store = store
        self._poll = poll_seconds
        self._loops: dict[str, LoopView] = {}
        self._generation = -1
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def get(self, loop: str) -> LoopView:
        """The loop's current view; NotFound when there is no such loop."""
        view = self._loops.get(loop)
        if view is None and self._store.configs.generation() != self._generation:  # created a moment ago
            self.refresh()
            view = self._loops.get(loop)
        if view is None:
            raise NotFound(f"loop: no loop named {loop!r}")
        return view

    def names(self) -> list[str]:
        return sorted(self._loops)

    def refresh(self) -> None:
        """Bring configurations and live models up to date with the store."""
        with self._refresh_lock:
            generation = self._store.configs.generation()
            configs = self._loops_configs() if generation != self._generation else None
            current = dict(self._loops)
            if configs is not None:
                current = {name: current.get(name) for name in configs}
            for name in list(current):
                config = configs[name] if configs is not None else current[name].config
                try:
                    current[name] = self._view(name, config, current[name])
                except Exception:
                    log.exception("loop %s: cannot load its live model; serving the previous one", name)
                    if current[name] is None:
                        del current[name]
            self._loops = current
            self._generation = generation

    def _loops_configs(self) -> dict[str, types_pb2.LoopConfig]:
        return {name: types_pb2.LoopConfig.FromString(data) for name, data in self._store.configs.list().items()}

    def _view(self, name: str, config: types_pb2.LoopConfig, old: LoopView | None) -> LoopView:
        version = self._store.models.live_version(name)
        if old is not None and old.model.version == version and (version or old.model.spec == config.policy):
            return old if old.config is config else LoopView(config, old.model)
        if version == 0:
            model = LiveModel(0, policies.create(config.policy))  # untrained model of the spec
        else:
            stored = self._store.models.get(name, version)
            if old is not None and stored.spec != config.policy == old.model.spec:
                # a learner that has not yet seen the new policy published the old one: once a loop serves its
                # configured policy it never goes back; the learner publishes the new one on its next pass
                return LoopView(config, old.model)
            model = LiveModel(version, policies.load(stored.spec, stored.data))
            log.info("loop %s: serving model version %d (%s)", name, version, stored.spec)
        return LoopView(config, model)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.refresh()
            except Exception:
                log.exception("catalog refresh failed; serving the previous models")
