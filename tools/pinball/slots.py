"""A multi-slot world: a weekly email with a lead offer and a secondary offer, decided three ways through a service.

Each customer segment (`SEGMENTS`) has a seeded appeal for each offer: one offer it likes best (`BEST`), another
nearly as much (`SECOND`), the others little (`OTHER_LOW`..`OTHER_HIGH`). The lead slot is seen more than the
secondary (`SECONDARY_ATTENTION`), and the same offer in both slots is wasted in the second. A click on a slot's
offer is a reward of 1 for that slot. Three arms meet the same customers, each in its own loop(s):

- `ccb`: one multi-slot loop (`RankMultiSlot`, `CCB_POLICY`) fills both slots, one reward per slot;
- `independent`: two single-slot loops (the service's default policy unless told otherwise), one per slot, each
  learning its own slot's reward, unaware of the other (they may pick the same offer);
- `journey`: the marketers' scripted send (a LOGGING_ONLY multi-slot loop answering each slot's baseline): they
  know each segment's two favourite offers but lead with the second one and follow with one it likes little.

Each decision's expected reward is known, so arms are compared on it. One run is one learning trajectory: its sends
are not independent draws (an early lock-in shifts every later send), so `compare` pairs the arms by seed and gives a
95% t interval over the per-seed differences.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

from nextbest.client import Client, LearningMode, action, slot
from nextbest.sim.compare import memory_dir
from nextbest.testing import FakeClock, running_server

SEGMENTS = ("student", "parent", "retiree", "pro")
OFFERS = ("sale", "new-in", "loyalty", "bundle", "tips", "app")
SECONDARY_ATTENTION = 0.6
BEST, SECOND, OTHER_LOW, OTHER_HIGH = 0.3, 0.2, 0.02, 0.08
# The multi-slot default. SquareCB explores where the model is unsure (epsilon-greedy starts every untried offer at 0
# and can keep the first one that earns a click). `action|:` crosses the offer with the customer and with the slot's
# own features (`slot`). `--ccb_no_slot_index`: without it VW gives each slot its own copy of every product (offer x
# customer x slot index), and each slot learns a customer's taste from its own clicks alone; with it the slots of a
# send share one taste, learned from the clicks of both, and differ by the slot's features.
CCB_POLICY = (
    "vw:--ccb_explore_adf --squarecb --ccb_no_slot_index --experimental_full_name_interactions action|: "
    "--experimental_full_name_interactions channel|:"
)
SECONDS_BETWEEN_SENDS = 60.0
REWARD_WAIT_SECONDS = 30.0
ARMS = ("ccb", "independent", "journey")
SENDS_PER_SECOND = 50.0  # what the three arms get through on the shared 2-core VM (store in /dev/shm)


@dataclass(frozen=True)
class World:
    """The customers' hidden appeal of each offer (rows: segments) and the marketers' plan per segment (lead,
    secondary); a function of the seed."""

    appeal: np.ndarray
    journey: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, seed: int) -> World:
        rng = np.random.default_rng(seed)
        appeal = rng.uniform(OTHER_LOW, OTHER_HIGH, size=(len(SEGMENTS), len(OFFERS)))
        journey = []
        for row in appeal:
            best, second, other = rng.permutation(len(OFFERS))[:3]
            row[best], row[second] = BEST, SECOND
            journey.append((OFFERS[second], OFFERS[other]))
        return cls(appeal, tuple(journey))

    def click_probabilities(self, segment: int, lead: str, secondary: str) -> tuple[float, float]:
        """The probability of a click on each slot's offer (a repeated offer is wasted in the secondary slot)."""
        p_lead = float(self.appeal[segment, OFFERS.index(lead)])
        p_second = (
            0.0 if secondary == lead else SECONDARY_ATTENTION * float(self.appeal[segment, OFFERS.index(secondary)])
        )
        return p_lead, p_second


ACTIONS = [action(o, "email", {"offer": {"kind": o}}) for o in OFFERS]
SLOTS = [slot("lead", {"slot": {"pos": "lead"}}), slot("secondary", {"slot": {"pos": "secondary"}})]

Decide = Callable[[str, int], tuple[str, str]]
Reward = Callable[[str, str, float], None]


def _arms(client: Client, world: World, single_policy: str) -> dict[str, tuple[Decide, Reward]]:
    """Each arm's decision (event id, segment → lead, secondary) and its reward (event id, slot, value)."""
    common = {"reward_wait_seconds": REWARD_WAIT_SECONDS, "publish_interval_seconds": 0.05}
    client.create_loop("ccb", policy=CCB_POLICY, **common)
    client.create_loop("lead", policy=single_policy, **common)
    client.create_loop("secondary", policy=single_policy, **common)
    client.create_loop("journey", policy=CCB_POLICY, learning_mode=LearningMode.LEARNING_MODE_LOGGING_ONLY, **common)

    def context(segment: int) -> dict[str, dict[str, str]]:
        return {"user": {"segment": SEGMENTS[segment]}}

    def ccb(event_id: str, segment: int) -> tuple[str, str]:
        r = client.rank_multi_slot(ACTIONS, SLOTS, context(segment), loop="ccb", event_id=event_id)
        return r.slots[0].chosen_action_id, r.slots[1].chosen_action_id

    def independent(event_id: str, segment: int) -> tuple[str, str]:
        lead = client.rank(ACTIONS, context(segment), loop="lead", event_id=event_id)
        secondary = client.rank(ACTIONS, context(segment), loop="secondary", event_id=event_id)
        return lead.chosen_action_id, secondary.chosen_action_id

    def journey(event_id: str, segment: int) -> tuple[str, str]:
        planned = world.journey[segment]
        slots = [slot(s.id, baseline=offer) for s, offer in zip(SLOTS, planned, strict=True)]
        r = client.rank_multi_slot(ACTIONS, slots, context(segment), loop="journey", event_id=event_id)
        return r.slots[0].chosen_action_id, r.slots[1].chosen_action_id

    def slot_reward(loop: str) -> Reward:
        def send(event_id: str, slot_id: str, value: float) -> None:
            client.reward(event_id, value, loop=loop, slot_id=slot_id)

        return send

    def own_loop_reward(event_id: str, slot_id: str, value: float) -> None:
        client.reward(event_id, value, loop=slot_id)  # the loops are named after their slot

    return {
        "ccb": (ccb, slot_reward("ccb")),
        "independent": (independent, own_loop_reward),
        "journey": (journey, slot_reward("journey")),
    }


