"""The policy interface: a probability for every candidate action, and learning from joined events.

A policy never samples: the service samples from the pmf a policy returns,
with a generator seeded from the event id, and logs that pmf.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nextbest.policies.envelope import seal
from nextbest.policies.featurize import Example, Slot
from nextbest.policies.work import WorkCounter, no_work


class PolicySpecError(ValueError):
    """A policy spec string that cannot be used; the message says why."""


class PolicyInputError(ValueError):
    """A request this policy cannot decide, e.g. no candidate has a positive weight; the message says why.

    The service answers it with INVALID_ARGUMENT: the request, not the policy, must change.
    """


def _check_outcome(chosen_index: int, candidates: int, probability: float, reward: float) -> None:
    if not 0 <= chosen_index < candidates:
        raise ValueError(f"chosen_index {chosen_index} out of range for {candidates} actions")
    if not (0.0 < probability <= 1.0):
        raise ValueError(f"probability must be in (0, 1], got {probability}")
    if not math.isfinite(reward):
        raise ValueError(f"reward must be finite, got {reward}")


@dataclass(frozen=True)
class SlotOutcome:
    """One slot of a multi-slot event: `chosen_index` is into `slot.candidates`, `probability` the logged one."""

    slot: Slot
    chosen_index: int
    probability: float
    reward: float

    def __post_init__(self) -> None:
        _check_outcome(self.chosen_index, len(self.slot.candidates), self.probability, self.reward)

    @property
    def action_index(self) -> int:
        """The chosen action's index into the example's actions."""
        return self.slot.candidates[self.chosen_index]


@dataclass(frozen=True)
class LearnEvent:
    """One joined event as a policy learns from it.

    `probability` is the logged probability of the chosen action, never a
    recomputed one. A multi-slot event has `slots` (in decision order); its
    `chosen_index`, `probability` and `reward` are then the first slot's.
    """

    example: Example
    chosen_index: int
    probability: float
    reward: float
    slots: tuple[SlotOutcome, ...] = ()

    def __post_init__(self) -> None:
        _check_outcome(self.chosen_index, len(self.example), self.probability, self.reward)

    def per_slot(self) -> list[LearnEvent]:
        """The event as single-slot events, one per slot (itself when it has no slots): what a policy that
        decides each slot alone learns."""
        if not self.slots:
            return [self]
        return [
            LearnEvent(self.example.slot_example(s.slot), s.chosen_index, s.probability, s.reward) for s in self.slots
        ]


class Policy(ABC):
    """Base of every policy family.

    Public methods validate and delegate to the private `_pmf`, `_learn` and
    `_save`; families implement those and the `_create` and `_load` class
    methods. Implementations need not be thread-safe: the service serializes calls.

    Each family declares what the contract suite (`tests/test_policy_contract.py`)
    checks it against: `contract_specs`, representative specs it must pass
    with; `learns`, whether learning changes its pmf (when False, `learn` must
    leave the pmf unchanged); `explores`, whether every candidate always gets a
    positive probability (instances may set it from their spec).
    """

    contract_specs: ClassVar[tuple[str, ...]] = ()
    learns: ClassVar[bool] = True
    explores: bool = False
    # Decides the slots of a multi-slot decision together (VW CCB); a policy that does not decides (and learns) each
    # slot alone, from the context with the slot's features.
    multi_slot: bool = False

    def __init__(self, spec: str) -> None:
        self._spec = spec

    @property
    def spec(self) -> str:
        """The spec string that builds this policy, e.g. `vw:--cb_explore_adf --epsilon 0.05`."""
        return self._spec

    def pmf(self, example: Example, event_id: str = "") -> np.ndarray:
        """Probability of each action of `example`, in order; float64, sums to 1."""
        if len(example) == 0:
            raise ValueError("example has no actions")
        return self._checked(self._pmf(example, event_id), len(example))

    def slot_pmf(
        self, example: Example, slots: Sequence[Slot], chosen: Sequence[int], event_id: str = ""
    ) -> np.ndarray:
        """Probability of each candidate of the slot `slots[len(chosen)]`, in order, given that the slots before it
        chose the actions `chosen` (indices into the example's actions); float64, sums to 1."""
        slot = slots[len(chosen)]
        if not slot.candidates:
            raise ValueError("slot has no candidates")
        if not self.multi_slot:
            return self.pmf(example.slot_example(slot), event_id)
        return self._checked(self._slot_pmf(example, slots, chosen), len(slot.candidates))

    def _checked(self, pmf: Sequence[float], n: int) -> np.ndarray:
        p = np.asarray(pmf, dtype=np.float64)
        if p.shape != (n,):
            raise ValueError(f"{self.spec}: pmf has shape {p.shape}, expected ({n},)")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"{self.spec}: invalid pmf {p.tolist()}")
        return p / p.sum()

    def learn(self, events: Sequence[LearnEvent]) -> None:
        """Learn from joined events, in order (a policy that is not `multi_slot` learns each slot alone)."""
        if not self.multi_slot and any(event.slots for event in events):
            events = [one for event in events for one in event.per_slot()]
        if events:
            self._learn(events)

    def save(self) -> bytes:
        """The policy's learned state as bytes; `policies.load(spec, data)` restores it.

        The bytes carry the family and a checksum (see `policies.envelope`).
        """
        return seal(self.family, self._save())

    @property
    def family(self) -> str:
        """The family part of the spec, e.g. `vw`."""
        return self._spec.partition(":")[0].strip()

    @classmethod
    def work_counter(cls, params: str) -> WorkCounter:
        """What deciding an example costs a policy of this spec, in generated features (see `policies.work`),
        counted without running it: the service refuses a decision that costs more than its limit.

        The default counts nothing: the family's work is proportional to the request, which limits bound.
        """
        return no_work

    def work(self, example: Example) -> int:
        """What deciding `example` costs this policy, in generated features (see `work_counter`)."""
        return self.work_counter(self._spec.partition(":")[2].strip())(example)

    @abstractmethod
    def _pmf(self, example: Example, event_id: str) -> Sequence[float]: ...

    def _slot_pmf(self, example: Example, slots: Sequence[Slot], chosen: Sequence[int]) -> Sequence[float]:
        """A `multi_slot` family's `slot_pmf`."""
        raise NotImplementedError

    @abstractmethod
    def _learn(self, events: Sequence[LearnEvent]) -> None: ...

    @abstractmethod
    def _save(self) -> bytes: ...

    @classmethod
    @abstractmethod
    def _create(cls, spec: str, params: str) -> Policy:
        """A fresh policy from the part of the spec after `family:`; raises PolicySpecError."""

    @classmethod
    @abstractmethod
    def _load(cls, spec: str, params: str, data: bytes) -> Policy:
        """A policy restored from `save()` bytes; raises ValueError on corrupt bytes."""
