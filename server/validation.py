"""Validation of decision-path requests: every problem names its field."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

from nextbest import policies
from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import (
    ACTION_CACHE_SIZE,
    CACHEABLE_ACTION_BYTES,
    RESERVED_NAMESPACES,
    FeaturesLike,
    Namespace,
    plain,
    sanitize,
    unwritable,
)
from nextbest.server.config import DEFAULT_LOOP, Limits
from nextbest.server.errors import InvalidArgument, ResourceExhausted
from nextbest.server.subjects.features import RESERVED as HISTORY_NAMESPACES
from nextbest.v1 import decision_pb2, types_pb2

_FLOAT32_MAX = 3.4028234663852886e38
# Serialized actions found valid, with the Limits they were checked against (actions repeat from request to request).
_valid_actions: BoundedCache[bytes, Limits] = BoundedCache(ACTION_CACHE_SIZE)


class RankInput(NamedTuple):
    """A valid RankRequest's input to the policy: its context in plain containers and the candidate actions."""

    context: dict[str, Namespace]
    candidates: list[types_pb2.Action]


def _string(value: str, field: str, limits: Limits, *, required: bool = True) -> None:
    if required and not value:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(value) > limits.max_string_length:
        raise InvalidArgument(f"{field}: longer than {limits.max_string_length} characters")
    if "\x00" in value:
        raise InvalidArgument(f"{field}: contains a NUL character")


def _id(value: str, field: str, limits: Limits, *, required: bool = True) -> None:
    """An id that keys the log (event, reward, loop): its UTF-8 is limited too, so every accepted id fits a key."""
    _string(value, field, limits, required=required)
    if len(value.encode()) > limits.max_string_length:
        raise InvalidArgument(f"{field}: longer than {limits.max_string_length} bytes in UTF-8")


def _names(names: Iterable[str], field: str, limits: Limits) -> None:
    longest = limits.max_string_length
    for name in names:
        if not name or len(name) > longest or "\x00" in name:
            _string(name, field, limits)  # raises, naming the problem


def _strings_ok(strings: list[str], limits: Limits) -> bool:
    """Whether every string (there is at least one) is non-empty, short enough and free of NUL, in C-speed builtins."""
    return (
        min(map(len, strings)) > 0
        and max(map(len, strings)) <= limits.max_string_length
        and ("\x00" not in "".join(strings))
    )


def _namespaces_ok(namespaces: Mapping[str, Namespace], limits: Limits) -> bool:
    """Whether `_features` would accept the namespaces: a fast single pass for valid input."""
    if len(namespaces) > limits.max_namespaces:
        return False
    for ns, (numeric, categorical, tokens) in namespaces.items():
        if len(numeric) + len(categorical) + len(tokens) > limits.max_features_per_namespace:
            return False
        if not _strings_ok([ns, *numeric, *categorical, *categorical.values(), *tokens], limits):
            return False
        if numeric and not _numbers_ok(numeric.values()):
            return False
    return True


def _numbers_ok(values: Collection[float]) -> bool:
    """Whether every value (there is at least one) is a finite 32-bit float."""
    return all(map(math.isfinite, values)) and -_FLOAT32_MAX <= min(values) <= max(values) <= _FLOAT32_MAX


def _features(namespaces: Mapping[str, FeaturesLike], field: str, limits: Limits) -> None:
    if len(namespaces) > limits.max_namespaces:
        raise InvalidArgument(f"{field}: {len(namespaces)} namespaces, more than {limits.max_namespaces}")
    for ns, features in namespaces.items():
        where = f"{field}[{ns!r}]"
        _string(ns, f"{where} (namespace name)", limits)
        numeric, categorical, tokens = features.numeric, features.categorical, features.tokens
        count = len(numeric) + len(categorical) + len(tokens)
        if count > limits.max_features_per_namespace:
            raise InvalidArgument(f"{where}: {count} features, more than {limits.max_features_per_namespace}")
        _names(numeric, f"{where}.numeric (feature name)", limits)
        for name, value in numeric.items():
            if not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:  # also false for NaN
                raise InvalidArgument(f"{where}.numeric[{name!r}]: must be a finite 32-bit float, got {value}")
        _names(categorical, f"{where}.categorical (feature name)", limits)
        for name, value in categorical.items():
            if not value or len(value) > limits.max_string_length or "\x00" in value:
                _string(value, f"{where}.categorical[{name!r}]", limits)
        for i, token in enumerate(tokens):
            if not token or len(token) > limits.max_string_length or "\x00" in token:
                _string(token, f"{where}.tokens[{i}]", limits)


def loop_name(loop: str) -> str:
    """The loop a request addresses: empty means `default`."""
    return loop or DEFAULT_LOOP


def event_id(value: str, limits: Limits, *, required: bool) -> None:
    _id(value, "event_id", limits, required=required)


