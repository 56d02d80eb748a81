from nextbest.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_MODE_UNSPECIFIED: _ClassVar[PolicyMode]
    POLICY_MODE_REPLACE: _ClassVar[PolicyMode]
    POLICY_MODE_SHADOW: _ClassVar[PolicyMode]
POLICY_MODE_UNSPECIFIED: PolicyMode
POLICY_MODE_REPLACE: PolicyMode
POLICY_MODE_SHADOW: PolicyMode

class SetContactPolicyRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: str
    def __init__(self, spec: _Optional[str] = ...) -> None: ...

class GetContactPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ContactPolicy(_message.Message):
    __slots__ = ("spec", "version")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    spec: str
    version: int
    def __init__(self, spec: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class CreateLoopRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _types_pb2.LoopConfig
    def __init__(self, config: _Optional[_Union[_types_pb2.LoopConfig, _Mapping]] = ...) -> None: ...

class GetLoopRequest(_message.Message):
    __slots__ = ("loop",)
    LOOP_FIELD_NUMBER: _ClassVar[int]
    loop: str
    def __init__(self, loop: _Optional[str] = ...) -> None: ...

class ListLoopsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLoopsResponse(_message.Message):
    __slots__ = ("loops",)
    LOOPS_FIELD_NUMBER: _ClassVar[int]
    loops: _containers.RepeatedCompositeFieldContainer[_types_pb2.LoopConfig]
    def __init__(self, loops: _Optional[_Iterable[_Union[_types_pb2.LoopConfig, _Mapping]]] = ...) -> None: ...

class UpdateLoopRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _types_pb2.LoopConfig
    def __init__(self, config: _Optional[_Union[_types_pb2.LoopConfig, _Mapping]] = ...) -> None: ...

class DeleteLoopRequest(_message.Message):
    __slots__ = ("loop",)
    LOOP_FIELD_NUMBER: _ClassVar[int]
    loop: str
    def __init__(self, loop: _Optional[str] = ...) -> None: ...

class DeleteLoopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("loop",)
    LOOP_FIELD_NUMBER: _ClassVar[int]
    loop: str
    def __init__(self, loop: _Optional[str] = ...) -> None: ...

class LoopStats(_message.Message):
    __slots__ = ("loop", "decisions", "rewards", "activations", "joined", "default_rewarded", "orphan_rewards", "late_rewards", "average_reward", "learned", "learner_lag_events", "learner_lag_seconds", "pending_decisions", "model_version", "apprentice_match_rate", "policies", "refused_models", "lift", "suppressed")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REWARDED_FIELD_NUMBER: _ClassVar[int]
    ORPHAN_REWARDS_FIELD_NUMBER: _ClassVar[int]
    LATE_REWARDS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_REWARD_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    LEARNER_LAG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPRENTICE_MATCH_RATE_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_MODELS_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    loop: str
    decisions: int
    rewards: int
    activations: int
    joined: int
    default_rewarded: int
    orphan_rewards: int
    late_rewards: int
    average_reward: float
    learned: int
    learner_lag_events: int
    learner_lag_seconds: float
    pending_decisions: int
    model_version: str
    apprentice_match_rate: float
    policies: _containers.RepeatedCompositeFieldContainer[PolicyEstimate]
    refused_models: int
    lift: Lift
    suppressed: _containers.RepeatedCompositeFieldContainer[RuleCount]
    def __init__(self, loop: _Optional[str] = ..., decisions: _Optional[int] = ..., rewards: _Optional[int] = ..., activations: _Optional[int] = ..., joined: _Optional[int] = ..., default_rewarded: _Optional[int] = ..., orphan_rewards: _Optional[int] = ..., late_rewards: _Optional[int] = ..., average_reward: _Optional[float] = ..., learned: _Optional[int] = ..., learner_lag_events: _Optional[int] = ..., learner_lag_seconds: _Optional[float] = ..., pending_decisions: _Optional[int] = ..., model_version: _Optional[str] = ..., apprentice_match_rate: _Optional[float] = ..., policies: _Optional[_Iterable[_Union[PolicyEstimate, _Mapping]]] = ..., refused_models: _Optional[int] = ..., lift: _Optional[_Union[Lift, _Mapping]] = ..., suppressed: _Optional[_Iterable[_Union[RuleCount, _Mapping]]] = ...) -> None: ...

class Lift(_message.Message):
    __slots__ = ("treatment", "holdout", "difference", "ci_low", "ci_high", "treatment_subjects", "holdout_subjects")
    TREATMENT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    treatment: float
    holdout: float
    difference: float
    ci_low: float
    ci_high: float
    treatment_subjects: int
    holdout_subjects: int
    def __init__(self, treatment: _Optional[float] = ..., holdout: _Optional[float] = ..., difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., treatment_subjects: _Optional[int] = ..., holdout_subjects: _Optional[int] = ...) -> None: ...

class RuleCount(_message.Message):
    __slots__ = ("rule", "suppressed", "skipped")
    RULE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    rule: str
    suppressed: int
    skipped: int
    def __init__(self, rule: _Optional[str] = ..., suppressed: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class PolicyEstimate(_message.Message):
    __slots__ = ("spec", "live", "events", "value", "ci_low", "ci_high", "effective_sample_size", "skipped_events")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    spec: str
    live: bool
    events: int
    value: float
    ci_low: float
    ci_high: float
    effective_sample_size: float
    skipped_events: int
    def __init__(self, spec: _Optional[str] = ..., live: _Optional[bool] = ..., events: _Optional[int] = ..., value: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., effective_sample_size: _Optional[float] = ..., skipped_events: _Optional[int] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("loop", "spec", "mode")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    loop: str
    spec: str
    mode: PolicyMode
    def __init__(self, loop: _Optional[str] = ..., spec: _Optional[str] = ..., mode: _Optional[_Union[PolicyMode, str]] = ...) -> None: ...

class PromotePolicyRequest(_message.Message):
    __slots__ = ("loop", "shadow")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    loop: str
    shadow: str
    def __init__(self, loop: _Optional[str] = ..., shadow: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("loop", "version", "spec", "learned_seq", "created_at", "size_bytes", "live")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    LEARNED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    loop: str
    version: int
    spec: str
    learned_seq: int
    created_at: float
    size_bytes: int
    live: bool
    def __init__(self, loop: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[str] = ..., learned_seq: _Optional[int] = ..., created_at: _Optional[float] = ..., size_bytes: _Optional[int] = ..., live: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("loop",)
    LOOP_FIELD_NUMBER: _ClassVar[int]
    loop: str
    def __init__(self, loop: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("loop", "version")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    loop: str
    version: int
    def __init__(self, loop: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("loop", "version")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    loop: str
    version: int
    def __init__(self, loop: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("spec", "version", "data")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    spec: str
    version: int
    data: bytes
    def __init__(self, spec: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportModelRequest(_message.Message):
    __slots__ = ("loop", "spec", "data")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    loop: str
    spec: str
    data: bytes
    def __init__(self, loop: _Optional[str] = ..., spec: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("loop", "specs", "since", "until")
    LOOP_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    loop: str
    specs: _containers.RepeatedScalarFieldContainer[str]
    since: float
    until: float
    def __init__(self, loop: _Optional[str] = ..., specs: _Optional[_Iterable[str]] = ..., since: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("value", "ci_low", "ci_high")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    value: float
    ci_low: float
    ci_high: float
    def __init__(self, value: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ...) -> None: ...

class PolicyReport(_message.Message):
    __slots__ = ("spec", "estimates", "effective_sample_size", "max_weight", "warnings")
    class EstimatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Estimate
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Estimate, _Mapping]] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    spec: str
    estimates: _containers.MessageMap[str, Estimate]
    effective_sample_size: float
    max_weight: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[str] = ..., estimates: _Optional[_Mapping[str, Estimate]] = ..., effective_sample_size: _Optional[float] = ..., max_weight: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("events", "policies", "best", "report_json")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    events: int
    policies: _containers.RepeatedCompositeFieldContainer[PolicyReport]
    best: str
    report_json: str
    def __init__(self, events: _Optional[int] = ..., policies: _Optional[_Iterable[_Union[PolicyReport, _Mapping]]] = ..., best: _Optional[str] = ..., report_json: _Optional[str] = ...) -> None: ...
