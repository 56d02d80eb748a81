"""Loop configuration: defaults, validation, and the request limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nextbest.server.errors import InvalidArgument
from nextbest.v1 import types_pb2

if TYPE_CHECKING:
    from nextbest import policies

DEFAULT_LOOP = "default"
# Crossing the action id and the channel with every namespace lets the best action depend on the context (without
# interactions a linear model scores an action by its own features only and learns one choice for everyone), at a
# cost linear in the namespaces where `-q ::` is quadratic; VW's full names keep a context namespace that starts
# with `a` or `c` out of it. SquareCB explores where the model is unsure. docs/defaults.md has the measurements.
DEFAULT_POLICY = (
    "vw:--cb_explore_adf --squarecb"
    " --experimental_full_name_interactions action|: --experimental_full_name_interactions channel|:"
)
DEFAULT_REWARD_WAIT_SECONDS = 60.0
DEFAULT_PUBLISH_INTERVAL_SECONDS = 10.0
MIN_INTERVAL_SECONDS = 0.05
# Upper bounds of the loop's durations: beyond them a loop would never join, publish or expire anything.
MAX_REWARD_WAIT_SECONDS = 30 * 86400.0
MAX_PUBLISH_INTERVAL_SECONDS = 86400.0
MAX_RETENTION_DAYS = 36500.0
MAX_SHADOWS = 8
DEFAULT_HOLDOUT_POLICY = "random"
# At most half of a loop's subjects are held out: the holdout is the comparison group, not the treatment.
MAX_HOLDOUT_FRACTION = 0.5
DEFAULT_MAP_SIZE = 16 << 30  # the LMDB store's size limit (`--store-max-bytes`)
# Rewards beyond 32-bit floats turn a VW model's predictions into NaN (every later Rank fails): a loop's rewards
# lie in [reward_min, reward_max], by default DEFAULT_REWARD_RANGE, never wider than MAX_REWARD_MAGNITUDE.
DEFAULT_REWARD_RANGE = (-1e6, 1e6)
MAX_REWARD_MAGNITUDE = 1e9

_LOOP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Mode = types_pb2.LearningMode
Aggregation = types_pb2.RewardAggregation


@dataclass(frozen=True)
class Limits:
    """Request limits enforced before any work; violations answer INVALID_ARGUMENT naming the field
    (RESOURCE_EXHAUSTED for the sizes and work limits)."""

    max_actions: int = 256
    max_namespaces: int = 32
    max_features_per_namespace: int = 1024
    max_string_length: int = 256
    max_message_bytes: int = 4 * 1024 * 1024
    max_batch_requests: int = 1000  # RankBatch's requests
    max_loops: int = 1000
    max_model_bytes: int = 64 << 20
    # Features a decision may make its policy generate (interactions included; see policies.work): bounds the
    # CPU time and memory of one Rank, and of learning from it. Over it: RESOURCE_EXHAUSTED.
    max_generated_features: int = 5_000_000


def check_loop_name(name: str, field: str = "loop") -> str:
    """`name` when it is a valid loop name, else InvalidArgument naming `field`."""
    if not _LOOP_NAME.match(name):
        raise InvalidArgument(
            f"{field}: {name!r} is not a valid loop name (letters, digits, '_', '.', '-'; at most 64)"
        )
    return name


def reward_range(config: types_pb2.LoopConfig) -> tuple[float, float]:
    """The loop's [reward_min, reward_max] (both 0, as in configs stored before the range existed: the default)."""
    if config.reward_min == config.reward_max == 0:
        return DEFAULT_REWARD_RANGE
    return config.reward_min, config.reward_max


def check_reward(value: float, config: types_pb2.LoopConfig, field: str) -> None:
    """InvalidArgument naming `field` unless `value` lies in the loop's reward range (NaN never does)."""
    low, high = reward_range(config)
    if not low <= value <= high:
        span = f"[{low:.15g}, {high:.15g}] (reward_min, reward_max)"
        raise InvalidArgument(f"{field}: {value:.15g} is outside the loop's reward range {span}")


def _check_range(config: types_pb2.LoopConfig) -> None:
    low, high = reward_range(config)
    for field, value in (("reward_min", low), ("reward_max", high)):
        if not abs(value) <= MAX_REWARD_MAGNITUDE:  # also false for NaN
            raise InvalidArgument(f"config.{field}: must be within ±{MAX_REWARD_MAGNITUDE:.15g}, got {value:.15g}")
    if not low < high:
        raise InvalidArgument(f"config.reward_min: must be below reward_max, got [{low:.15g}, {high:.15g}]")
    config.reward_min, config.reward_max = low, high
    check_reward(config.default_reward, config, "config.default_reward")


def _created(spec: str, field: str) -> policies.Policy:
    from nextbest import policies  # not at the top: the CLI imports this module for its defaults

    try:
        return policies.create(spec)
    except policies.PolicySpecError as e:
        raise InvalidArgument(f"{field}: {e}") from e


def _checked_spec(spec: str, field: str) -> str:
    _created(spec, field)
    return spec


def _checked_holdout(config: types_pb2.LoopConfig) -> None:
    """Default and check the holdout: a fraction in [0, MAX_HOLDOUT_FRACTION] and a policy that does not learn
    (the holdout is a fixed comparison group: nothing learns from it but, with holdout_learn, the live policy)."""
    _in_range(config, "holdout_fraction", 0.0, MAX_HOLDOUT_FRACTION)
    spec = config.holdout_policy.strip() or DEFAULT_HOLDOUT_POLICY
    if _created(spec, "config.holdout_policy").learns:
        raise InvalidArgument(
            f"config.holdout_policy: {spec!r} learns; the holdout policy must be one that does not "
            "(random, baseline, fixed:..., rules:...)"
        )
    config.holdout_policy = spec


def _in_range(config: types_pb2.LoopConfig, field: str, low: float, high: float) -> None:
    value = getattr(config, field)
    if not low <= value <= high:  # also false for NaN
        raise InvalidArgument(f"config.{field}: must be in [{low:g}, {high:g}], got {value:g}")


def normalized(config: types_pb2.LoopConfig) -> types_pb2.LoopConfig:
    """A copy of `config` with defaults in place of zero values, validated.

    The policy spec is checked by building the policy (a VW option off the
    allowlist, or a combination VW rejects, is refused with the reason), and
    durations against their ranges. Raises InvalidArgument naming the field.
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
    _checked_holdout(out)
    for field, default, high in (
        ("reward_wait_seconds", DEFAULT_REWARD_WAIT_SECONDS, MAX_REWARD_WAIT_SECONDS),
        ("publish_interval_seconds", DEFAULT_PUBLISH_INTERVAL_SECONDS, MAX_PUBLISH_INTERVAL_SECONDS),
    ):
        if getattr(out, field) == 0:
            setattr(out, field, default)
        _in_range(out, field, MIN_INTERVAL_SECONDS, high)
    _check_range(out)
    if out.retention_days != 0:
        _in_range(out, "retention_days", 0.0, MAX_RETENTION_DAYS)
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
