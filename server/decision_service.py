"""DecisionService: Rank, RankMultiSlot, RankBatch, Reward, Activate, RewardStream."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import grpc
import numpy as np

from nextbest import policies
from nextbest.policies.featurize import ActionLike
from nextbest.server import validation, wire
from nextbest.server.catalog import Catalog, LiveModel, LoopView
from nextbest.server.config import Limits, Mode, check_reward
from nextbest.server.errors import FailedPrecondition, InvalidArgument, ServiceError, status_of
from nextbest.server.sampling import in_holdout, sample_index, seeded_uniform, slot_uniform
from nextbest.server.store import Appended, Entry, EventLog, StoreFullError, Stream, SubjectChanges
from nextbest.server.subjects.history import Read
from nextbest.server.subjects.keeper import Screened, SubjectKeeper
from nextbest.v1 import decision_pb2, decision_pb2_grpc, records_pb2, types_pb2

logger = logging.getLogger("nextbest")

BASELINE_POLICY = "baseline"
_STREAM_BATCH = 256
_UNLOGGED_WARNING_SECONDS = 60.0


def _response(
    event_id: str,
    actions: Sequence[ActionLike],
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
    candidates: Sequence[ActionLike],
    record: records_pb2.DecisionRecord,
    added_context: Mapping[str, types_pb2.Features] | None = None,
    candidate_data: Sequence[bytes] | None = None,
) -> bytes:
    """The serialized DecisionRecord: `record` (without a context or actions) with the request's context, the
    namespaces Rank adds to it (`added_context`) and the candidates (`candidate_data`: their serializations; without
    it the candidates must be messages).

    Context and actions are fields 3 and 4 of both messages (and the subject id 14), so when every action is logged
    as the request has it, nothing is added and the request sets no field that means something else in a record (5
    and 6; unknown fields are dropped from the request), the request's own bytes carry them: the record's loop and
    event id, serialized after them, win. Otherwise the context is copied (in one step) ahead of the record and the
    candidates' bytes follow it as its actions (a parsed repeated field keeps every entry, in order).
    """
    if (
        added_context is None
        and candidate_data is None
        and not request.excluded_action_ids
        and not request.deferred
        and len(candidates) == len(request.actions)
    ):
        request.DiscardUnknownFields()
        return request.SerializeToString() + record.SerializeToString()
    context = records_pb2.DecisionRecord(context=request.context)
    for name, features in (added_context or {}).items():
        context.context[name].CopyFrom(features)
    return context.SerializeToString() + record.SerializeToString() + _actions_data(candidates, candidate_data)


def _actions_data(candidates: Sequence[ActionLike], candidate_data: Sequence[bytes] | None) -> bytes:
    """The candidates as a record's actions field (field 4, one entry each)."""
    if candidate_data is None:
        candidate_data = [c.SerializeToString() for c in candidates]
    return b"".join([_action_prefix(len(d)) + d for d in candidate_data])


@lru_cache(maxsize=4096)  # the lengths of serialized actions repeat
def _action_prefix(length: int) -> bytes:
    """The start of an entry of a record's actions field: its key and length."""
    return wire.varint(_ACTIONS << 3 | 2) + wire.varint(length)


_ACTIONS = records_pb2.DecisionRecord.DESCRIPTOR.fields_by_name["actions"].number


def reward_entry(request: decision_pb2.RewardRequest, now: float) -> Entry:
    """The log entry of a reward; keyed (idempotent) when it carries a reward_id."""
    record = records_pb2.RewardRecord(
        loop=validation.loop_name(request.loop),
        event_id=request.event_id,
        kind=records_pb2.RewardRecord.KIND_REWARD,
        value=request.value,
        reward_id=request.reward_id,
        timestamp=now,
        slot_id=request.slot_id,
    )
    key = f"r\x00{request.event_id}\x00{request.reward_id}" if request.reward_id else None
    if key is not None and request.slot_id:  # a reward id is unique per slot
        key += f"\x00{request.slot_id}"
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


