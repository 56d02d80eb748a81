"""Run arms side by side through one world, in time order, and record what each decision was worth.

Every arm meets the same occasions (the same customers at the same times,
with the same random draws) in its own copy of the world. Rewards happen
later in world time and are delivered in time order as the world clock
passes them; with a service, the simulator moves the service's clock (a
`server.testing.FakeClock`) along, so reward windows are in world time and a
run is as fast as the service answers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nextbest.sim.arms import Arm
from nextbest.sim.config import WorldConfig
from nextbest.sim.population import Population
from nextbest.sim.world import World
from nextbest.testing import FakeClock

EPOCH = 1_700_000_000.0  # the world clock at day 0, in seconds (FakeClock's default start)
DAY = 86_400.0


@dataclass
class ArmRecord:
    """What one arm did: per decision, its time (days), chosen action, expected reward, the oracle's
    expected reward in the same situation (`best`) and the reward that came of it (all of it, even
    what arrived after the service's window)."""

    name: str
    spec: str
    time: list[float] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)


@dataclass
class Run:
    """The records of every arm over one world, and the world's drift events as (day, label)."""

    config: WorldConfig
    seed: int
    arms: list[ArmRecord]

    @property
    def events(self) -> list[tuple[float, str]]:
        c = self.config
        return [
            (c.shift_at * c.days, "tastes shift"),
            (c.launch_at * c.days, f"'{c.launched_offer}' launched"),
            (c.withdraw_at * c.days, f"{c.withdrawn_channel} consent withdrawn"),
        ]

    def arm(self, name: str) -> ArmRecord:
        return next(a for a in self.arms if a.name == name)


Progress = Callable[[Run, int, int], None]


def simulate(
    population: Population,
    arms: Sequence[Arm],
    *,
    clock: FakeClock | None = None,
    progress: Progress | None = None,
    progress_every: int = 100,
) -> Run:
    """Run `arms` side by side through every occasion of `population`.

    `clock`, when given, is moved to each decision's and each reward's time
    before the arms hear of it (pass the FakeClock the service runs on).
    `progress(run, done, total)` is called every `progress_every` occasions.
    Rewards still to come at the end are delivered before returning.
    """
    worlds = [World(population) for _ in arms]
    run = Run(population.config, population.seed, [ArmRecord(a.name, a.spec) for a in arms])
    pending: list[tuple[float, int, int, str, str, float]] = []  # (day, seq, arm, event id, reward id, value)
    seq = 0

    def move(day: float) -> float:
        now = EPOCH + day * DAY
        if clock is not None and now > clock():
            clock.advance(now - clock())
        return now

    def deliver(until: float) -> None:
        while pending and pending[0][0] <= until:
            day, _, i, event_id, reward_id, value = heapq.heappop(pending)
            arms[i].reward(event_id, reward_id, value, move(day))

    total = len(population)
    for k in range(total):
        occasion = population.occasion(k)
        deliver(occasion.time)
        now = move(occasion.time)
        event_id = f"{population.seed}-{k}"
        for i, (arm, world, record) in enumerate(zip(arms, worlds, run.arms, strict=True)):
            arm.tick(now)
            moment = world.observe(occasion)
            chosen = arm.decide(moment, event_id, now)
            index = moment.action_ids.index(chosen)
            rewards = world.respond(moment, index)
            record.time.append(occasion.time)
            record.action.append(chosen)
            record.expected.append(float(moment.expected[index]))
            record.best.append(moment.best)
            record.reward.append(sum(r.value for r in rewards))
            for r in rewards:
                heapq.heappush(pending, (r.time, seq, i, event_id, r.reward_id, r.value))
                seq += 1
        if progress is not None and ((k + 1) % progress_every == 0 or k + 1 == total):
            progress(run, k + 1, total)
    deliver(np.inf)
    return run
