"""The decision makers the simulator compares ("arms"): a loop of the service, a policy in-process, the oracle.

Times are seconds on the world clock (`tools.pinball.simulate.EPOCH` is day 0).
Every arm sees the same featurization (`tools.pinball.features`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nextbest import policies
from nextbest.client import Client, RewardAggregation, namespaces
from nextbest.server.sampling import sample_index, seeded_uniform
from nextbest.sim import features
from nextbest.sim.world import Moment


class Arm:
    """Chooses an action for each moment and hears about its rewards as they happen (a base class)."""

    def __init__(self, name: str, spec: str) -> None:
        self.name = name
        self.spec = spec

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        """The id of the action chosen for `moment` (never an excluded one)."""
        raise NotImplementedError

    def reward(self, event_id: str, reward_id: str, value: float, now: float) -> None:
        """A reward of decision `event_id` happened at `now`."""

    def tick(self, now: float) -> None:
        """The world clock reached `now` (called before each decision)."""


class ServiceArm(Arm):
    """A loop of a nextbest service: Rank for each moment, Reward for each reward.

    The service's clock must follow the world clock (the simulator moves a
    FakeClock the server was started with).
    """

    def __init__(self, client: Client, loop: str, spec: str) -> None:
        super().__init__(loop, spec)
        self._client = client

    @classmethod
    def create(
        cls, client: Client, loop: str, spec: str, reward_wait_seconds: float, publish_interval_seconds: float
    ) -> ServiceArm:
        """Create the loop (rewards summed over the window, 0 without any) and an arm for it."""
        client.create_loop(
            loop,
            policy=spec,
            reward_wait_seconds=reward_wait_seconds,
            default_reward=0.0,
            reward_aggregation=RewardAggregation.REWARD_AGGREGATION_SUM,
            publish_interval_seconds=publish_interval_seconds,
        )
        return cls(client, loop, spec)

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        response = self._client.rank(
            features.actions(moment),
            features.context(moment),
            loop=self.name,
            event_id=event_id,
            excluded=sorted(moment.excluded),
        )
        return response.chosen_action_id

    def reward(self, event_id: str, reward_id: str, value: float, now: float) -> None:
        self._client.reward(event_id, value, loop=self.name, reward_id=reward_id)


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


ORACLE = "oracle"


class OracleArm(Arm):
    """Knows the world: takes the action of highest expected reward (myopically: it ignores fatigue to come)."""

    def __init__(self, name: str = ORACLE) -> None:
        super().__init__(name, ORACLE)

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        return moment.action_ids[moment.best_index()]
