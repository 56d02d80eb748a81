"""AdminService: loop configuration and statistics."""

from __future__ import annotations

import json
import time

import grpc

from server.catalog import Catalog
from server.config import Limits, check_loop_name, normalized
from server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from server.joiner import JoinerState
from server.learner import learned_position
from server.pb import admin_pb2, admin_pb2_grpc, records_pb2, types_pb2
from server.store import Store, Stream
from server.trainer import Trainer


def _loop_config(store: Store, name: str) -> types_pb2.LoopConfig:
    data = store.configs.get(check_loop_name(name))
    if data is None:
        raise NotFound(f"loop: no loop named {name!r}")
    return types_pb2.LoopConfig.FromString(data)


def loop_stats(store: Store, loop: str, joiner: JoinerState | None = None) -> admin_pb2.LoopStats:
    """Statistics of one loop from what the store holds, or from the live joiner's state when given."""
    if joiner is None:
        saved = store.log.get_cursor(f"{loop}/joiner")
        joiner = JoinerState(**json.loads(saved)) if saved else JoinerState()
    j = joiner
    live = store.models.live(loop)
    learned = learned_position(store, loop)
    joined_last = store.log.last_seq(Stream.JOINED, loop)
    lag_seconds = 0.0
    if joined_last > learned:
        oldest = store.log.read(Stream.JOINED, loop, learned, 1)
        if oldest:
            lag_seconds = max(0.0, time.time() - records_pb2.JoinedEvent.FromString(oldest[0][1]).joined_at)
    decisions = store.log.last_seq(Stream.DECISIONS, loop)
    return admin_pb2.LoopStats(
        loop=loop,
        decisions=decisions,
        rewards=j.rewards,
        activations=j.activations,
        joined=j.joined,
        default_rewarded=j.defaulted,
        orphan_rewards=j.orphans,
        late_rewards=j.late,
        average_reward=j.reward_sum / j.joined if j.joined else 0.0,
        learned=learned,
        learner_lag_events=joined_last - learned,
        learner_lag_seconds=lag_seconds,
        pending_decisions=decisions - j.decisions_closed,
        model_version=str(live.version if live else 0),
        apprentice_match_rate=j.apprentice_matches / j.apprentice_joined if j.apprentice_joined else 0.0,
    )


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """Creates, reads, changes and deletes loops; reports their statistics."""

    def __init__(self, store: Store, catalog: Catalog, limits: Limits, trainer: Trainer | None = None) -> None:
        self._store = store
        self._catalog = catalog
        self._limits = limits
        self._trainer = trainer

    def CreateLoop(self, request: admin_pb2.CreateLoopRequest, context: grpc.ServicerContext) -> types_pb2.LoopConfig:
        if request.config.version:
            raise InvalidArgument("config.version: is set by the server; leave it 0")
        config = normalized(request.config)
        config.version = 1
        if len(self._store.configs.list()) >= self._limits.max_loops:
            raise ResourceExhausted(f"loops: at most {self._limits.max_loops} loops (limit max_loops)")
        if not self._store.configs.create(config.name, config.SerializeToString()):
            raise AlreadyExists(f"config.name: a loop named {config.name!r} exists")
        self._catalog.refresh()
        return config

    def GetLoop(self, request: admin_pb2.GetLoopRequest, context: grpc.ServicerContext) -> types_pb2.LoopConfig:
        return _loop_config(self._store, request.loop)

    def ListLoops(
        self, request: admin_pb2.ListLoopsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListLoopsResponse:
        configs = self._store.configs.list()
        return admin_pb2.ListLoopsResponse(
            loops=[types_pb2.LoopConfig.FromString(configs[name]) for name in sorted(configs)]
        )

    def UpdateLoop(self, request: admin_pb2.UpdateLoopRequest, context: grpc.ServicerContext) -> types_pb2.LoopConfig:
        current = _loop_config(self._store, request.config.name)
        if request.config.version and request.config.version != current.version:
            raise FailedPrecondition(
                f"config.version: the loop is at version {current.version}, not {request.config.version}"
            )
        config = normalized(request.config)  # a bad spec is refused here; the old config stays
        config.version = current.version + 1
        try:
            self._store.configs.put(config.name, config.SerializeToString())
        except KeyError:
            raise NotFound(f"loop: no loop named {config.name!r}") from None  # deleted meanwhile
        self._catalog.refresh()
        return config

    def DeleteLoop(
        self, request: admin_pb2.DeleteLoopRequest, context: grpc.ServicerContext
    ) -> admin_pb2.DeleteLoopResponse:
        name = check_loop_name(request.loop)
        if not self._store.configs.delete(name):
            raise NotFound(f"loop: no loop named {name!r}")
        self._store.log.drop_loop(name)
        self._store.models.drop_loop(name)
        self._catalog.refresh()
        return admin_pb2.DeleteLoopResponse()

    def GetStats(self, request: admin_pb2.GetStatsRequest, context: grpc.ServicerContext) -> admin_pb2.LoopStats:
        _loop_config(self._store, request.loop)
        joiner = self._trainer.joiner_state(request.loop) if self._trainer else None
        return loop_stats(self._store, request.loop, joiner)