@dataclass(frozen=True)
class Run:
    """One seed's run, per arm: each send's expected clicks per slot (sends × 2), and whether it repeated an offer."""

    expected: dict[str, np.ndarray]
    repeated: dict[str, np.ndarray]


def simulate(sends: int, seed: int, store: str | None = None, single_policy: str = "") -> Run:
    """Run every arm over the same `sends` customers of `World.of(seed)`; `single_policy` is the independent loops'
    policy (empty: the service's default)."""
    if store is None:
        with tempfile.TemporaryDirectory(prefix="nextbest-slots-", dir=memory_dir()) as temporary:
            return simulate(sends, seed, temporary, single_policy)
    world = World.of(seed)
    rng = np.random.default_rng(seed + 1)
    clock = FakeClock()
    expected: dict[str, list[tuple[float, float]]] = {name: [] for name in ARMS}
    repeated: dict[str, list[bool]] = {name: [] for name in ARMS}
    with running_server(store, clock=clock) as (_, client):
        arms = _arms(client, world, single_policy)
        for k in range(sends):
            segment = int(rng.integers(len(SEGMENTS)))
            draws = rng.random(2)  # the same customer answers every arm with the same draws
            for name, (decide, reward) in arms.items():
                chosen = decide(f"s{k}", segment)
                probabilities = world.click_probabilities(segment, *chosen)
                expected[name].append(probabilities)
                repeated[name].append(chosen[0] == chosen[1])
                for s, p, u in zip(SLOTS, probabilities, draws, strict=True):
                    if u < p:
                        reward(f"s{k}", s.id, 1.0)
            clock.advance(SECONDS_BETWEEN_SENDS)
    return Run(
        {name: np.array(values) for name, values in expected.items()},
        {name: np.array(values) for name, values in repeated.items()},
    )


@dataclass(frozen=True)
class Comparison:
    """An arm over the seeds' runs: its mean expected reward per send in each seed and over the seeds (also per
    slot), the share of its sends that repeat an offer, and `ccb − arm` (the mean of the per-seed differences) with
    its 95% t interval over the seeds (None with one seed)."""

    arm: str
    per_seed: tuple[float, ...]
    mean: float
    lead: float
    secondary: float
    repeated: float
    difference: float
    low: float | None
    high: float | None


def compare(runs: Sequence[Run], since: int = 0) -> list[Comparison]:
    """Every arm against `ccb` on the same sends (from `since` on) of each run, paired by seed."""

    def per_slot(name: str) -> np.ndarray:  # seeds × slots
        return np.array([run.expected[name][since:].mean(axis=0) for run in runs])

    ccb = per_slot("ccb").sum(axis=1)
    out = []
    for name in ARMS:
        slot_means = per_slot(name)
        per_seed = slot_means.sum(axis=1)
        d = ccb - per_seed
        mean = float(d.mean())
        low = high = None
        if len(d) > 1:
            half = float(scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
            low, high = mean - half, mean + half
        lead, secondary = (float(x) for x in slot_means.mean(axis=0))
        repeated = float(np.mean([run.repeated[name][since:].mean() for run in runs]))
        seeds = tuple(float(x) for x in per_seed)
        out.append(Comparison(name, seeds, float(per_seed.mean()), lead, secondary, repeated, mean, low, high))
    return out


def table(comparisons: list[Comparison], seeds: Sequence[int]) -> str:
    """Each arm's reward per send in each seed and over them (and per slot), and `ccb − arm` with its interval."""
    per_seed = " ".join(f"{f'seed {s}':>7}" for s in seeds)
    lines = [f"{'arm':12} {per_seed}  {'mean':>6} {'lead':>6} {'second':>6} {'repeats':>7}  ccb − arm (95% interval)"]
    for c in comparisons:
        gap = ""
        if c.arm != "ccb":
            interval = f"[{c.low:+.4f}, {c.high:+.4f}]" if c.low is not None else "(an interval needs 2 seeds)"
            gap = f"{c.difference:+.4f} {interval}"
        values = " ".join(f"{v:7.4f}" for v in c.per_seed)
        lines.append(
            f"{c.arm:12} {values}  {c.mean:6.4f} {c.lead:6.4f} {c.secondary:6.4f} {c.repeated:7.1%}  {gap}".rstrip()
        )
    return "\n".join(lines)
