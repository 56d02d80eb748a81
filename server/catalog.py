"""What the serving path knows of each loop: its configuration and its live model.

A background thread polls the store (config generation, live model version)
and swaps in new models; Rank only reads a reference and never waits for a
model to load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nextbest import policies
from nextbest.server.errors import NotFound
from nextbest.server.store import Store
from nextbest.v1 import types_pb2

log = logging.getLogger("nextbest")

# A live model that failed to load is tried again after the first delay, then after twice as long, up to the last.
_RETRY_SECONDS = (1.0, 60.0)


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

    def slot_pmf(
        self, example: policies.Example, slots: list[policies.Slot], chosen: list[int], event_id: str
    ) -> np.ndarray:
        with self._lock:
            return self.policy.slot_pmf(example, slots, chosen, event_id)


@dataclass(frozen=True)
class LoopView:
    config: types_pb2.LoopConfig
    model: LiveModel
    # The policy deciding the holdout group (a family that does not learn: built from the spec, never loaded).
    holdout: LiveModel | None = None


def _view_of(config: types_pb2.LoopConfig, model: LiveModel, old: LoopView | None) -> LoopView:
    """The view of `config` served by `model`; the old view's holdout policy is kept while its spec is."""
    if old is not None and old.config is config and old.model is model:
        return old
    if config.holdout_fraction <= 0:
        return LoopView(config, model)
    same = old is not None and old.config.holdout_fraction > 0 and old.config.holdout_policy == config.holdout_policy
    if same and old.holdout is not None:
        return LoopView(config, model, old.holdout)
    try:
        return LoopView(config, model, LiveModel(0, policies.create(config.holdout_policy)))
    except policies.PolicySpecError as e:  # e.g. a rules file this server's --rules-dir lacks: Rank says so
        if not same:  # tried again with each new view, logged once
            log.error("loop %s: cannot build its holdout policy: %s", config.name, e)
        return LoopView(config, model)


@dataclass
class _LoadFailure:
    """A loop's live model version that failed to load (-1: the version could not be read), and when to retry."""

    version: int
    retry_at: float  # monotonic
    backoff: float


class _LoadError(Exception):
    """The live model `version` of a loop could not be loaded."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class _Waiting(Exception):
    """A loop without a model to serve whose live model failed to load and is not due to be tried again."""


class Catalog:
    """Loops and live models by name, refreshed from the store.

    A live model that cannot be loaded is logged once per version, with the reason, and reported to
    `on_load_failure(loop)`; the previous model keeps serving and the version is tried again after a backoff
    (a transient error heals; a model that cannot load waits for the next version).
    """

    def __init__(
        self, store: Store, poll_seconds: float = 0.02, on_load_failure: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._poll = poll_seconds
        self._on_load_failure = on_load_failure
        self._failures: dict[str, _LoadFailure] = {}
        self._refresh_failed = False
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
                    continue
                except _LoadError as e:
                    self._failed(name, e.version, e.__cause__)
                except _Waiting:
                    pass
                if current[name] is None:
                    del current[name]
            self._failures = {name: f for name, f in self._failures.items() if name in current}
            self._loops = current
            self._generation = generation

    def _loops_configs(self) -> dict[str, types_pb2.LoopConfig]:
        return {name: types_pb2.LoopConfig.FromString(data) for name, data in self._store.configs.list().items()}

    def _failed(self, name: str, version: int, error: BaseException | None) -> None:
        """Log and count the first failure of a version; back off before trying it again."""
        failure = self._failures.get(name)
        if failure is None or failure.version != version:
            what = f"model version {version}" if version >= 0 else "live model version"
            log.error("loop %s: cannot load its %s; serving the previous model: %r", name, what, error)
            if self._on_load_failure:
                self._on_load_failure(name)
            failure = self._failures[name] = _LoadFailure(version, 0.0, _RETRY_SECONDS[0] / 2)
        failure.backoff = min(failure.backoff * 2, _RETRY_SECONDS[1])
        failure.retry_at = time.monotonic() + failure.backoff

    def _view(self, name: str, config: types_pb2.LoopConfig, old: LoopView | None) -> LoopView:
        try:
            version = self._store.models.live_version(name)
        except Exception as e:
            raise _LoadError(-1) from e
        if old is not None and old.model.version == version and (version or old.model.spec == config.policy):
            return _view_of(config, old.model, old)
        failure = self._failures.get(name)
        if failure is not None and failure.version == version and time.monotonic() < failure.retry_at:
            if old is None:
                raise _Waiting
            return _view_of(config, old.model, old)
        try:
            view = self._load(name, config, old, version)
        except Exception as e:
            raise _LoadError(version) from e
        self._failures.pop(name, None)
        return view

    def _load(self, name: str, config: types_pb2.LoopConfig, old: LoopView | None, version: int) -> LoopView:
        if version == 0:
            return _view_of(config, LiveModel(0, policies.create(config.policy)), old)  # untrained model of the spec
        stored = self._store.models.get(name, version)
        if old is not None and stored.spec != config.policy == old.model.spec:
            # a learner that has not yet seen the new policy published the old one: once a loop serves its
            # configured policy it never goes back; the learner publishes the new one on its next pass
            return _view_of(config, old.model, old)
        model = LiveModel(version, policies.load(stored.spec, stored.data))
        log.info("loop %s: serving model version %d (%s)", name, version, stored.spec, extra={"loop": name})
        return _view_of(config, model, old)

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
            except Exception:  # the store unreachable: logged once until a refresh succeeds again
                if not self._refresh_failed:
                    log.exception("catalog refresh failed; serving the previous models until it succeeds")
                self._refresh_failed = True
            else:
                if self._refresh_failed:
                    log.info("catalog refresh succeeds again")
                self._refresh_failed = False