def _action(action: types_pb2.Action, i: int, limits: Limits) -> None:
    key = action.SerializeToString()
    if _valid_actions.get(key) is limits:
        return
    _string(action.id, f"actions[{i}].id", limits)
    _string(action.channel, f"actions[{i}].channel", limits, required=False)
    _features(action.features, f"actions[{i}].features", limits)
    _exportable(action.features, f"actions[{i}].features", RESERVED_NAMESPACES)
    _unreserved(action.features, f"actions[{i}].features")
    if len(key) <= CACHEABLE_ACTION_BYTES:
        _valid_actions.put(key, limits)


def _context(context: Mapping[str, types_pb2.Features], limits: Limits) -> dict[str, Namespace]:
    namespaces = plain(context)
    if not _namespaces_ok(namespaces, limits):
        _features(namespaces, "context", limits)  # raises, naming the problem
    _exportable(namespaces, "context")
    _unreserved(namespaces, "context")
    return namespaces


def _unreserved(namespaces: Iterable[str], field: str) -> None:
    """Refuse the namespace names of the history features Rank adds."""
    for ns in namespaces:
        if sanitize(ns) in HISTORY_NAMESPACES:
            raise InvalidArgument(f"{field}[{ns!r}] (namespace name): reserved for the subject history features")


def _exportable(namespaces: Mapping[str, FeaturesLike], field: str, reserved: frozenset[str] = frozenset()) -> None:
    """Refuse names the export could not write as the model sees them (`nextbest export` replays the model)."""
    reason = unwritable(namespaces, reserved)
    if reason is not None:
        raise InvalidArgument(f"{field}{reason}")


def _count_actions(actions: Collection[types_pb2.Action], limits: Limits) -> None:
    if not actions:
        raise InvalidArgument("actions: at least one action is required")
    if len(actions) > limits.max_actions:
        raise InvalidArgument(f"actions: {len(actions)} actions, more than {limits.max_actions}")


def _action_ids(actions: Iterable[types_pb2.Action], limits: Limits) -> dict[str, int]:
    """Validate the actions; their indices by id."""
    ids: dict[str, int] = {}
    for i, action in enumerate(actions):
        if action.id in ids:  # before the action's own checks: an invalid id has failed at its first occurrence
            raise InvalidArgument(f"actions[{i}].id: duplicate action id {action.id!r}")
        _action(action, i, limits)
        ids[action.id] = i
    return ids


def _decision_request(
    request: decision_pb2.RankRequest | decision_pb2.RankMultiSlotRequest, limits: Limits
) -> tuple[dict[str, Namespace], dict[str, int]]:
    """Validate what Rank and RankMultiSlot requests share; their context in plain containers and the index of
    each action id."""
    _id(request.loop, "loop", limits, required=False)
    event_id(request.event_id, limits, required=False)
    _id(request.subject_id, "subject_id", limits, required=False)
    _count_actions(request.actions, limits)
    return _context(request.context, limits), _action_ids(request.actions, limits)


def rank_request(request: decision_pb2.RankRequest, limits: Limits) -> RankInput:
    """Validate a RankRequest; return its context and the candidate actions (excluded ones removed), in order."""
    context, ids = _decision_request(request, limits)
    actions = request.actions
    if not request.excluded_action_ids:
        return RankInput(context, list(actions))
    excluded = set()
    for i, action_id in enumerate(request.excluded_action_ids):
        if action_id not in ids:
            raise InvalidArgument(f"excluded_action_ids[{i}]: {action_id!r} is not among the actions")
        excluded.add(action_id)
    candidates = [a for a in actions if a.id not in excluded]
    if not candidates:
        raise InvalidArgument("excluded_action_ids: every action is excluded")
    return RankInput(context, candidates)


class SlotInput(NamedTuple):
    """A valid slot: its id, features, the indices of the actions it may take and of its baseline (-1: none)."""

    id: str
    features: dict[str, Namespace]
    allowed: tuple[int, ...]
    baseline: int


class MultiSlotInput(NamedTuple):
    """A valid RankMultiSlotRequest's input: its context in plain containers, the actions and the slots."""

    context: dict[str, Namespace]
    actions: list[types_pb2.Action]
    slots: list[SlotInput]


def _slot(
    slot: decision_pb2.Slot, i: int, ids: Mapping[str, int], context: Mapping[str, Namespace], limits: Limits
) -> SlotInput:
    field = f"slots[{i}]"
    _id(slot.id, f"{field}.id", limits)
    features = plain(slot.features)
    if not _namespaces_ok(features, limits):
        _features(features, f"{field}.features", limits)  # raises, naming the problem
    _exportable(features, f"{field}.features")
    _unreserved(features, f"{field}.features")
    for ns in features:
        if ns in context:  # the policy sees the context and the slot's features together
            raise InvalidArgument(f"{field}.features[{ns!r}] (namespace name): also a context namespace")
    excluded = set()
    for j, action_id in enumerate(slot.excluded_action_ids):
        if action_id not in ids:
            raise InvalidArgument(f"{field}.excluded_action_ids[{j}]: {action_id!r} is not among the actions")
        excluded.add(ids[action_id])
    allowed = tuple(k for k in range(len(ids)) if k not in excluded)
    if not allowed:
        raise InvalidArgument(f"{field}.excluded_action_ids: every action is excluded")
    baseline = -1
    if slot.baseline_action_id:
        baseline = ids.get(slot.baseline_action_id, -1)
        if baseline < 0:
            raise InvalidArgument(f"{field}.baseline_action_id: {slot.baseline_action_id!r} is not among the actions")
        if baseline in excluded:
            raise InvalidArgument(f"{field}.baseline_action_id: {slot.baseline_action_id!r} is excluded for the slot")
    return SlotInput(slot.id, features, allowed, baseline)


