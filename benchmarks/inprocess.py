"""A pinball arm that runs a policy in-process the way the service does (no gRPC, log or publishing), for fast
sweeps and for comparing the service with VW learning the same decisions directly."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from nextbest import policies
from nextbest.client import namespaces
from nextbest.server.sampling import sample_index, seeded_uniform
from nextbest.sim import features
from nextbest.sim.arms import Arm, OracleArm
from nextbest.sim.compare import REWARD_WAIT_SECONDS
from nextbest.sim.population import Population
from nextbest.sim.simulate import Progress, Run, simulate
from nextbest.sim.world import Moment


@dataclass
class _Pending:
    time: float
    example: policies.Example
    chosen: int
    probability: float
    rewards: list[float] = field(default_factory=list)


class LocalArm(Arm):
    """A policy run in-process the way the service runs it, without gRPC, log or publishing.

    Decisions are sampled like the service samples them (seeded by
    `(seed_loop, event_id)`); a decision is learned from, with its logged
    probability, once its reward window has closed, with the sum of the
    rewards in the window (0 without any). The model is updated at once.
    """

    def __init__(self, name: str, spec: str, reward_wait_seconds: float, seed_loop: str | None = None) -> None:
        super().__init__(name, spec)
        self.policy = policies.create(spec)
        self._wait = reward_wait_seconds
        self._seed_loop = seed_loop or name
        self._open: deque[str] = deque()
        self._pending: dict[str, _Pending] = {}

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        candidates = [a for a in features.actions(moment) if a.id not in moment.excluded]
        example = policies.Example(namespaces(features.context(moment)), candidates)
        pmf = self.policy.pmf(example, event_id)
        chosen = sample_index(pmf, seeded_uniform(self._seed_loop, event_id))
        self._pending[event_id] = _Pending(now, example, chosen, float(pmf[chosen]))
        self._open.append(event_id)
        return candidates[chosen].id

    def reward(self, event_id: str, reward_id: str, value: float, now: float) -> None:
        pending = self._pending.get(event_id)
        if pending is not None and now <= pending.time + self._wait:
            pending.rewards.append(value)

    def tick(self, now: float) -> None:
        while self._open and self._pending[self._open[0]].time + self._wait < now:
            p = self._pending.pop(self._open.popleft())
            self.policy.learn([policies.LearnEvent(p.example, p.chosen, p.probability, sum(p.rewards))])


def in_process(population: Population, specs: Mapping[str, str], *, progress: Progress | None = None) -> Run:
    """Run `specs` (name → spec) in-process (`LocalArm`), and the oracle, over `population`."""
    arms: list[Arm] = [LocalArm(name, spec, REWARD_WAIT_SECONDS) for name, spec in specs.items()]
    return simulate(population, [*arms, OracleArm()], progress=progress)
