"""The service learns a planted preference through the real loop: Rank → log → Reward → join → learn → publish."""

import numpy as np
import pytest
from planted import ACTIONS, PERSONALIZING, SEGMENTS, run

from nextbest.client import LearningMode
from nextbest.testing import wait_for

POLICY = PERSONALIZING


@pytest.mark.slow
def test_service_learns_a_planted_preference(served):
    server, client = served
    client.create_loop("learn", policy=POLICY, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    hits, _ = run(client, "learn", 1500, seed=7)
    first, last = hits[:300].mean(), hits[-300:].mean()
    print(f"best-action rate: first 300 {first:.3f}, last 300 {last:.3f} (chance 0.25)")
    assert last > 0.75, (first, last)
    stats = wait_for(lambda: (s := client.stats("learn")).learned == 1500 and s)
    assert int(stats.model_version) > 1 and stats.average_reward > 0.3


def test_logging_only_answers_the_baseline_and_learns_nothing(served):
    server, client = served
    client.create_loop(
        "log",
        policy=POLICY,
        reward_wait_seconds=0.05,
        publish_interval_seconds=0.05,
        learning_mode=LearningMode.LEARNING_MODE_LOGGING_ONLY,
    )
    for i in range(30):
        r = client.rank(ACTIONS, {"user": {"segment": "student"}}, loop="log", event_id=f"l{i}")
        assert r.chosen_action_id == "email-offer" and r.policy == "baseline"
        assert r.learning_mode == LearningMode.LEARNING_MODE_LOGGING_ONLY
        assert [p.probability for p in r.ranking] == [1.0, 0.0, 0.0, 0.0]
        client.reward(r.event_id, 1.0, loop="log")
    wait_for(lambda: client.stats("log").joined == 30)
    assert client.stats("log").model_version == "0"  # nothing learned, nothing published


@pytest.mark.slow
def test_apprentice_answers_the_baseline_learns_it_and_reports_the_match_rate(served):
    server, client = served
    client.create_loop(
        "app",
        policy=POLICY,
        reward_wait_seconds=0.05,
        publish_interval_seconds=0.05,
        learning_mode=LearningMode.LEARNING_MODE_APPRENTICE,
    )
    rng = np.random.default_rng(3)
    for i in range(400):
        segment = SEGMENTS[rng.integers(len(SEGMENTS))]
        r = client.rank(ACTIONS, {"user": {"segment": segment}}, loop="app", event_id=f"a{i}")
        assert r.chosen_action_id == "email-offer" and r.policy == "baseline"
        client.reward(r.event_id, 1.0, loop="app")  # the baseline earns; the others are never tried
    stats = wait_for(lambda: (s := client.stats("app")).learned == 400 and s)
    assert int(stats.model_version) >= 1
    assert stats.apprentice_match_rate > 0.5
