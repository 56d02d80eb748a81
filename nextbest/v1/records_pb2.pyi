from nextbest.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecisionRecord(_message.Message):
    __slots__ = ("loop", "event_id", "context", "actions", "pmf", "chosen_index", "model_version", "policy", "config", "timestamp", "deferred", "excluded_action_ids", "policy_top_index", "subject_id", "holdout", "suppressed", "skipped_rules", "slots")
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
    PMF_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_ACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOP_INDEX_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_RULES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    context: _containers.MessageMap[str, _types_pb2.Features]
    actions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    pmf: _containers.RepeatedScalarFieldContainer[float]
    chosen_index: int
    model_version: str
    policy: str
    config: _types_pb2.LoopConfig
    timestamp: float
    deferred: bool
    excluded_action_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_top_index: int
    subject_id: str
    holdout: bool
    suppressed: _containers.RepeatedCompositeFieldContainer[_types_pb2.SuppressedAction]
    skipped_rules: _containers.RepeatedScalarFieldContainer[str]
    slots: _containers.RepeatedCompositeFieldContainer[SlotRecord]
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., context: _Optional[_Mapping[str, _types_pb2.Features]] = ..., actions: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ..., pmf: _Optional[_Iterable[float]] = ..., chosen_index: _Optional[int] = ..., model_version: _Optional[str] = ..., policy: _Optional[str] = ..., config: _Optional[_Union[_types_pb2.LoopConfig, _Mapping]] = ..., timestamp: _Optional[float] = ..., deferred: _Optional[bool] = ..., excluded_action_ids: _Optional[_Iterable[str]] = ..., policy_top_index: _Optional[int] = ..., subject_id: _Optional[str] = ..., holdout: _Optional[bool] = ..., suppressed: _Optional[_Iterable[_Union[_types_pb2.SuppressedAction, _Mapping]]] = ..., skipped_rules: _Optional[_Iterable[str]] = ..., slots: _Optional[_Iterable[_Union[SlotRecord, _Mapping]]] = ...) -> None: ...

class SlotRecord(_message.Message):
    __slots__ = ("id", "features", "candidates", "pmf", "chosen_index", "policy_top_index")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Features
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Features, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PMF_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOP_INDEX_FIELD_NUMBER: _ClassVar[int]
    id: str
    features: _containers.MessageMap[str, _types_pb2.Features]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    pmf: _containers.RepeatedScalarFieldContainer[float]
    chosen_index: int
    policy_top_index: int
    def __init__(self, id: _Optional[str] = ..., features: _Optional[_Mapping[str, _types_pb2.Features]] = ..., candidates: _Optional[_Iterable[int]] = ..., pmf: _Optional[_Iterable[float]] = ..., chosen_index: _Optional[int] = ..., policy_top_index: _Optional[int] = ...) -> None: ...

class SlotOutcome(_message.Message):
    __slots__ = ("slot_id", "reward", "reward_count", "defaulted", "activated")
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    REWARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    slot_id: str
    reward: float
    reward_count: int
    defaulted: bool
    activated: bool
    def __init__(self, slot_id: _Optional[str] = ..., reward: _Optional[float] = ..., reward_count: _Optional[int] = ..., defaulted: _Optional[bool] = ..., activated: _Optional[bool] = ...) -> None: ...

class RewardRecord(_message.Message):
    __slots__ = ("loop", "event_id", "kind", "value", "reward_id", "timestamp", "slot_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[RewardRecord.Kind]
        KIND_REWARD: _ClassVar[RewardRecord.Kind]
        KIND_ACTIVATION: _ClassVar[RewardRecord.Kind]
    KIND_UNSPECIFIED: RewardRecord.Kind
    KIND_REWARD: RewardRecord.Kind
    KIND_ACTIVATION: RewardRecord.Kind
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    kind: RewardRecord.Kind
    value: float
    reward_id: str
    timestamp: float
    slot_id: str
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., kind: _Optional[_Union[RewardRecord.Kind, str]] = ..., value: _Optional[float] = ..., reward_id: _Optional[str] = ..., timestamp: _Optional[float] = ..., slot_id: _Optional[str] = ...) -> None: ...