def _pmf_of(
    model: LiveModel,
    example: policies.Example,
    event_id: str,
    slots: list[policies.Slot] | None = None,
    chosen: list[int] | None = None,
) -> list[float]:
    """The model's pmf over the example's actions, or (with `slots`) over the candidates of the slot after `chosen`."""
    try:
        if slots is None:
            return model.pmf(example, event_id).tolist()
        return model.slot_pmf(example, slots, chosen or [], event_id).tolist()
    except policies.PolicyInputError as e:
        raise InvalidArgument(f"actions: {e}") from e


def _slot_decisions(record: records_pb2.DecisionRecord) -> list[decision_pb2.SlotDecision]:
    """The SlotDecisions of a logged multi-slot decision: each slot's candidates, highest probability first."""
    out = []
    for slot in record.slots:
        candidates = [record.actions[i].id for i in slot.candidates]
        decision = decision_pb2.SlotDecision(
            slot_id=slot.id,
            chosen_action_id=candidates[slot.chosen_index],
            probability=slot.pmf[slot.chosen_index],
        )
        for i in sorted(range(len(slot.pmf)), key=slot.pmf.__getitem__, reverse=True):  # stable: ties keep order
            decision.ranking.add(action_id=candidates[i], probability=slot.pmf[i])
        out.append(decision)
    return out


def multi_slot_response_of(record: records_pb2.DecisionRecord) -> decision_pb2.RankMultiSlotResponse:
    """The RankMultiSlotResponse for a logged multi-slot decision (the same on every retry)."""
    if not record.slots:
        raise FailedPrecondition(f"event_id: {record.event_id!r} is a single-slot decision (logged by Rank)")
    return decision_pb2.RankMultiSlotResponse(
        event_id=record.event_id,
        slots=_slot_decisions(record),
        model_version=record.model_version,
        policy=record.policy,
        learning_mode=record.config.learning_mode,
        holdout=record.holdout,
        suppressed=record.suppressed,
    )


def _screened_slots(
    slots: list[validation.SlotInput], actions: Sequence[types_pb2.Action], candidates: Sequence[types_pb2.Action]
) -> list[validation.SlotInput]:
    """The slots with their actions (and baselines) as indices into the candidates the contact policy left."""
    if len(candidates) == len(actions):
        return slots
    index = {a.id: i for i, a in enumerate(candidates)}
    out = []
    for i, slot in enumerate(slots):
        allowed = tuple(index[actions[a].id] for a in slot.allowed if actions[a].id in index)
        if not allowed:
            raise FailedPrecondition(f"slots[{i}]: the contact policy forbids every action the slot may take")
        baseline = index.get(actions[slot.baseline].id, -1) if slot.baseline >= 0 else -1
        out.append(slot._replace(allowed=allowed, baseline=baseline))
    return out


RANK_SLOT = "default"


def _one_slot(request: decision_pb2.RankRequest) -> decision_pb2.RankMultiSlotRequest:
    """A Rank on a multi-slot loop as the one-slot decision it is: the slot `default`, without the excluded actions."""
    return decision_pb2.RankMultiSlotRequest(
        loop=request.loop,
        event_id=request.event_id,
        subject_id=request.subject_id,
        context=request.context,
        actions=request.actions,
        slots=[decision_pb2.Slot(id=RANK_SLOT, excluded_action_ids=request.excluded_action_ids)],
        deferred=request.deferred,
    )


def _rank_response_of_slot(record: records_pb2.DecisionRecord) -> decision_pb2.RankResponse:
    """The RankResponse of a logged multi-slot decision: its first slot's."""
    first = _slot_decisions(record)[0]
    return decision_pb2.RankResponse(
        event_id=record.event_id,
        chosen_action_id=first.chosen_action_id,
        ranking=first.ranking,
        model_version=record.model_version,
        policy=record.policy,
        learning_mode=record.config.learning_mode,
        holdout=record.holdout,
        suppressed=record.suppressed,
    )