def rank_multi_slot_request(request: decision_pb2.RankMultiSlotRequest, limits: Limits) -> MultiSlotInput:
    """Validate a RankMultiSlotRequest (each slot's excluded actions and baseline among the actions, slot ids
    unique, no more slots than actions, no two slots with the same baseline)."""
    context, ids = _decision_request(request, limits)
    actions = request.actions
    if not request.slots:
        raise InvalidArgument("slots: at least one slot is required")
    if len(request.slots) > len(actions):
        raise InvalidArgument(
            f"slots: {len(request.slots)} slots, more than the {len(actions)} actions (an action fills one slot)"
        )
    slots: list[SlotInput] = []
    seen: dict[str, int] = {}
    baselines: dict[int, int] = {}
    for i, slot in enumerate(request.slots):
        if slot.id in seen:
            raise InvalidArgument(f"slots[{i}].id: duplicate slot id {slot.id!r} (also slots[{seen[slot.id]}])")
        checked = _slot(slot, i, ids, context, limits)
        if checked.baseline in baselines:
            other = baselines[checked.baseline]
            raise InvalidArgument(
                f"slots[{i}].baseline_action_id: {slot.baseline_action_id!r} is also slots[{other}]'s baseline"
                " (an action fills one slot)"
            )
        if checked.baseline >= 0:
            baselines[checked.baseline] = i
        seen[slot.id] = i
        slots.append(checked)
    return MultiSlotInput(context, list(actions), slots)


def rank_batch_request(request: decision_pb2.RankBatchRequest, limits: Limits) -> None:
    """Validate the batch itself (each request is validated alone, its error answered in its item)."""
    if not request.requests:
        raise InvalidArgument("requests: at least one request is required")
    if len(request.requests) > limits.max_batch_requests:
        raise InvalidArgument(f"requests: {len(request.requests)} requests, more than {limits.max_batch_requests}")


def decision_work(
    example: policies.Example,
    policy: policies.Policy,
    config: types_pb2.LoopConfig,
    limits: Limits,
    evaluations: int = 1,
) -> None:
    """Refuse a decision whose example would make the serving policy, the configured one (the learner's, while a
    swap is under way) or a shadow generate more features than `limits.max_generated_features`, before any of
    them sees it (RESOURCE_EXHAUSTED naming the limit). A multi-slot decision evaluates the example `evaluations`
    times (see `slot_evaluations`)."""
    limit = limits.max_generated_features
    work = policy.work(example) * evaluations
    for spec in (config.policy, *config.shadow_policies):
        if work > limit:
            break
        if spec != policy.spec:
            work = max(work, policies.work_counter(spec)(example) * evaluations)
    if work > limit:
        raise ResourceExhausted(
            f"actions: the decision would generate {work:,} features (context and action features, their "
            f"interactions, per action and model), more than max_generated_features={limit:,}; "
            "send fewer features or actions"
        )


def reward_request(request: decision_pb2.RewardRequest, limits: Limits, field: str = "") -> None:
    """Validate a RewardRequest; `field` prefixes the names (for stream items)."""
    loop, event, reward_id, slot = request.loop, request.event_id, request.reward_id, request.slot_id
    if (
        event
        and max(len(loop.encode()), len(event.encode()), len(reward_id.encode()), len(slot.encode()))
        <= limits.max_string_length
        and "\x00" not in loop + event + reward_id + slot
        and math.isfinite(request.value)
    ):
        return  # valid: the checks below name the field of what is not
    _id(request.loop, f"{field}loop", limits, required=False)
    _id(request.event_id, f"{field}event_id", limits)
    _id(request.reward_id, f"{field}reward_id", limits, required=False)
    _id(request.slot_id, f"{field}slot_id", limits, required=False)
    if not math.isfinite(request.value):
        raise InvalidArgument(f"{field}value: must be finite, got {request.value}")


def slot_evaluations(slots: int, multi_slot: bool) -> int:
    """How many times deciding `slots` slots evaluates the example: a multi-slot policy is asked each slot with the
    slots before it (1 + 2 + … + slots), another policy each slot alone."""
    return slots * (slots + 1) // 2 if multi_slot else slots


def slot_id(value: str, slots: Iterable[str], field: str = "") -> None:
    """A reward's slot id: empty, or one of its decision's slots (when the decision is known)."""
    if value and value not in slots:
        raise InvalidArgument(f"{field}slot_id: {value!r} is not a slot of the decision")


def activate_request(request: decision_pb2.ActivateRequest, limits: Limits) -> None:
    _id(request.loop, "loop", limits, required=False)
    _id(request.event_id, "event_id", limits)
    _id(request.slot_id, "slot_id", limits, required=False)
