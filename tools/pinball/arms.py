"""The decision makers the simulator compares ("arms"): a loop of the service and the oracle.

Times are seconds on the world clock (`nextbest.sim.simulate.EPOCH` is day 0).
Every arm sees the same featurization (`nextbest.sim.features`). The simulator uses the public client and test
kit only; `benchmarks/inprocess.py` adds an arm that runs a policy in-process.
"""

from __future__ import annotations

from nextbest.client import Client, RewardAggregation
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
    FakeClock the server was started with). With `subjects`, each Rank names
    its customer (`subject_id`: the loop's name, `/`, the customer's index, so
    that loops sharing a store live in separate worlds) and sends only what the
    caller knows of the customer now: the service keeps the contact history,
    adds its history features and applies the store's contact policy. Without,
    the caller computes the history features itself.
    """

    def __init__(self, client: Client, loop: str, spec: str, subjects: bool = False) -> None:
        super().__init__(loop, spec)
        self._client = client
        self.subjects = subjects
        self.suppressed: list[str] = []  # the decisions (event ids) where the contact policy removed candidates

    @classmethod
    def create(
        cls,
        client: Client,
        loop: str,
        spec: str,
        reward_wait_seconds: float,
        publish_interval_seconds: float,
        *,
        subjects: bool = False,
        **config: object,
    ) -> ServiceArm:
        """Create the loop (rewards summed over the window, 0 without any; `config`: more LoopConfig fields) and
        an arm for it; an empty `spec` takes the server's default policy."""
        created = client.create_loop(
            loop,
            policy=spec,
            reward_wait_seconds=reward_wait_seconds,
            default_reward=0.0,
            reward_aggregation=RewardAggregation.REWARD_AGGREGATION_SUM,
            publish_interval_seconds=publish_interval_seconds,
            **config,
        )
        return cls(client, loop, created.policy, subjects)

    def subject_id(self, moment: Moment) -> str:
        return f"{self.name}/{moment.customer.index}" if self.subjects else ""

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        history = not self.subjects
        response = self._client.rank(
            features.actions(moment, history),
            features.context(moment, history),
            loop=self.name,
            event_id=event_id,
            excluded=sorted(moment.excluded),
            subject_id=self.subject_id(moment),
        )
        if response.suppressed:
            self.suppressed.append(event_id)
        return response.chosen_action_id

    def reward(self, event_id: str, reward_id: str, value: float, now: float) -> None:
        self._client.reward(event_id, value, loop=self.name, reward_id=reward_id)


ORACLE = "oracle"


class OracleArm(Arm):
    """Knows the world: takes the action of highest expected reward (myopically: it ignores fatigue to come)."""

    def __init__(self, name: str = ORACLE) -> None:
        super().__init__(name, ORACLE)

    def decide(self, moment: Moment, event_id: str, now: float) -> str:
        return moment.action_ids[moment.best_index()]
