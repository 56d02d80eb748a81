"""DecisionService: Rank, Reward, Activate, RewardStream."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import numpy as np

import policies
from server import validation
from server.catalog import Catalog
from server.config import Limits, Mode
from server.errors import InvalidArgument
from server.pb import decision_pb2, decision_pb2_grpc, records_pb2, types_pb2
from server.sampling import sample_index, seeded_uniform
from server.store import Entry, EventLog, StoreFullError, Stream

logger = logging.getLogger("nextbest")

BASELINE_POLICY = "baseline"
_STREAM_BATCH = 256
_UNLOGGED_WARNING_SECONDS = 60.0


def response_of(record: records_pb2.DecisionRecord) -> decision_pb2.RankResponse:
    """The RankResponse for a logged decision (the same on every retry)."""
    order = sorted(range(len(record.actions)), key=lambda i: -record.pmf[i])
    return decision_pb2.RankResponse(
        event_id=record.event_id,
        chosen_action_id=record.actions[record.chosen_index].id,
        ranking=[types_pb2.ActionProbability(action_id=record.actions[i].id, probability=record.pmf[i]) for i in order],
        model_version=record.model_version,
        policy=record.policy,
        learning_mode=record.config.learning_mode,
    )


def reward_entry(request: decision_pb2.RewardRequest, now: float) -> Entry:
    """The log entry of a reward; keyed (idempotent) when it carries a reward_id."""
    record = records_pb2.RewardRecord(
        loop=validation.loop_name(request.loop),
        event_id=request.event_id,
        kind=records_pb2.RewardRecord.KIND_REWARD,
        value=request.value,
        reward_id=request.reward_id,
        timestamp=now,
    )
    key = f"r\x00{request.event_id}\x00{request.reward_id}" if request.reward_id else None
    return Entry(key, record.SerializeToString())


class DecisionService(decision_pb2_grpc.DecisionServiceServicer):
    """Serves decisions from the catalog's live models and logs them durably before answering.

    When the store is full Rank fails with RESOURCE_EXHAUSTED, unless `serve_without_logging`: then it
    answers unlogged, calls `on_unlogged(loop)` and warns (at most once a minute).
    """

    def __init__(
        self,
        log: EventLog,
        catalog: Catalog,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        *,
        serve_without_logging: bool = False,
        on_unlogged: Callable[[str], None] | None = None,
    ) -> None:
        self._log = log
        self._catalog = catalog
        self._limits = limits
        self._clock = clock
        self._serve_without_logging = serve_without_logging
        self._on_unlogged = on_unlogged
        self._unlogged_lock = threading.Lock()
        self._unlogged = 0
        self._warned_at = float("-inf")

    def Rank(self, request: decision_pb2.RankRequest, context: grpc.ServicerContext) -> decision_pb2.RankResponse:
        candidates = validation.rank_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        view = self._catalog.get(loop)
        event_id = request.event_id or uuid.uuid4().hex

        example = policies.Example(request.context, candidates)
        model = view.model
        record = records_pb2.DecisionRecord(
            loop=loop,
            event_id=event_id,
            model_version=str(model.version),
            config=view.config,
            timestamp=self._clock(),
            deferred=request.deferred,
            excluded_action_ids=request.excluded_action_ids,
        )
        try:
            if view.config.learning_mode == Mode.LEARNING_MODE_ONLINE:
                pmf = model.pmf(example, event_id)
                record.policy = model.spec
            else:  # APPRENTICE and LOGGING_ONLY answer with the baseline: the first candidate
                if view.config.learning_mode == Mode.LEARNING_MODE_APPRENTICE:
                    record.policy_top_index = int(np.argmax(model.pmf(example, event_id)))
                pmf = np.zeros(len(candidates))
                pmf[0] = 1.0
                record.policy = BASELINE_POLICY
        except policies.PolicyInputError as e:
            raise InvalidArgument(f"actions: {e}") from e
        for name, features in request.context.items():
            record.context[name].CopyFrom(features)
        record.actions.extend(candidates)
        record.pmf.extend(pmf.tolist())
        record.chosen_index = sample_index(record.pmf, seeded_uniform(loop, event_id))
        try:
            appended = self._log.append(Stream.DECISIONS, loop, [Entry(event_id, record.SerializeToString())])[0]
        except StoreFullError as e:
            logged = self._log.get(Stream.DECISIONS, loop, event_id)
            if logged is not None:  # a retry: the logged decision stands
                return response_of(records_pb2.DecisionRecord.FromString(logged))
            if not self._serve_without_logging:
                raise
            self._answered_unlogged(loop, e)
            return response_of(record)
        if not appended.created:  # a retry: answer what was logged first, whatever the model now
            record = records_pb2.DecisionRecord.FromString(appended.data)
        return response_of(record)

    def _answered_unlogged(self, loop: str, error: StoreFullError) -> None:
        if self._on_unlogged:
            self._on_unlogged(loop)
        with self._unlogged_lock:
            self._unlogged += 1
            now = time.monotonic()
            if now - self._warned_at < _UNLOGGED_WARNING_SECONDS:
                return
            self._warned_at, count = now, self._unlogged
        logger.warning("answering Rank without logging (%d unlogged decisions so far): %s", count, error)

    def Reward(self, request: decision_pb2.RewardRequest, context: grpc.ServicerContext) -> decision_pb2.RewardResponse:
        validation.reward_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        self._catalog.get(loop)
        appended = self._log.append(Stream.REWARDS, loop, [reward_entry(request, self._clock())])[0]
        return decision_pb2.RewardResponse(duplicate=not appended.created)

    def Activate(
        self, request: decision_pb2.ActivateRequest, context: grpc.ServicerContext
    ) -> decision_pb2.ActivateResponse:
        validation.activate_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        self._catalog.get(loop)
        record = records_pb2.RewardRecord(
            loop=loop,
            event_id=request.event_id,
            kind=records_pb2.RewardRecord.KIND_ACTIVATION,
            timestamp=self._clock(),
        )
        entry = Entry(f"a\x00{request.event_id}", record.SerializeToString())
        appended = self._log.append(Stream.REWARDS, loop, [entry])[0]
        return decision_pb2.ActivateResponse(duplicate=not appended.created)

    def RewardStream(
        self, request_iterator: Iterator[decision_pb2.RewardRequest], context: grpc.ServicerContext
    ) -> decision_pb2.RewardStreamSummary:
        """Rewards are appended in batches; on a bad item the stream fails naming it, and
        every reward before it stays accepted."""
        summary = decision_pb2.RewardStreamSummary()
        batches: dict[str, list[Entry]] = {}
        pending = 0
        try:
            for i, request in enumerate(request_iterator):
                validation.reward_request(request, self._limits, field=f"rewards[{i}].")
                loop = validation.loop_name(request.loop)
                self._catalog.get(loop)
                batches.setdefault(loop, []).append(reward_entry(request, self._clock()))
                pending += 1
                if pending >= _STREAM_BATCH:
                    self._flush(batches, summary)
                    pending = 0
        finally:
            self._flush(batches, summary)
        return summary

    def _flush(self, batches: dict[str, list[Entry]], summary: decision_pb2.RewardStreamSummary) -> None:
        for loop, entries in batches.items():
            for appended in self._log.append(Stream.REWARDS, loop, entries):
                if appended.created:
                    summary.accepted += 1
                else:
                    summary.duplicates += 1
        batches.clear()
