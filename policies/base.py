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
from nextbest.policies.featurize import Example


class PolicySpecError(ValueError):
    """A policy spec string that cannot be used; the message says why."""


class PolicyInputError(ValueError):
    """A request this policy cannot decide, e.g. no candidate has a positive weight; the message says why.

    The service answers it with INVALID_ARGUMENT: the request, not the policy, must change.
    """


@dataclass(frozen=True)
class LearnEvent:
    """One joined event as a policy learns from it.

    `probability` is the logged probability of the chosen action, never a
    recomputed one.
    """

    example: Example
    chosen_index: int
    probability: float
    reward: float

    def __post_init__(self) -> None:
        if not 0 <= self.chosen_index < len(self.example):
            raise ValueError(f"chosen_index {self.chosen_index} out of range for {len(self.example)} actions")
        if not (0.0 < self.probability <= 1.0):
            raise ValueError(f"probability must be in (0, 1], got {self.probability}")
        if not math.isfinite(self.reward):
            raise ValueError(f"reward must be finite, got {self.reward}")


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
        p = np.asarray(self._pmf(example, event_id), dtype=np.float64)
        if p.shape != (len(example),):
            raise ValueError(f"{self.spec}: pmf has shape {p.shape}, expected ({len(example)},)")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(f"{self.spec}: invalid pmf {p.tolist()}")
        return p / p.sum()

    def learn(self, events: Sequence[LearnEvent]) -> None:
        """Learn from joined events, in order."""
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

    @abstractmethod
    def _pmf(self, example: Example, event_id: str) -> Sequence[float]: ...

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