def _fill_first_slot(record: records_pb2.DecisionRecord, policy: str, slots: Sequence[decision_pb2.Slot]) -> None:
    """Complete a multi-slot record: the policy, each slot's features as requested, and the first slot's decision
    in the single-slot fields (pmf over every action, chosen and top index into the actions)."""
    record.policy = policy
    for logged, requested in zip(record.slots, slots, strict=True):
        for name, features in requested.features.items():
            logged.features[name].CopyFrom(features)
    first = record.slots[0]
    pmf = [0.0] * len(record.actions)
    for i, p in zip(first.candidates, first.pmf, strict=True):
        pmf[i] = p
    record.pmf[:] = pmf
    record.chosen_index = first.candidates[first.chosen_index]
    record.policy_top_index = first.candidates[first.policy_top_index]


class _SlotDecider:
    """Decides the slots of one multi-slot decision in order, each from the candidates no earlier slot took: with the
    live policy (ONLINE), the holdout policy, or the slot's baseline (APPRENTICE, LOGGING_ONLY)."""

    def __init__(self, view: LoopView, holdout: LiveModel | None, example: policies.Example, key: tuple[str, str]):
        self._view = view
        self._holdout = holdout
        self._example = example
        self._loop, self._event_id = key
        self.slots: list[policies.Slot] = []
        self.chosen: list[int] = []  # action indices
        # APPRENTICE and LOGGING_ONLY answer with each slot's baseline; the holdout policy decides in every mode
        self._baseline = holdout is None and view.config.learning_mode != Mode.LEARNING_MODE_ONLINE
        self.policy = BASELINE_POLICY if self._baseline else (holdout or view.model).spec

    def decide(self, i: int, slot: validation.SlotInput) -> records_pb2.SlotRecord:
        eligible = tuple(a for a in slot.allowed if a not in self.chosen)
        if not eligible:
            raise InvalidArgument(f"slots[{i}]: every action the slot may take filled an earlier slot")
        self.slots.append(policies.Slot(slot.features, eligible))
        top = 0
        if self._baseline:
            baseline = eligible.index(slot.baseline) if slot.baseline in eligible else 0
            pmf = [0.0] * len(eligible)
            pmf[baseline] = 1.0
            if self._view.config.learning_mode == Mode.LEARNING_MODE_APPRENTICE:
                top = int(np.argmax(self._pmf(self._view.model)))
        else:
            pmf = self._pmf(self._holdout or self._view.model)
        chosen = sample_index(pmf, slot_uniform(self._loop, self._event_id, i))
        self.chosen.append(eligible[chosen])
        return records_pb2.SlotRecord(
            id=slot.id, candidates=eligible, pmf=pmf, chosen_index=chosen, policy_top_index=top
        )

    def _pmf(self, model: LiveModel) -> list[float]:
        return _pmf_of(model, self._example, self._event_id, self.slots, self.chosen)


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
        rank_input, view = self._checked(request)
        if view.model.policy.multi_slot:
            return self._rank_one_slot(request, view)
        decided = self._decision(request, rank_input, view)
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
                rank_input, view = self._checked(rank_request)
                if view.model.policy.multi_slot:  # decided and logged alone
                    items[i].response.CopyFrom(self._rank_one_slot(rank_request, view))
                    continue
                decided = self._decision(rank_request, rank_input, view)
            except (ServiceError, StoreFullError) as e:
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

    def _checked(self, request: decision_pb2.RankRequest) -> tuple[validation.RankInput, LoopView]:
        """The request's valid input and its loop's view."""
        rank_input = validation.rank_request(request, self._limits)
        return rank_input, self._catalog.get(validation.loop_name(request.loop))

    def _rank_one_slot(self, request: decision_pb2.RankRequest, view: LoopView) -> decision_pb2.RankResponse:
        """A Rank on a multi-slot loop: one slot of a multi-slot decision, logged, learned and exported as one."""
        logged = self._rank_slots(_one_slot(request), view)
        return response_of(logged) if not logged.slots else _rank_response_of_slot(logged)

    def _decision(
        self, request: decision_pb2.RankRequest, rank_input: validation.RankInput, view: LoopView
    ) -> _Decided:
        """Decide a single-slot request and make its log entry (with its subject's contact); nothing is written
        yet."""
        loop = validation.loop_name(request.loop)
        event_id = request.event_id or uuid.uuid4().hex
        now = self._clock()
        screened = self._screen(request, rank_input, view.config, now)
        candidates = screened.candidates
        example = policies.Example(screened.context, candidates, screened.candidate_lines, screened.candidate_sizes)
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
        contact = self._contact(record, candidates[chosen_index], view.config, now, screened.history)
        data = record_data(request, candidates, record, screened.added_context, screened.candidate_data)
        entry = Entry(event_id, data, contact)
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

    def _log_decision(
        self,
        loop: str,
        entry: Entry,
        contact: SubjectChanges,
        contact_of: Callable[[records_pb2.DecisionRecord], SubjectChanges],
    ) -> records_pb2.DecisionRecord | None:
        """Log a decision (with its subject's contact); on a retry, the decision logged first under its event id,
        whatever the model now (None: this one is logged, or answered unlogged when the store is full and the
        server may). `contact_of` gives a logged decision's contact, recorded again on a retry: kept once (a crash
        may have come before it was)."""
        try:
            appended = self._log.append(Stream.DECISIONS, loop, [entry], contact)[0]
        except StoreFullError as e:
            logged = self._log.get(Stream.DECISIONS, loop, entry.key or "")
            if logged is not None:  # a retry: the logged decision stands
                return records_pb2.DecisionRecord.FromString(logged)
            if not self._serve_without_logging:
                raise
            self._answered_unlogged(loop, e)
            return None
        if appended.created:
            return None
        logged_first = records_pb2.DecisionRecord.FromString(appended.data)
        if self._subjects is not None:
            self._subjects.update(contact_of(logged_first))
        return logged_first

    def RankMultiSlot(
        self, request: decision_pb2.RankMultiSlotRequest, context: grpc.ServicerContext
    ) -> decision_pb2.RankMultiSlotResponse:
        loop = validation.loop_name(request.loop)
        view = self._catalog.get(loop)
        if not view.model.policy.multi_slot:
            raise FailedPrecondition(
                f"loop {loop!r} decides a single slot (policy {view.model.spec!r}): use Rank, or a multi-slot policy "
                "such as vw:--ccb_explore_adf"
            )
        return multi_slot_response_of(self._rank_slots(request, view))

    def _rank_slots(self, request: decision_pb2.RankMultiSlotRequest, view: LoopView) -> records_pb2.DecisionRecord:
        """Decide and log a multi-slot decision; the record to answer from (the one logged first, on a retry)."""
        multi = validation.rank_multi_slot_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        event_id = request.event_id or uuid.uuid4().hex
        now = self._clock()
        screened = self._screen(request, validation.RankInput(multi.context, multi.actions), view.config, now)
        candidates = screened.messages()
        slots = _screened_slots(multi.slots, multi.actions, candidates)
        example = policies.Example(screened.context, candidates, screened.candidate_lines, screened.candidate_sizes)
        holdout = _holdout_model(view, loop, request.subject_id)
        policy = (holdout or view.model).policy
        evaluations = validation.slot_evaluations(len(slots), policy.multi_slot)
        validation.decision_work(example, policy, view.config, self._limits, evaluations)
        decider = _SlotDecider(view, holdout, example, (loop, event_id))
        record = records_pb2.DecisionRecord(
            loop=loop,
            event_id=event_id,
            context={**request.context, **screened.added_context} if screened.added_context else request.context,
            actions=candidates,
            model_version=str(view.model.version),
            config=view.config,
            timestamp=now,
            deferred=request.deferred,
            holdout=holdout is not None,
            subject_id=request.subject_id,
            suppressed=screened.suppressed,
            skipped_rules=screened.skipped,
            slots=[decider.decide(i, slot) for i, slot in enumerate(slots)],
        )
        _fill_first_slot(record, decider.policy, request.slots)
        contact = self._slot_contacts(record, view.config, now)
        entry = Entry(event_id, record.SerializeToString())
        logged = self._log_decision(loop, entry, contact, lambda d: self._slot_contacts(d, view.config, d.timestamp))
        return logged or record

    def _slot_contacts(
        self, record: records_pb2.DecisionRecord, config: types_pb2.LoopConfig, now: float
    ) -> SubjectChanges:
        """The subject history change that records every filled slot of a multi-slot decision that is a contact."""
        if not record.subject_id or record.deferred or self._subjects is None:
            return {}
        return self._subjects.slot_contacts(record, config, now)

    def _screen(
        self,
        request: decision_pb2.RankRequest | decision_pb2.RankMultiSlotRequest,
        rank_input: validation.RankInput,
        config: types_pb2.LoopConfig,
        now: float,
    ) -> Screened:
        """The decision's input after its subject's contact policy and history features (when it has a subject)."""
        if not request.subject_id or self._subjects is None:
            return Screened(rank_input.context, rank_input.candidates)
        return self._subjects.screen(request.subject_id, rank_input.context, rank_input.candidates, config, now)

    def _contact(
        self,
        record: records_pb2.DecisionRecord,
        chosen: ActionLike,
        config: types_pb2.LoopConfig,
        now: float,
        history: Read | None = None,
    ) -> SubjectChanges:
        """The subject history change that records a decision's contact, written with the decision (`history`: the
        subject's history as the decision read it)."""
        if not record.subject_id or record.deferred or self._subjects is None:
            return {}
        return self._subjects.contact(record, chosen, config, now, history)

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
        self._check_slot(loop, request)
        appended = self._log.append(Stream.REWARDS, loop, [reward_entry(request, self._clock())])[0]
        return decision_pb2.RewardResponse(duplicate=not appended.created)

    def _check_slot(
        self, loop: str, request: decision_pb2.RewardRequest | decision_pb2.ActivateRequest, field: str = ""
    ) -> None:
        """A reward (or activation) for a slot must name a slot of its decision, when the decision is logged already
        (one that comes later than its reward is checked by the joiner, which drops it as an orphan)."""
        if not request.slot_id:
            return
        data = self._log.get(Stream.DECISIONS, loop, request.event_id)
        if data is not None:
            slots = records_pb2.DecisionRecord.FromString(data).slots
            validation.slot_id(request.slot_id, [s.id for s in slots], field)

    def Activate(
        self, request: decision_pb2.ActivateRequest, context: grpc.ServicerContext
    ) -> decision_pb2.ActivateResponse:
        validation.activate_request(request, self._limits)
        loop = validation.loop_name(request.loop)
        view = self._catalog.get(loop)
        self._check_slot(loop, request)
        record = records_pb2.RewardRecord(
            loop=loop,
            event_id=request.event_id,
            kind=records_pb2.RewardRecord.KIND_ACTIVATION,
            timestamp=self._clock(),
            slot_id=request.slot_id,
        )
        key = f"a\x00{request.event_id}" + (f"\x00{request.slot_id}" if request.slot_id else "")
        appended = self._log.append(Stream.REWARDS, loop, [Entry(key, record.SerializeToString())])[0]
        if appended.created:
            self._activated(view.config, loop, request, record.timestamp)
        return decision_pb2.ActivateResponse(duplicate=not appended.created)

    def _activated(
        self, config: types_pb2.LoopConfig, loop: str, request: decision_pb2.ActivateRequest, now: float
    ) -> None:
        """An activated decision (or slot) of a subject is a contact from now on (one logged after its activation
        is recorded when it is joined)."""
        if self._subjects is None:
            return
        data = self._log.get(Stream.DECISIONS, loop, request.event_id)
        if data is None:
            return
        decision = records_pb2.DecisionRecord.FromString(data)
        if decision.subject_id and decision.deferred and decision.slots:
            self._subjects.update(self._subjects.slot_contacts(decision, config, now, request.slot_id))
        elif decision.subject_id and decision.deferred:
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
                self._check_slot(loop, request, f"rewards[{i}].")
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
