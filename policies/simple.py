"""Policies that do not learn: `random`, `baseline` and `fixed:<json>`.

They are references to compare learning policies with, safe defaults, and
hand-set distributions. `learn` is a no-op; the saved state is a marker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from nextbest.policies.base import LearnEvent, Policy, PolicyInputError, PolicySpecError
from nextbest.policies.featurize import Example
from nextbest.policies.registry import register


class _Stateless(Policy):
    learns = False

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        pass

    def _save(self) -> bytes:
        return b"stateless"

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> Policy:
        if data != b"stateless":
            raise ValueError(f"not a saved {spec.partition(':')[0]} policy")
        return cls._create(spec, params)


def _no_params(family: str, params: str) -> None:
    if params:
        raise PolicySpecError(f"{family} takes no parameters, got {params!r}")


@register("random")
class RandomPolicy(_Stateless):
    """`random`: the uniform distribution over the candidates."""

    contract_specs = ("random",)
    explores = True

    @classmethod
    def _create(cls, spec: str, params: str) -> RandomPolicy:
        _no_params("random", params)
        return cls(spec)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        return np.full(len(example), 1.0 / len(example))


@register("baseline")
class BaselinePolicy(_Stateless):
    """`baseline`: always the first candidate, with probability 1 (what the caller would do without nextbest)."""

    contract_specs = ("baseline",)

    @classmethod
    def _create(cls, spec: str, params: str) -> BaselinePolicy:
        _no_params("baseline", params)
        return cls(spec)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        p = np.zeros(len(example))
        p[0] = 1.0
        return p


def _weight(action_id: str, w: object) -> float:
    value = float(w) if isinstance(w, int | float) and not isinstance(w, bool) and abs(w) < 1e300 else math.nan
    if not (math.isfinite(value) and value >= 0):
        raise PolicySpecError(f"fixed: the weight of {action_id!r} must be a finite number >= 0, got {w!r}")
    return value


@register("fixed")
class FixedPolicy(_Stateless):
    """`fixed:<json>`: probabilities proportional to fixed weights by action id.

    The JSON object maps action ids to non-negative finite weights, e.g.
    `fixed:{"email-offer": 3, "push-tip": 1}`; candidates whose id it does not
    name weigh 0. A request none of whose candidates has a positive weight is
    refused with PolicyInputError (INVALID_ARGUMENT).
    """

    contract_specs = ('fixed:{"a0": 1, "a1": 2, "a2": 0.5, "a3": 1, "elsewhere": 7}',)

    def __init__(self, spec: str, weights: dict[str, float]) -> None:
        super().__init__(spec)
        self._weights = weights

    @classmethod
    def _create(cls, spec: str, params: str) -> FixedPolicy:
        try:
            weights = json.loads(params)
        except json.JSONDecodeError as e:
            raise PolicySpecError(f"fixed: the weights are not valid JSON: {e}") from e
        if not isinstance(weights, dict):
            raise PolicySpecError('fixed: the weights must be a JSON object {"action id": weight, ...}')
        checked = {action_id: _weight(action_id, w) for action_id, w in weights.items()}
        if not any(w > 0 for w in checked.values()):
            raise PolicySpecError("fixed: at least one action must have a positive weight")
        return cls(spec, checked)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        p = np.array([self._weights.get(a, 0.0) for a in example.action_ids])
        if not p.sum() > 0:
            raise PolicyInputError(f"fixed: none of the {len(example)} candidate actions has a positive weight")
        return p
