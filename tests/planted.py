"""A planted problem: each customer segment has one best action (reward 0.8 vs 0.1 on average)."""

import numpy as np

from nextbest.client import action

SEGMENTS = ["student", "parent", "retiree"]
ACTIONS = [
    action("email-offer", "email"),
    action("push-tip", "push"),
    action("sms-coupon", "sms"),
    action("call-back", "call"),
]
BEST = {"student": "push-tip", "parent": "email-offer", "retiree": "call-back"}
PERSONALIZING = "vw:--cb_explore_adf --epsilon 0.1 -q ::"


def run(client, loop, rounds, seed, prefix=""):
    """Each round: a random customer, Rank, then a Bernoulli reward (0.8 for the planted best, else 0.1).

    Returns (hit best action, reward) arrays.
    """
    rng = np.random.default_rng(seed)
    hits, rewards = [], []
    for i in range(rounds):
        segment = SEGMENTS[rng.integers(len(SEGMENTS))]
        r = client.rank(ACTIONS, {"user": {"segment": segment}}, loop=loop, event_id=f"{loop}-{prefix}{seed}-{i}")
        best = r.chosen_action_id == BEST[segment]
        reward = float(rng.random() < (0.8 if best else 0.1))
        hits.append(best)
        rewards.append(reward)
        client.reward(r.event_id, reward, loop=loop)
    return np.array(hits), np.array(rewards)


def planted_round(client, loop, event_id, rng):
    """One round through `client`: a random customer, Rank, then a Bernoulli reward; whether it chose the best."""
    segment = SEGMENTS[rng.integers(len(SEGMENTS))]
    r = client.rank(ACTIONS, {"user": {"segment": segment}}, loop=loop, event_id=event_id)
    best = r.chosen_action_id == BEST[segment]
    client.reward(r.event_id, float(rng.random() < (0.8 if best else 0.1)), loop=loop, reward_id="r")
    return best
