"""Loop configuration: defaults, validation, and the request limits."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from nextbest import policies
from nextbest.server.errors import InvalidArgument
from nextbest.v1 import types_pb2

DEFAULT_LOOP = "default"
# `-q ::` (every pair of namespaces) lets the best action depend on the context: without interactions a linear
# model scores an action by its own features only and learns one choice for everyone.
DEFAULT_POLICY = "vw:--cb_explore_adf --epsilon 0.05 -q ::"
DEFAULT_REWARD_WAIT_SECONDS = 60.0
DEFAULT_PUBLISH_INTERVAL_SECONDS = 10.0
MIN_INTERVAL_SECONDS = 0.05
MAX_SHADOWS = 8

_LOOP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Mode = types_pb2.LearningMode
Aggregation = types_pb2.RewardAggregation


@dataclass(frozen=True)
class Limits:
    """Request limits enforced before any work; violations answer INVALID_ARGUMENT naming the field."""

    max_actions: int = 256
    max_namespaces: int = 32
    max_features_per_namespace: int = 1024
    max_string_length: int = 256
    max_message_bytes: int = 4 * 1024 * 1024
    max_loops: int = 1000
    max_model_bytes: int = 64 << 20


def check_loop_name(name: str, field: str = "loop") -> str:
    """`name` when it is a valid loop name, else InvalidArgument naming `field`."""
    if not _LOOP_NAME.match(name):
        raise InvalidArgument(
            f"{field}: {name!r} is not a valid loop name (letters, digits, '_', '.', '-'; at most 64)"
        )
    return name


def _checked_spec(spec: str, field: str) -> str:
    try:
        policies.create(spec)
    except policies.PolicySpecError as e:
        raise InvalidArgument(f"{field}: {e}") from e
    return spec


def normalized(config: types_pb2.LoopConfig) -> types_pb2.LoopConfig:
    """A copy of `config` with defaults in place of zero values, validated.

    The policy spec is checked by building the policy, so a bad VW argument is
    refused with VW's own message. Raises InvalidArgument naming the field.
    """
    out = types_pb2.LoopConfig()
    out.CopyFrom(config)
    check_loop_name(out.name, "config.name")
    out.policy = _checked_spec(out.policy.strip() or DEFAULT_POLICY, "config.policy")
    if len(out.shadow_policies) > MAX_SHADOWS:
        raise InvalidArgument(f"config.shadow_policies: at most {MAX_SHADOWS} shadow policies")
    shadows = []
    for i, spec in enumerate(out.shadow_policies):
        spec = spec.strip()
        if spec == out.policy or spec in shadows:
            raise InvalidArgument(f"config.shadow_policies[{i}]: {spec!r} is already live or shadowed")
        shadows.append(_checked_spec(spec, f"config.shadow_policies[{i}]"))
    del out.shadow_policies[:]
    out.shadow_policies.extend(shadows)
    for field, default in (
        ("reward_wait_seconds", DEFAULT_REWARD_WAIT_SECONDS),
        ("publish_interval_seconds", DEFAULT_PUBLISH_INTERVAL_SECONDS),
    ):
        value = getattr(out, field)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"config.{field}: must be a finite number >= 0, got {value}")
        if value == 0:
            setattr(out, field, default)
        elif value < MIN_INTERVAL_SECONDS:
            raise InvalidArgument(f"config.{field}: must be at least {MIN_INTERVAL_SECONDS}, got {value}")
    if not math.isfinite(out.default_reward):
        raise InvalidArgument(f"config.default_reward: must be finite, got {out.default_reward}")
    if not math.isfinite(out.retention_days) or out.retention_days < 0:
        raise InvalidArgument(f"config.retention_days: must be a finite number >= 0, got {out.retention_days}")
    if out.reward_aggregation not in Aggregation.values():
        raise InvalidArgument(f"config.reward_aggregation: unknown value {out.reward_aggregation}")
    if out.reward_aggregation == Aggregation.REWARD_AGGREGATION_UNSPECIFIED:
        out.reward_aggregation = Aggregation.REWARD_AGGREGATION_EARLIEST
    if out.learning_mode not in Mode.values():
        raise InvalidArgument(f"config.learning_mode: unknown value {out.learning_mode}")
    if out.learning_mode == Mode.LEARNING_MODE_UNSPECIFIED:
        out.learning_mode = Mode.LEARNING_MODE_ONLINE
    return out


def default_loop_config() -> types_pb2.LoopConfig:
    """The configuration of the loop `default` created on a store's first start."""
    return normalized(types_pb2.LoopConfig(name=DEFAULT_LOOP))
