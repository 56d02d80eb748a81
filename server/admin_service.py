"""AdminService: loop configuration and statistics."""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

import grpc

from nextbest import policies
from nextbest.policies.ope.report import EvaluationReport
from nextbest.server.catalog import Catalog
from nextbest.server.config import Limits, check_loop_name, normalized
from nextbest.server.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from nextbest.server.evaluation import EvaluationLimits, evaluate_in_child
from nextbest.server.restrictions import Restrictions
from nextbest.server.stats import loop_stats
from nextbest.server.store import PublishConflictError, Store, StoredModel, Stream
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.trainer import Trainer, request_log_deletion
from nextbest.v1 import admin_pb2, admin_pb2_grpc, records_pb2, types_pb2

_CHUNK = 1 << 20
_PUBLISH_ATTEMPTS = 20


def _loop_config(store: Store, name: str) -> types_pb2.LoopConfig:
    data = store.configs.get(check_loop_name(name))
    if data is None:
        raise NotFound(f"loop: no loop named {name!r}")
    return types_pb2.LoopConfig.FromString(data)


def evaluate_response(report: EvaluationReport) -> admin_pb2.EvaluateResponse:
    """The EvaluateResponse of an evaluation report, with its JSON document (that of `nextbest evaluate`)."""

    def number(x: float | None) -> float:
        return math.nan if x is None else x

    response = admin_pb2.EvaluateResponse(events=report.events, best=report.best or "", report_json=report.to_json())
    for p in report.policies:
        policy = response.policies.add(
            spec=p.spec, effective_sample_size=number(p.ess), max_weight=number(p.max_weight), warnings=p.warnings
        )
        for name, e in p.estimates.items():
            lo, hi = e.ci
            policy.estimates[name].CopyFrom(
                admin_pb2.Estimate(value=number(e.value), ci_low=number(lo), ci_high=number(hi))
            )
    return response


def _make_live(config: types_pb2.LoopConfig, spec: str) -> None:
    config.policy = spec
    shadows = [s for s in config.shadow_policies if s != spec]
    del config.shadow_policies[:]
    config.shadow_policies.extend(shadows)


def _spool(requests: Iterable[admin_pb2.ImportModelRequest], out: IO[bytes], limit: int) -> None:
    """Write the model bytes of an import to `out` as they arrive; ResourceExhausted once they pass `limit`."""
    size = 0
    for request in requests:
        size += len(request.data)
        if size > limit:
            raise ResourceExhausted(f"data: model larger than {limit} bytes")
        out.write(request.data)


def _imported(spec: str, received: bytes) -> bytes:
    """The bytes to publish for an imported model, verified in a scratch instance (the live one is untouched)."""
    try:
        data = policies.import_state(spec, received)
        policies.load(spec, data)
    except (ValueError, policies.PolicySpecError) as e:
        raise InvalidArgument(f"data: cannot load the model as {spec!r}: {e}") from e
    return data


