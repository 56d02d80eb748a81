"""A multi-slot world: a weekly email with a lead offer and a secondary offer, decided three ways through a service.

Each customer segment (`SEGMENTS`) has a seeded appeal for each offer: one offer it likes best (`BEST`), another
nearly as much (`SECOND`), the others little (`OTHER_LOW`..`OTHER_HIGH`). The lead slot is seen more than the
secondary (`SECONDARY_ATTENTION`), and the same offer in both slots is wasted in the second. A click on a slot's
offer is a reward of 1 for that slot. Three arms meet the same customers, each in its own loop(s):

- `ccb`: one multi-slot loop (`RankMultiSlot`, the CCB default policy) fills both slots, one reward per slot;
- `independent`: two single-slot loops (the default single-slot policy), one per slot, each learning its own
  slot's reward, unaware of the other (they may pick the same offer);
- `journey`: the marketers' scripted send (a LOGGING_ONLY multi-slot loop answering each slot's baseline): they
  know each segment's two favourite offers but lead with the second one and follow with one it likes little.

Each decision's expected reward is known, so arms are compared on it: `compare` gives, per arm, the mean expected
reward per send and the difference from `ccb` on the same sends with a 95% normal interval.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nextbest.client import Client, LearningMode, action, slot
from nextbest.testing import FakeClock, running_server

SEGMENTS = ("student", "parent", "retiree", "pro")
OFFERS = ("sale", "new-in", "loyalty", "bundle", "tips", "app")
SECONDARY_ATTENTION = 0.6
BEST, SECOND, OTHER_LOW, OTHER_HIGH = 0.3, 0.2, 0.02, 0.08
CCB_POLICY = "vw:--ccb_explore_adf --epsilon 0.05 -q ::"
SINGLE_POLICY = "vw:--cb_explore_adf --epsilon 0.05 -q ::"
SECONDS_BETWEEN_SENDS = 60.0
REWARD_WAIT_SECONDS = 30.0
ARMS = ("ccb", "independent", "journey")
SENDS_PER_SECOND = 15.0  # what the three arms get through on the shared 2-core VM


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


def _arms(client: Client, world: World) -> dict[str, tuple[Decide, Reward]]:
    """Each arm's decision (event id, segment → lead, secondary) and its reward (event id, slot, value)."""
    common = {"reward_wait_seconds": REWARD_WAIT_SECONDS, "publish_interval_seconds": 0.05}
    client.create_loop("ccb", policy=CCB_POLICY, **common)
    client.create_loop("lead", policy=SINGLE_POLICY, **common)
    client.create_loop("secondary", policy=SINGLE_POLICY, **common)
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


def simulate(sends: int, seed: int, store: str | None = None) -> dict[str, np.ndarray]:
    """Run every arm over the same `sends` customers; each arm's expected reward per send, in order."""
    if store is None:
        with tempfile.TemporaryDirectory(prefix="nextbest-slots-") as temporary:
            return simulate(sends, seed, temporary)
    world = World.of(seed)
    rng = np.random.default_rng(seed + 1)
    clock = FakeClock()
    expected: dict[str, list[float]] = {name: [] for name in ARMS}
    with running_server(store, clock=clock) as (_, client):
        arms = _arms(client, world)
        for k in range(sends):
            segment = int(rng.integers(len(SEGMENTS)))
            draws = rng.random(2)  # the same customer answers every arm with the same draws
            for name, (decide, reward) in arms.items():
                chosen = decide(f"s{k}", segment)
                probabilities = world.click_probabilities(segment, *chosen)
                expected[name].append(sum(probabilities))
                for s, p, u in zip(SLOTS, probabilities, draws, strict=True):
                    if u < p:
                        reward(f"s{k}", s.id, 1.0)
            clock.advance(SECONDS_BETWEEN_SENDS)
    return {name: np.array(values) for name, values in expected.items()}


@dataclass(frozen=True)
class Comparison:
    """An arm's mean expected reward per send and its difference from `ccb` (ccb − arm) with a 95% interval."""

    arm: str
    mean: float
    difference: float
    low: float
    high: float


def compare(expected: dict[str, np.ndarray], since: int = 0) -> list[Comparison]:
    """Every arm against `ccb` on the same sends from `since` on (paired differences, normal interval)."""
    ccb = expected["ccb"][since:]
    out = []
    for name, values in expected.items():
        d = ccb - values[since:]
        half = 1.96 * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        mean = float(d.mean())
        out.append(Comparison(name, float(values[since:].mean()), mean, mean - half, mean + half))
    return out


def table(comparisons: list[Comparison]) -> str:
    lines = [f"{'arm':12} {'reward/send':>11}  ccb − arm (95% interval)"]
    for c in comparisons:
        gap = "" if c.arm == "ccb" else f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
        lines.append(f"{c.arm:12} {c.mean:11.4f}  {gap}")
    return "\n".join(lines)
