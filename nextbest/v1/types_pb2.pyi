from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardAggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_AGGREGATION_UNSPECIFIED: _ClassVar[RewardAggregation]
    REWARD_AGGREGATION_EARLIEST: _ClassVar[RewardAggregation]
    REWARD_AGGREGATION_SUM: _ClassVar[RewardAggregation]
    REWARD_AGGREGATION_AVERAGE: _ClassVar[RewardAggregation]
    REWARD_AGGREGATION_MIN: _ClassVar[RewardAggregation]
    REWARD_AGGREGATION_MAX: _ClassVar[RewardAggregation]

class LearningMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEARNING_MODE_UNSPECIFIED: _ClassVar[LearningMode]
    LEARNING_MODE_ONLINE: _ClassVar[LearningMode]
    LEARNING_MODE_APPRENTICE: _ClassVar[LearningMode]
    LEARNING_MODE_LOGGING_ONLY: _ClassVar[LearningMode]

class SubjectFeatures(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_FEATURES_UNSPECIFIED: _ClassVar[SubjectFeatures]
    SUBJECT_FEATURES_ON: _ClassVar[SubjectFeatures]
    SUBJECT_FEATURES_OFF: _ClassVar[SubjectFeatures]
REWARD_AGGREGATION_UNSPECIFIED: RewardAggregation
REWARD_AGGREGATION_EARLIEST: RewardAggregation
REWARD_AGGREGATION_SUM: RewardAggregation
REWARD_AGGREGATION_AVERAGE: RewardAggregation
REWARD_AGGREGATION_MIN: RewardAggregation
REWARD_AGGREGATION_MAX: RewardAggregation
LEARNING_MODE_UNSPECIFIED: LearningMode
LEARNING_MODE_ONLINE: LearningMode
LEARNING_MODE_APPRENTICE: LearningMode
LEARNING_MODE_LOGGING_ONLY: LearningMode
SUBJECT_FEATURES_UNSPECIFIED: SubjectFeatures
SUBJECT_FEATURES_ON: SubjectFeatures
SUBJECT_FEATURES_OFF: SubjectFeatures

class Features(_message.Message):
    __slots__ = ("numeric", "categorical", "tokens")
    class NumericEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    numeric: _containers.ScalarMap[str, float]
    categorical: _containers.ScalarMap[str, str]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, numeric: _Optional[_Mapping[str, float]] = ..., categorical: _Optional[_Mapping[str, str]] = ..., tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("id", "channel", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Features
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Features, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    id: str
    channel: str
    features: _containers.MessageMap[str, Features]
    def __init__(self, id: _Optional[str] = ..., channel: _Optional[str] = ..., features: _Optional[_Mapping[str, Features]] = ...) -> None: ...

class ActionProbability(_message.Message):
    __slots__ = ("action_id", "probability")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    probability: float
    def __init__(self, action_id: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class SuppressedAction(_message.Message):
    __slots__ = ("action_id", "rule")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    rule: str
    def __init__(self, action_id: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class LoopConfig(_message.Message):
    __slots__ = ("name", "policy", "reward_wait_seconds", "default_reward", "reward_aggregation", "learning_mode", "publish_interval_seconds", "retention_days", "version", "shadow_policies", "reward_min", "reward_max", "holdout_fraction", "holdout_policy", "holdout_learn", "subject_features")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REWARD_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REWARD_FIELD_NUMBER: _ClassVar[int]
    REWARD_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    LEARNING_MODE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_POLICIES_FIELD_NUMBER: _ClassVar[int]
    REWARD_MIN_FIELD_NUMBER: _ClassVar[int]
    REWARD_MAX_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_POLICY_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_LEARN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: str
    reward_wait_seconds: float
    default_reward: float
    reward_aggregation: RewardAggregation
    learning_mode: LearningMode
    publish_interval_seconds: float
    retention_days: float
    version: int
    shadow_policies: _containers.RepeatedScalarFieldContainer[str]
    reward_min: float
    reward_max: float
    holdout_fraction: float
    holdout_policy: str
    holdout_learn: bool
    subject_features: SubjectFeatures
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[str] = ..., reward_wait_seconds: _Optional[float] = ..., default_reward: _Optional[float] = ..., reward_aggregation: _Optional[_Union[RewardAggregation, str]] = ..., learning_mode: _Optional[_Union[LearningMode, str]] = ..., publish_interval_seconds: _Optional[float] = ..., retention_days: _Optional[float] = ..., version: _Optional[int] = ..., shadow_policies: _Optional[_Iterable[str]] = ..., reward_min: _Optional[float] = ..., reward_max: _Optional[float] = ..., holdout_fraction: _Optional[float] = ..., holdout_policy: _Optional[str] = ..., holdout_learn: _Optional[bool] = ..., subject_features: _Optional[_Union[SubjectFeatures, str]] = ...) -> None: ...