def _model_info(model: StoredModel, live_version: int) -> admin_pb2.ModelInfo:
    return admin_pb2.ModelInfo(
        loop=model.loop,
        version=model.version,
        spec=model.spec,
        learned_seq=model.learned_seq,
        created_at=model.created_at,
        size_bytes=len(model.data),
        live=model.version == live_version,
    )


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """Creates, reads, changes and deletes loops; reports their statistics."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        limits: Limits,
        trainer: Trainer | None = None,
        evaluation: EvaluationLimits | None = None,
        restrictions: Restrictions | None = None,
        contact_policy: PolicyCache | None = None,
    ) -> None:
        self._store = store
        self._contact_policy = contact_policy or PolicyCache(store.subjects)
        self._catalog = catalog
        self._limits = limits
        self._trainer = trainer
        self._evaluation = evaluation or EvaluationLimits()
        self._restrictions = restrictions or Restrictions()  # what the evaluation's process may let specs reach
        self._evaluating = threading.BoundedSemaphore(1)  # each evaluation is a process of up to its memory limit

    def CreateLoop(self, request: admin_pb2.CreateLoopRequest, context: grpc.ServicerContext) -> types_pb2.LoopConfig:
        if request.config.version:
            raise InvalidArgument("config.version: is set by the server; leave it 0")
        if len(self._store.configs.list()) >= self._limits.max_loops:
            raise ResourceExhausted(f"loops: at most {self._limits.max_loops} loops (limit max_loops)")
        config = normalized(request.config)
        config.version = 1
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
        return self.stats(request.loop)

    def stats(self, loop: str) -> admin_pb2.LoopStats:
        """The loop's statistics, from this process's trainer when it runs one, else from the store."""
        return self._trainer.stats(loop) if self._trainer else loop_stats(self._store, loop)

    def decision_times(self, loop: str) -> tuple[float, float] | None:
        """When the loop's oldest and newest decisions still in the log were made (None before the first)."""
        _loop_config(self._store, loop)
        log = self._store.log
        oldest = log.read(Stream.DECISIONS, loop, 0, 1)
        newest = log.read(Stream.DECISIONS, loop, log.last_seq(Stream.DECISIONS, loop) - 1, 1)
        if not oldest or not newest:
            return None
        times = [records_pb2.DecisionRecord.FromString(entries[0][1]).timestamp for entries in (oldest, newest)]
        return times[0], times[1]

    def delete_logs(self, loop: str) -> None:
        """Have the loop's trainer delete the log it is done with (see `trainer.request_log_deletion`)."""
        _loop_config(self._store, loop)
        request_log_deletion(self._store, loop)

    def _change(self, name: str, change: Callable[[types_pb2.LoopConfig], None]) -> types_pb2.LoopConfig:
        """Apply `change` to the loop's config, validate it and store it as the next version."""
        config = _loop_config(self._store, name)
        version = config.version
        change(config)
        config = normalized(config)
        config.version = version + 1
        try:
            self._store.configs.put(name, config.SerializeToString())
        except KeyError:
            raise NotFound(f"loop: no loop named {name!r}") from None
        self._catalog.refresh()
        return config

    def SetPolicy(self, request: admin_pb2.SetPolicyRequest, context: grpc.ServicerContext) -> types_pb2.LoopConfig:
        spec = request.spec.strip()
        if not spec:
            raise InvalidArgument("spec: must not be empty")

        def change(config: types_pb2.LoopConfig) -> None:
            if request.mode == admin_pb2.POLICY_MODE_SHADOW:
                if spec == config.policy:
                    raise InvalidArgument(f"spec: {spec!r} is the live policy")
                if spec not in config.shadow_policies:
                    config.shadow_policies.append(spec)
            elif request.mode in (admin_pb2.POLICY_MODE_REPLACE, admin_pb2.POLICY_MODE_UNSPECIFIED):
                _make_live(config, spec)
            else:
                raise InvalidArgument(f"mode: unknown value {request.mode}")

        return self._change(request.loop, change)

    def PromotePolicy(
        self, request: admin_pb2.PromotePolicyRequest, context: grpc.ServicerContext
    ) -> types_pb2.LoopConfig:
        def change(config: types_pb2.LoopConfig) -> None:
            if request.shadow.strip() not in config.shadow_policies:
                raise NotFound(f"shadow: no shadow policy {request.shadow!r} in loop {config.name!r}")
            _make_live(config, request.shadow.strip())

        return self._change(request.loop, change)

    def ListModels(
        self, request: admin_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListModelsResponse:
        _loop_config(self._store, request.loop)
        for _ in range(_PUBLISH_ATTEMPTS):  # the learner may publish between the two reads
            versions = self._store.models.versions(request.loop)
            live = self._store.models.live_version(request.loop)
            if live in versions or live == 0:
                break
        models = (self._store.models.get(request.loop, v) for v in versions)
        return admin_pb2.ListModelsResponse(models=[_model_info(m, live) for m in models if m is not None])

    def Rollback(self, request: admin_pb2.RollbackRequest, context: grpc.ServicerContext) -> admin_pb2.ModelInfo:
        config = _loop_config(self._store, request.loop)
        stored = self._store.models.get(request.loop, request.version)
        if stored is None:
            raise NotFound(f"version: loop {request.loop!r} keeps no model version {request.version}")
        return self._publish(config, stored.spec, stored.data)

    def ExportModel(
        self, request: admin_pb2.ExportModelRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.ModelChunk]:
        _loop_config(self._store, request.loop)
        version = request.version or self._store.models.live_version(request.loop)
        stored = self._store.models.get(request.loop, version)
        if stored is None:
            raise NotFound(f"version: loop {request.loop!r} has no model version {version}")
        data = policies.export_state(stored.spec, stored.data)
        yield admin_pb2.ModelChunk(spec=stored.spec, version=stored.version, data=data[:_CHUNK])
        for start in range(_CHUNK, len(data), _CHUNK):
            yield admin_pb2.ModelChunk(data=data[start : start + _CHUNK])

    def ImportModel(
        self, request_iterator: Iterator[admin_pb2.ImportModelRequest], context: grpc.ServicerContext
    ) -> admin_pb2.ModelInfo:
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("ImportModel: no message")
        config = _loop_config(self._store, first.loop)  # before any more bytes are read
        spec = first.spec.strip()
        if not spec:
            raise InvalidArgument("spec: must not be empty")
        with tempfile.TemporaryFile(prefix="nextbest-import-") as spooled:
            _spool(itertools.chain([first], request_iterator), spooled, self._limits.max_model_bytes)
            spooled.seek(0)
            data = _imported(spec, spooled.read())
        return self._publish(config, spec, data)

    def Evaluate(self, request: admin_pb2.EvaluateRequest, context: grpc.ServicerContext) -> admin_pb2.EvaluateResponse:
        report = self.evaluate(request.loop, request.specs, request.since, request.until, context.is_active)
        return evaluate_response(report)

    def evaluate(
        self,
        loop: str,
        specs: Sequence[str],
        since: float = 0.0,
        until: float = 0.0,
        active: Callable[[], bool] = lambda: True,
        *,
        importance: bool = False,
    ) -> EvaluationReport:
        """The evaluation report of `specs` on the loop's joined events with decision times in [since, until) (0:
        unbounded), computed in a process of its own, one at a time in this process; `importance` adds the namespace
        importance of the best spec."""
        _loop_config(self._store, loop)
        if not self._evaluating.acquire(blocking=False):
            raise ResourceExhausted("Evaluate: another evaluation is running in this server process; retry after it")
        try:
            return evaluate_in_child(
                self._store, loop, specs, since or None, until or None, self._evaluation, self._restrictions, active,
                importance=importance,
            )  # fmt: skip
        finally:
            self._evaluating.release()

    def SetContactPolicy(
        self, request: admin_pb2.SetContactPolicyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ContactPolicy:
        return self._contact_policy.set(request.spec)

    def GetContactPolicy(
        self, request: admin_pb2.GetContactPolicyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ContactPolicy:
        return self._contact_policy.load(self._store.subjects.get_policy())

    def _publish(self, config: types_pb2.LoopConfig, spec: str, data: bytes) -> admin_pb2.ModelInfo:
        """Make `spec` the loop's policy and publish `data` as its newest model, carrying the learner's
        position and shadows over; retried while the learner publishes concurrently."""
        if config.policy != spec:
            config = self._change(config.name, lambda c: _make_live(c, spec))
        for _ in range(_PUBLISH_ATTEMPTS):
            live = self._store.models.live(config.name)
            try:
                model = self._store.models.publish(
                    config.name,
                    spec,
                    data,
                    live.learned_seq if live else 0,
                    live.state if live else b"",
                    if_live=live.version if live else 0,
                )
            except PublishConflictError:
                continue
            self._catalog.refresh()
            return _model_info(model, model.version)
        raise Aborted(f"loop {config.name!r}: the learner kept publishing; try again")
