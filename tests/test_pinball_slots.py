"""The multi-slot world (tools/pinball/slots.py): its rule, and that its comparison computes what it claims."""

import argparse
import math

import numpy as np
import pytest
import scipy.stats

from nextbest.server.commands.demo import run_slots
from nextbest.sim import slots


def test_the_secondary_slot_is_seen_less_and_a_repeated_offer_is_wasted_there():
    world = slots.World.of(3)
    for segment in range(len(slots.SEGMENTS)):
        order = [slots.OFFERS[i] for i in np.argsort(-world.appeal[segment])]
        assert world.click_probabilities(segment, order[0], order[0]) == (slots.BEST, 0.0)
        assert world.click_probabilities(segment, order[0], order[1]) == pytest.approx(
            (slots.BEST, slots.SECONDARY_ATTENTION * slots.SECOND)
        )


def _run(rng: np.random.Generator, level: float, gains: dict[str, float], sends: int = 40) -> slots.Run:
    """A synthetic run: every arm's expected clicks per slot around the seed's `level` (shared by the arms, as a
    seed's world is easier or harder for all), plus the arm's gain, and noise."""
    expected = {
        arm: np.clip(level + gains[arm] + rng.normal(0, 0.05, size=(sends, 2)), 0, 1) * [1, slots.SECONDARY_ATTENTION]
        for arm in slots.ARMS
    }
    repeated = {arm: rng.random(sends) < (0.3 if arm == "independent" else 0.0) for arm in slots.ARMS}
    return slots.Run(expected, repeated)


def test_compare_pairs_the_arms_by_seed_with_a_t_interval_over_the_per_seed_differences():
    rng = np.random.default_rng(4)
    gains = {"ccb": 0.04, "independent": 0.0, "journey": -0.05}
    runs = [_run(rng, level, gains) for level in (0.1, 0.25, 0.15, 0.3)]
    since = 10
    comparisons = {c.arm: c for c in slots.compare(runs, since=since)}
    assert list(comparisons) == list(slots.ARMS)
    ccb = np.array([r.expected["ccb"][since:].sum(axis=1).mean() for r in runs])
    for arm, c in comparisons.items():
        per_seed = np.array([r.expected[arm][since:].sum(axis=1).mean() for r in runs])
        d = ccb - per_seed
        half = scipy.stats.t.ppf(0.975, len(runs) - 1) * d.std(ddof=1) / math.sqrt(len(runs))
        assert c.per_seed == pytest.approx(per_seed) and c.mean == pytest.approx(per_seed.mean())
        assert c.difference == pytest.approx(d.mean())
        assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
        lead = np.mean([r.expected[arm][since:, 0].mean() for r in runs])
        assert (c.lead, c.lead + c.secondary) == pytest.approx((lead, per_seed.mean()))
        assert c.repeated == pytest.approx(np.mean([r.repeated[arm][since:].mean() for r in runs]))
    # the seeds' levels differ far more than the arms do, and pairing by seed takes them out
    independent = comparisons["independent"]
    assert independent.low > 0 and independent.high - independent.low < np.std(independent.per_seed)
    assert comparisons["ccb"].difference == 0.0 and comparisons["ccb"].repeated == 0.0
    table = slots.table(list(comparisons.values()), range(1, 5))
    assert f"{independent.difference:+.4f} [{independent.low:+.4f}, {independent.high:+.4f}]" in table


def test_one_seed_has_no_interval():
    comparisons = slots.compare([_run(np.random.default_rng(1), 0.2, {"ccb": 0.0, "independent": 0.0, "journey": 0.0})])
    assert all(c.low is None and c.high is None for c in comparisons)
    assert "an interval needs 2 seeds" in slots.table(comparisons, [1])


@pytest.mark.slow
def test_a_run_through_the_service_gives_every_arm_the_same_sends_and_the_multi_slot_loop_never_repeats():
    sends = 30
    world = slots.World.of(5)
    run = slots.simulate(sends, 5)
    assert all(run.expected[arm].shape == (sends, 2) for arm in slots.ARMS)
    planned = {world.click_probabilities(s, *world.journey[s]) for s in range(len(slots.SEGMENTS))}
    assert {tuple(row) for row in run.expected["journey"]} <= planned  # the marketers' send, segment by segment
    assert not run.repeated["ccb"].any() and not run.repeated["journey"].any()
    repeats = run.repeated["independent"]
    assert (run.expected["independent"][repeats, 1] == 0).all()  # a repeat is wasted in the secondary slot


def test_the_multi_slot_demo_refuses_fewer_than_one_seed(tmp_path, capsys):
    args = argparse.Namespace(seeds=0, seed=1, seconds=1.0, json=str(tmp_path / "slots.json"))
    assert run_slots(args) == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "slots.json").exists()
