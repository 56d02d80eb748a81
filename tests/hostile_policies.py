"""`python:` policies that misbehave, for the bounds of Evaluate: allowed with
`Restrictions(policy_modules=("hostile_policies",))`; each is harmless outside a bounded process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from nextbest.policies.base import LearnEvent, Policy
from nextbest.policies.featurize import Example

HOG_STEP = 64 << 20
HOG_MOST = 4 << 30  # the most a Hog reserves: zero pages never touched, so no memory is used unless capped


class Sleeper(Policy):
    """Takes an hour for each decision."""

    learns = False

    @classmethod
    def _create(cls, spec: str, params: str) -> Sleeper:
        return cls(spec)

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> Sleeper:
        return cls(spec)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        time.sleep(3600)
        return [1.0] * len(example)

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        pass

    def _save(self) -> bytes:
        return b""


class Hog(Sleeper):
    """Reserves memory in steps of 64 MiB up to 4 GiB when created, then decides uniformly at once."""

    @classmethod
    def _create(cls, spec: str, params: str) -> Hog:
        policy = cls(spec)
        policy.hoard = [bytearray(HOG_STEP) for _ in range(HOG_MOST // HOG_STEP)]
        return policy

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        return [1.0] * len(example)
