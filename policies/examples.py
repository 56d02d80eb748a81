"""An example of a user policy for the `python:` family: epsilon-greedy over a table of average rewards.

Allow the module (`nextbest serve --policy-module policies.examples`) and use
`python:policies.examples:SegmentGreedy:epsilon=0.1 segment=user.segment`.
Copy it as a starting point for your own: any module on the server's Python
path works the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from nextbest.policies.base import LearnEvent, Policy, PolicySpecError
from nextbest.policies.featurize import Example
from nextbest.policies.params import Param, parse_params

_SCHEMA = {"epsilon": Param(0.1, 0.0, 1.0), "segment": Param("user.segment")}


class SegmentGreedy(Policy):
    """Epsilon-greedy per customer segment: the average reward of each (segment, action id) so far.

    Parameters (`key=value`): `epsilon` in [0, 1] (default 0.1), the share spread
    evenly over all candidates; `segment`, the categorical context feature
    `namespace.feature` that names the segment (default `user.segment`; a
    request without it is in the segment ""). The rest, 1 − ε, goes to the
    candidate with the best average reward in the request's segment, split
    among ties; an action never tried in the segment counts as the best, so
    each is tried.
    """

    def __init__(self, spec: str, epsilon: float, segment: str, table: dict[tuple[str, str], list[float]]) -> None:
        super().__init__(spec)
        self._epsilon = epsilon
        self._namespace, _, self._feature = segment.partition(".")
        self._table = table  # (segment, action id) -> [events, total reward]
        self.explores = epsilon > 0

    @classmethod
    def _create(cls, spec: str, params: str) -> SegmentGreedy:
        p = parse_params("SegmentGreedy", params, _SCHEMA)
        namespace, dot, feature = str(p["segment"]).partition(".")
        if not (namespace and dot and feature):
            raise PolicySpecError(f"SegmentGreedy: segment must be namespace.feature, got {p['segment']!r}")
        return cls(spec, float(p["epsilon"]), str(p["segment"]), {})

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> SegmentGreedy:
        policy = cls._create(spec, params)
        try:
            rows = json.loads(data)
            for segment, action_id, count, total in rows:
                count, total = float(count), float(total)
                if not (
                    isinstance(segment, str) and isinstance(action_id, str) and count >= 1 and math.isfinite(total)
                ):
                    raise ValueError("bad row")
                policy._table[segment, action_id] = [count, total]
        except (ValueError, TypeError) as e:
            raise ValueError(f"not a saved SegmentGreedy policy: {e}") from None
        return policy

    def _segment(self, example: Example) -> str:
        if self._namespace not in example.context:  # never index a protobuf map with a missing key: that inserts it
            return ""
        categorical = example.context[self._namespace].categorical
        return categorical.get(self._feature, "")

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        segment = self._segment(example)
        stats = [self._table.get((segment, a)) for a in example.action_ids]
        means = np.array([np.inf if s is None else s[1] / s[0] for s in stats])
        best = means == means.max()
        return (1.0 - self._epsilon) * best / best.sum() + self._epsilon / len(example)

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        for e in events:
            stats = self._table.setdefault((self._segment(e.example), e.example.action_ids[e.chosen_index]), [0.0, 0.0])
            stats[0] += 1
            stats[1] += e.reward

    def _save(self) -> bytes:
        return json.dumps([[s, a, c, t] for (s, a), (c, t) in sorted(self._table.items())]).encode()