class JoinedEvent(_message.Message):
    __slots__ = ("decision", "reward", "reward_count", "defaulted", "activated", "joined_at", "rewards_seq", "slots")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    REWARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_FIELD_NUMBER: _ClassVar[int]
    REWARDS_SEQ_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    decision: DecisionRecord
    reward: float
    reward_count: int
    defaulted: bool
    activated: bool
    joined_at: float
    rewards_seq: int
    slots: _containers.RepeatedCompositeFieldContainer[SlotOutcome]
    def __init__(self, decision: _Optional[_Union[DecisionRecord, _Mapping]] = ..., reward: _Optional[float] = ..., reward_count: _Optional[int] = ..., defaulted: _Optional[bool] = ..., activated: _Optional[bool] = ..., joined_at: _Optional[float] = ..., rewards_seq: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SlotOutcome, _Mapping]]] = ...) -> None: ...

class EstimateSums(_message.Message):
    __slots__ = ("n", "sum_w", "sum_wr", "sum_w2", "sum_w2r", "sum_w2r2", "skipped")
    N_FIELD_NUMBER: _ClassVar[int]
    SUM_W_FIELD_NUMBER: _ClassVar[int]
    SUM_WR_FIELD_NUMBER: _ClassVar[int]
    SUM_W2_FIELD_NUMBER: _ClassVar[int]
    SUM_W2R_FIELD_NUMBER: _ClassVar[int]
    SUM_W2R2_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    n: int
    sum_w: float
    sum_wr: float
    sum_w2: float
    sum_w2r: float
    sum_w2r2: float
    skipped: int
    def __init__(self, n: _Optional[int] = ..., sum_w: _Optional[float] = ..., sum_wr: _Optional[float] = ..., sum_w2: _Optional[float] = ..., sum_w2r: _Optional[float] = ..., sum_w2r2: _Optional[float] = ..., skipped: _Optional[int] = ...) -> None: ...

class ShadowState(_message.Message):
    __slots__ = ("spec", "model", "estimate", "start_seq")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    START_SEQ_FIELD_NUMBER: _ClassVar[int]
    spec: str
    model: bytes
    estimate: EstimateSums
    start_seq: int
    def __init__(self, spec: _Optional[str] = ..., model: _Optional[bytes] = ..., estimate: _Optional[_Union[EstimateSums, _Mapping]] = ..., start_seq: _Optional[int] = ...) -> None: ...

class LearnerState(_message.Message):
    __slots__ = ("shadows", "live_spec", "live_estimate", "live_start_seq", "refused_models")
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    LIVE_SPEC_FIELD_NUMBER: _ClassVar[int]
    LIVE_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LIVE_START_SEQ_FIELD_NUMBER: _ClassVar[int]
    REFUSED_MODELS_FIELD_NUMBER: _ClassVar[int]
    shadows: _containers.RepeatedCompositeFieldContainer[ShadowState]
    live_spec: str
    live_estimate: EstimateSums
    live_start_seq: int
    refused_models: int
    def __init__(self, shadows: _Optional[_Iterable[_Union[ShadowState, _Mapping]]] = ..., live_spec: _Optional[str] = ..., live_estimate: _Optional[_Union[EstimateSums, _Mapping]] = ..., live_start_seq: _Optional[int] = ..., refused_models: _Optional[int] = ...) -> None: ...

class Contact(_message.Message):
    __slots__ = ("loop", "event_id", "action_id", "channel", "timestamp", "expires", "joined", "reward", "clicked", "joined_at", "slot_id")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    CLICKED_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_FIELD_NUMBER: _ClassVar[int]
    SLOT_ID_FIELD_NUMBER: _ClassVar[int]
    loop: str
    event_id: str
    action_id: str
    channel: str
    timestamp: float
    expires: float
    joined: bool
    reward: float
    clicked: bool
    joined_at: float
    slot_id: str
    def __init__(self, loop: _Optional[str] = ..., event_id: _Optional[str] = ..., action_id: _Optional[str] = ..., channel: _Optional[str] = ..., timestamp: _Optional[float] = ..., expires: _Optional[float] = ..., joined: _Optional[bool] = ..., reward: _Optional[float] = ..., clicked: _Optional[bool] = ..., joined_at: _Optional[float] = ..., slot_id: _Optional[str] = ...) -> None: ...

class SubjectHistory(_message.Message):
    __slots__ = ("contacts",)
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    def __init__(self, contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ...) -> None: ...
