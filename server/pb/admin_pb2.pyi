from server.pb import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("loop", "decisions", "rewards", "activations", "joined", "default_rewarded", "orphan_rewards", "late_rewards", "average_reward", "learned", "learner_lag_events", "learner_lag_seconds", "pending_decisions", "model_version", "apprentice_match_rate")
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
    def __init__(self, loop: _Optional[str] = ..., decisions: _Optional[int] = ..., rewards: _Optional[int] = ..., activations: _Optional[int] = ..., joined: _Optional[int] = ..., default_rewarded: _Optional[int] = ..., orphan_rewards: _Optional[int] = ..., late_rewards: _Optional[int] = ..., average_reward: _Optional[float] = ..., learned: _Optional[int] = ..., learner_lag_events: _Optional[int] = ..., learner_lag_seconds: _Optional[float] = ..., pending_decisions: _Optional[int] = ..., model_version: _Optional[str] = ..., apprentice_match_rate: _Optional[float] = ...) -> None: ...
