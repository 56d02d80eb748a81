from nextbest.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankRequest(_message.Message):
    __slots__ = ("loop", "event_id", "context", "actions", "excluded_action_ids", "deferred", "subject_id")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Features
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Features, _Mapping]] = ...) -> None: ...
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_ACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    context: _containers.MessageMap[str, _types_pb2.Features]
    actions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    excluded_action_ids: _containers.RepeatedScalarFieldContainer[str]
    deferred: bool
    subject_id: str
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _types_pb2.Features]] = ..., actions: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ..., excluded_action_ids: _Optional[_Iterable[str]] = ..., deferred: _Optional[bool] = ..., subject_id: _Optional[str] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("event_id", "chosen_action_id", "ranking", "model_version", "policy", "learning_mode", "holdout", "suppressed")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LEARNING_MODE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    chosen_action_id: str
    ranking: _containers.RepeatedCompositeFieldContainer[_types_pb2.ActionProbability]
    model_version: str
    policy: str
    learning_mode: _types_pb2.LearningMode
    holdout: bool
    suppressed: _containers.RepeatedCompositeFieldContainer[_types_pb2.SuppressedAction]
    def __init__(self, event_id: _Optional[str] = ..., chosen_action_id: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[_types_pb2.ActionProbability, _Mapping]]] = ..., model_version: _Optional[str] = ..., policy: _Optional[str] = ..., learning_mode: _Optional[_Union[_types_pb2.LearningMode, str]] = ..., holdout: _Optional[bool] = ..., suppressed: _Optional[_Iterable[_Union[_types_pb2.SuppressedAction, _Mapping]]] = ...) -> None: ...

class RankBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RankRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RankRequest, _Mapping]]] = ...) -> None: ...

class RankBatchResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RankBatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[RankBatchItem, _Mapping]]] = ...) -> None: ...

class RankBatchItem(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: RankResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[RankResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("loop", "event_id", "value", "reward_id", "slot_id")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    value: float
    reward_id: str
    slot_id: str
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., value: _Optional[float] = ..., reward_id: _Optional[str] = ..., slot_id: _Optional[str] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("loop", "event_id", "slot_id")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    slot_id: str
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., slot_id: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class RewardStreamSummary(_message.Message):
    __slots__ = ("accepted", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class Slot(_message.Message):
    __slots__ = ("id", "features", "baseline_action_id", "excluded_action_ids")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Features
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Features, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_ACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    features: _containers.MessageMap[str, _types_pb2.Features]
    baseline_action_id: str
    excluded_action_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., features: _Optional[_Mapping[str, _types_pb2.Features]] = ..., baseline_action_id: _Optional[str] = ..., excluded_action_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RankMultiSlotRequest(_message.Message):
    __slots__ = ("loop", "event_id", "subject_id", "context", "actions", "slots", "deferred")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Features
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Features, _Mapping]] = ...) -> None: ...
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    subject_id: str
    context: _containers.MessageMap[str, _types_pb2.Features]
    actions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    slots: _containers.RepeatedCompositeFieldContainer[Slot]
    deferred: bool
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _types_pb2.Features]] = ..., actions: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., deferred: _Optional[bool] = ...) -> None: ...

class SlotDecision(_message.Message):
    __slots__ = ("slot_id", "chosen_action_id", "probability", "ranking")
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    slot_id: str
    chosen_action_id: str
    probability: float
    ranking: _containers.RepeatedCompositeFieldContainer[_types_pb2.ActionProbability]
    def __init__(self, slot_id: _Optional[str] = ..., chosen_action_id: _Optional[str] = ..., probability: _Optional[float] = ..., ranking: _Optional[_Iterable[_Union[_types_pb2.ActionProbability, _Mapping]]] = ...) -> None: ...

class RankMultiSlotResponse(_message.Message):
    __slots__ = ("event_id", "slots", "model_version", "policy", "learning_mode", "holdout", "suppressed")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LEARNING_MODE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    slots: _containers.RepeatedCompositeFieldContainer[SlotDecision]
    model_version: str
    policy: str
    learning_mode: _types_pb2.LearningMode
    holdout: bool
    suppressed: _containers.RepeatedCompositeFieldContainer[_types_pb2.SuppressedAction]
    def __init__(self, event_id: _Optional[str] = ..., slots: _Optional[_Iterable[_Union[SlotDecision, _Mapping]]] = ..., model_version: _Optional[str] = ..., policy: _Optional[str] = ..., learning_mode: _Optional[_Union[_types_pb2.LearningMode, str]] = ..., holdout: _Optional[bool] = ..., suppressed: _Optional[_Iterable[_Union[_types_pb2.SuppressedAction, _Mapping]]] = ...) -> None: ...
