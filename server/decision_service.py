"""DecisionService: Rank, RankBatch, Reward, Activate, RewardStream."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from nextbest import policies
from nextbest.server import validation
from nextbest.server.catalog import Catalog, LiveModel, LoopView
from nextbest.server.config import Limits, Mode, check_reward
from nextbest.server.errors import FailedPrecondition, InvalidArgument, ServiceError, status_of
from nextbest.server.sampling import in_holdout, sample_index, seeded_uniform
from nextbest.server.store import Appended, Entry, EventLog, StoreFullError, Stream, SubjectChanges
from nextbest.server.subjects.keeper import Screened, SubjectKeeper
from nextbest.v1 import decision_pb2, decision_pb2_grpc, records_pb2, types_pb2

logger = logging.getLogger("nextbest")

BASELINE_POLICY = "baseline"
_STREAM_BATCH = 256
_UNLOGGED_WARNING_SECONDS = 60.0


def _response(
    event_id: str,
    actions: Sequence[types_pb2.Action],
    pmf: Sequence[float],
    chosen_index: int,
    decided_by: tuple[str, str, int],
    holdout: bool = False,
    suppressed: Sequence[types_pb2.SuppressedAction] = (),
) -> decision_pb2.RankResponse:
    """The RankResponse of a decision; `decided_by` is (model version, policy, learning mode)."""
    model_version, policy, mode = decided_by
    response = decision_pb2.RankResponse(
        event_id=event_id,
        chosen_action_id=actions[chosen_index].id,
        model_version=model_version,
        policy=policy,
        learning_mode=mode,
        holdout=holdout,
        suppressed=suppressed,
    )
    add = response.ranking.add
    for i in sorted(range(len(pmf)), key=pmf.__getitem__, reverse=True):  # stable: ties keep the actions' order
        add(action_id=actions[i].id, probability=pmf[i])
    return response


def response_of(record: records_pb2.DecisionRecord) -> decision_pb2.RankResponse:
    """The RankResponse for a logged decision (the same on every retry)."""
    decided_by = (record.model_version, record.policy, record.config.learning_mode)
    return _response(
        record.event_id,
        record.actions,
        list(record.pmf),
        record.chosen_index,
        decided_by,
        record.holdout,
        record.suppressed,
    )


def record_data(
    request: decision_pb2.RankRequest,
    candidates: Sequence[types_pb2.Action],
    record: records_pb2.DecisionRecord,
    context: Mapping[str, types_pb2.Features] | None = None,
) -> bytes:
    """The serialized DecisionRecord: `record` with the context (the request's unless given) and the candidates.

    Context and actions are fields 3 and 4 of both messages (and the subject id 14), so when the request's
    context and every action are what is logged and the request sets no field that means something else in a
    record (5 and 6; unknown fields are dropped from the request), the request's own bytes carry them: the
    record's loop and event id, serialized after them, win. Otherwise they are copied into `record`.
    """
    if (
        context is None
        and not request.excluded_action_ids
        and not request.deferred
        and len(candidates) == len(request.actions)
    ):
        request.DiscardUnknownFields()
        return request.SerializeToString() + record.SerializeToString()
    for name, features in (request.context if context is None else context).items():
        record.context[name].CopyFrom(features)
    record.actions.extend(candidates)
    return record.SerializeToString()


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


def _holdout_model(view: LoopView, loop: str, subject_id: str) -> LiveModel | None:
    """The loop's holdout policy when the subject is in its holdout group (None: the live policy decides)."""
    if not in_holdout(loop, subject_id, view.config.holdout_fraction):
        return None
    if view.holdout is None:
        spec = view.config.holdout_policy
        raise FailedPrecondition(f"config.holdout_policy: {spec!r} cannot be built on this server (see its log)")
    return view.holdout


def _decide(view: LoopView, example: policies.Example, event_id: str) -> tuple[list[float], str, int]:
    """The pmf the decision samples from, the policy that gives it, and (APPRENTICE) the policy's top index."""
    model = view.model
    mode = view.config.learning_mode
    if mode == Mode.LEARNING_MODE_ONLINE:
        return _pmf_of(model, example, event_id), model.spec, 0
    # APPRENTICE and LOGGING_ONLY answer with the baseline: the first candidate
    top_index = int(np.argmax(_pmf_of(model, example, event_id))) if mode == Mode.LEARNING_MODE_APPRENTICE else 0
    return [1.0] + [0.0] * (len(example) - 1), BASELINE_POLICY, top_index


def _pmf_of(model: LiveModel, example: policies.Example, event_id: str) -> list[float]:
    try:
        return model.pmf(example, event_id).tolist()
    except policies.PolicyInputError as e:
        raise InvalidArgument(f"actions: {e}") from e


@dataclass(frozen=True)
class _Decided:
    """A decision made and not yet logged: its entry (keyed by event id) and its answer once logged as made."""

    loop: str
    config: types_pb2.LoopConfig
    entry: Entry
    answer: decision_pb2.RankResponse


def _fail(item: decision_pb2.RankBatchItem, i: int, error: Exception) -> None:
    """An item of a batch answers the status Rank would have answered, its message naming requests[i]."""
    code, message = status_of(error)
    item.error.code = code.value[0]
    item.error.message = f"requests[{i}].{message}"


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
        subjects: SubjectKeeper | None = None,
    ) -> None:
        self._log = log
        self._subjects = subjects
        self._catalog = catalog
        self._limits = limits
        self._clock = clock
        self._serve_without_logging = serve_without_logging
        self._on_unlogged = on_unlogged
        self._unlogged_lock = threading.Lock()
        self._unlogged = 0
        self._warned_at = float("-inf")

    def Rank(self, request: decision_pb2.RankRequest, context: grpc.ServicerContext) -> decision_pb2.RankResponse:
        decided = self._decision(request)
        try:
            appended = self._log.append(Stream.DECISIONS, decided.loop, [decided.entry])[0]
        except StoreFullError as e:
            return self._refused(decided, e)
        return self._answer(decided, appended)

    def RankBatch(
        self, request: decision_pb2.RankBatchRequest, context: grpc.ServicerContext
    ) -> decision_pb2.RankBatchResponse:
        """Each request decided as Rank decides it; the decisions of each loop appended in one commit."""
        validation.rank_batch_request(request, self._limits)
        response = decision_pb2.RankBatchResponse()
        items = [response.items.add() for _ in request.requests]
        by_loop: dict[str, list[tuple[int, _Decided]]] = {}
        for i, rank_request in enumerate(request.requests):
            try:
                decided = self._decision(rank_request)
            except ServiceError as e:
                _fail(items[i], i, e)
            else:
                by_loop.setdefault(decided.loop, []).append((i, decided))
        for loop, decisions in by_loop.items():
            try:
                appended = self._log.append(Stream.DECISIONS, loop, [d.entry for _, d in decisions])
            except StoreFullError as e:
                for i, decided in decisions:
                    try:
                        items[i].response.CopyFrom(self._refused(decided, e))
                    except StoreFullError as full:
                        _fail(items[i], i, full)
                continue
            for (i, decided), logged in zip(decisions, appended, strict=True):
                items[i].response.CopyFrom(self._answer(decided, logged))
        return response

    def _decision(self, request: decision_pb2.RankRequest) -> _Decided:
        """Decide a request and make its log entry (with its subject's contact); nothing is written yet."""
        rank_input = validation.rank_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        view = self._catalog.get(loop)
        event_id = request.event_id or uuid.uuid4().hex
        now = self._clock()
        screened = self._screen(request, rank_input, view.config, now)
        candidates = screened.candidates
        example = policies.Example(screened.context, candidates)
        holdout = _holdout_model(view, loop, request.subject_id)
        validation.decision_work(example, (holdout or view.model).policy, view.config, self._limits)
        if holdout is None:
            pmf, policy, top_index = _decide(view, example, event_id)
        else:  # every learning mode: the holdout is the comparison group, whatever the treatment does
            pmf, policy, top_index = _pmf_of(holdout, example, event_id), holdout.spec, 0
        chosen_index = sample_index(pmf, seeded_uniform(loop, event_id))
        record = records_pb2.DecisionRecord(
            loop=loop,
            event_id=event_id,
            pmf=pmf,
            chosen_index=chosen_index,
            model_version=str(view.model.version),
            policy=policy,
            config=view.config,
            timestamp=now,
            deferred=request.deferred,
            excluded_action_ids=request.excluded_action_ids,
            policy_top_index=top_index,
            holdout=holdout is not None,
            subject_id=request.subject_id,
            suppressed=screened.suppressed,
            skipped_rules=screened.skipped,
        )
        decided_by = (record.model_version, policy, view.config.learning_mode)
        contact = self._contact(record, candidates[chosen_index], view.config, now)
        entry = Entry(event_id, record_data(request, candidates, record, screened.logged_context), contact)
        answer = _response(event_id, candidates, pmf, chosen_index, decided_by, record.holdout, screened.suppressed)
        return _Decided(loop, view.config, entry, answer)

    def _answer(self, decided: _Decided, appended: Appended) -> decision_pb2.RankResponse:
        """The answer to a logged decision: the one made, or on a retry the one logged first, whatever the model
        now."""
        if appended.created:
            return decided.answer
        logged = records_pb2.DecisionRecord.FromString(appended.data)
        if self._subjects is not None:  # recorded again: kept once (a crash may have come before it was)
            chosen = logged.actions[logged.chosen_index]
            self._subjects.update(self._contact(logged, chosen, decided.config, logged.timestamp))
        return response_of(logged)

    def _refused(self, decided: _Decided, error: StoreFullError) -> decision_pb2.RankResponse:
        """The answer to a decision the full store refused: the logged one on a retry, else the decision unlogged
        when serving without logging (else `error`)."""
        logged = self._log.get(Stream.DECISIONS, decided.loop, decided.entry.key or "")
        if logged is not None:  # a retry: the logged decision stands
            return response_of(records_pb2.DecisionRecord.FromString(logged))
        if not self._serve_without_logging:
            raise error
        self._answered_unlogged(decided.loop, error)
        return decided.answer

    def _screen(
        self,
        request: decision_pb2.RankRequest,
        rank_input: validation.RankInput,
        config: types_pb2.LoopConfig,
        now: float,
    ) -> Screened:
        """The decision's input after its subject's contact policy and history features (when it has a subject)."""
        if not request.subject_id or self._subjects is None:
            return Screened(rank_input.context, rank_input.candidates)
        return self._subjects.screen(
            request.subject_id, rank_input.context, request.context, rank_input.candidates, config, now
        )

    def _contact(
        self, record: records_pb2.DecisionRecord, chosen: types_pb2.Action, config: types_pb2.LoopConfig, now: float
    ) -> SubjectChanges:
        """The subject history change that records a decision's contact, written with the decision."""
        if not record.subject_id or record.deferred or self._subjects is None:
            return {}
        return self._subjects.contact(record, chosen, config, now)

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
        check_reward(request.value, self._catalog.get(loop).config, "value")
        appended = self._log.append(Stream.REWARDS, loop, [reward_entry(request, self._clock())])[0]
        return decision_pb2.RewardResponse(duplicate=not appended.created)

    def Activate(
        self, request: decision_pb2.ActivateRequest, context: grpc.ServicerContext
    ) -> decision_pb2.ActivateResponse:
        validation.activate_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        view = self._catalog.get(loop)
        record = records_pb2.RewardRecord(
            loop=loop,
            event_id=request.event_id,
            kind=records_pb2.RewardRecord.KIND_ACTIVATION,
            timestamp=self._clock(),
        )
        entry = Entry(f"a\x00{request.event_id}", record.SerializeToString())
        appended = self._log.append(Stream.REWARDS, loop, [entry])[0]
        if appended.created:
            self._activated(view.config, loop, request.event_id, record.timestamp)
        return decision_pb2.ActivateResponse(duplicate=not appended.created)

    def _activated(self, config: types_pb2.LoopConfig, loop: str, event_id: str, now: float) -> None:
        """An activated decision of a subject is a contact from now on (one logged after its activation is
        recorded when it is joined)."""
        if self._subjects is None:
            return
        data = self._log.get(Stream.DECISIONS, loop, event_id)
        if data is None:
            return
        decision = records_pb2.DecisionRecord.FromString(data)
        if decision.subject_id and decision.deferred:
            chosen = decision.actions[decision.chosen_index]
            self._subjects.update(self._subjects.contact(decision, chosen, config, now))

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
                check_reward(request.value, self._catalog.get(loop).config, f"rewards[{i}].value")
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
