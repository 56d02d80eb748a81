"""Logged bandit events, single- and multi-slot: what off-policy evaluation reads, whatever the log's origin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nextbest.policies.featurize import Example, FeaturesLike


@dataclass(frozen=True)
class LoggedEvent:
    """One decision as logged, with its (joined) reward.

    `probability` is the logged probability of the chosen action, already
    divided by any drop probability correction (DSJSON `pdrop`); `pmf` is the
    full logged distribution over `example.actions` when the log has it.
    Action ids are the actions' ids (DSJSON: `_tag`, else the 1-based
    position); the first action is the baseline.
    """

    event_id: str
    example: Example
    chosen_index: int
    probability: float
    reward: float
    pmf: tuple[float, ...] | None = None
    timestamp: float = 0.0
    skip_learn: bool = False  # e.g. a deferred decision never activated
    holdout: bool = False  # decided by the loop's holdout policy, not the live one (DSJSON `_holdout`)

    @property
    def action_ids(self) -> list[str]:
        return self.example.action_ids


@dataclass(frozen=True)
class LoggedSlot:
    """One slot of a multi-slot (CCB) decision as logged, with its (joined) reward.

    `chosen_index` indexes the event's `example.actions`; `eligible` are the indices the slot could take:
    its included actions (DSJSON `_inc`, else all) without those chosen for earlier slots, in order.
    `probability` is the logged probability of the chosen action among them (for the first slot, divided
    by any drop probability correction, so that every slot's cumulative weight carries it once); `pmf`
    is the logged distribution over `example.actions` (0 outside `eligible`) when the log has it.
    """

    id: str
    features: Mapping[str, FeaturesLike]
    eligible: tuple[int, ...]
    chosen_index: int
    probability: float
    reward: float
    pmf: tuple[float, ...] | None = None


@dataclass(frozen=True)
class MultiSlotEvent:
    """One multi-slot decision as logged: the shared context and actions, and its slots in decision order."""

    event_id: str
    example: Example
    slots: tuple[LoggedSlot, ...]
    timestamp: float = 0.0
    skip_learn: bool = False
    holdout: bool = False
