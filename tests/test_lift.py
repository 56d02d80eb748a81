"""The lift estimator: treatment against holdout, per-subject clustering, on simulated subjects."""

import math

import numpy as np
import pytest

from nextbest.policies.ope.lift import lift
from nextbest.server.lift import MAX_SUBJECTS, LiftCounter, LiftState
from nextbest.server.sampling import in_holdout, subject_key
from nextbest.server.store import Entry, Stream, cursor_name, open_store
from nextbest.testing import nats_server_binary, running_nats
from nextbest.v1 import records_pb2
from nextbest.v1.types_pb2 import LoopConfig

TRUE_DIFFERENCE = 0.05


def simulate(rng, subjects=1000, holdout_fraction=0.3):
    """Subjects with very different base rates (Beta(0.5, 1.5) · 0.9) and 1 to ~15 decisions each; the treatment
    adds TRUE_DIFFERENCE to every base rate, so the per-decision averages differ by exactly that in expectation."""
    base = rng.beta(0.5, 1.5, subjects) * 0.9
    decisions = 1 + rng.poisson(6, subjects)
    held = rng.random(subjects) < holdout_fraction
    rate = base + np.where(held, 0.0, TRUE_DIFFERENCE)
    rewards = rng.binomial(decisions, rate).astype(float)
    return rewards, decisions.astype(float), held


def per_decision(rewards, decisions, held):
    """The same data with every decision its own row (no clustering): the 0/1 rewards of each group."""
    rows = [(int(rewards[g].sum()), int(decisions[g].sum()), flag) for g, flag in ((~held, False), (held, True))]
    return (
        np.concatenate([np.r_[np.ones(ones), np.zeros(n - ones)] for ones, n, _ in rows]),
        np.ones(sum(n for _, n, _ in rows)),
        np.concatenate([np.full(n, flag) for _, n, flag in rows]),
    )


def test_the_interval_covers_the_true_difference_in_at_least_93_percent_of_200_simulations():
    """Clustered by subject, the 95% interval covers; treating decisions as independent, it is too narrow."""
    rng = np.random.default_rng(0)
    covered = naive_covered = 0
    for _ in range(200):
        data = simulate(rng)
        estimate, naive = lift(*data), lift(*per_decision(*data))
        assert naive.difference == pytest.approx(estimate.difference)
        covered += estimate.ci[0] <= TRUE_DIFFERENCE <= estimate.ci[1]
        naive_covered += naive.ci[0] <= TRUE_DIFFERENCE <= naive.ci[1]
    assert covered >= 186
    assert naive_covered < 170


def test_the_estimate_is_the_per_decision_averages_and_their_difference():
    estimate = lift(
        np.array([1.0, 0.0, 3.0, 1.0]), np.array([2.0, 2.0, 4.0, 1.0]), np.array([False, False, True, True])
    )
    assert (estimate.treatment, estimate.holdout) == (0.25, 0.8)
    assert estimate.difference == pytest.approx(-0.55)
    assert (estimate.treatment_subjects, estimate.holdout_subjects) == (2, 2)
    assert estimate.ci[0] < estimate.difference < estimate.ci[1]


def test_one_subject_in_a_group_has_no_interval_and_shapes_must_match():
    estimate = lift(np.array([1.0, 0.0, 3.0]), np.array([2.0, 2.0, 4.0]), np.array([False, False, True]))
    assert estimate.difference == 0.25 - 0.75 and all(math.isnan(x) for x in estimate.ci)
    with pytest.raises(ValueError, match="one shape"):
        lift(np.zeros(3), np.ones(2), np.zeros(3, dtype=bool))


def test_the_running_state_keeps_a_bounded_hash_sample_of_whole_subjects_and_round_trips():
    state = LiftState(max_subjects=200)
    rng = np.random.default_rng(3)
    truth = {}
    for i in range(3000):
        subject = f"s{i}"
        held = in_holdout("h", subject, 0.3)
        for _ in range(int(rng.integers(1, 4))):
            reward = float(rng.random() < (0.2 if held else 0.3))
            state.add(subject_key("h", subject), held, reward)
            row = truth.setdefault(subject, [held, 0.0, 0])
            row[1] += reward
            row[2] += 1
    assert len(state.encode()) <= 15 + 21 * 200
    kept = [s for s in truth if subject_key("h", s) >> (64 - state.shift) == 0]
    assert 100 <= len(kept) <= 200 and state.shift >= 4
    rows = np.array([truth[s] for s in kept], dtype=float)  # every decision of each kept subject is counted
    expected = lift(rows[:, 1], rows[:, 2], rows[:, 0].astype(bool))
    estimate = state.lift()
    assert (estimate.treatment, estimate.holdout) == pytest.approx((expected.treatment, expected.holdout))
    scale = 1 << state.shift
    assert estimate.holdout_subjects == expected.holdout_subjects * scale
    assert estimate.treatment_subjects + estimate.holdout_subjects == pytest.approx(3000, rel=0.3)
    back = LiftState.decode(state.encode())
    assert (back.shift, back.lift()) == (state.shift, estimate)


def joined(i, holdout, reward, subject=None, fraction=0.4):
    decision = records_pb2.DecisionRecord(
        loop="h",
        event_id=f"e{i}",
        subject_id=f"s{i % 7}" if subject is None else subject,
        holdout=holdout,
        config=LoopConfig(holdout_fraction=fraction),
    )
    return Entry(f"e{i}", records_pb2.JoinedEvent(decision=decision, reward=reward).SerializeToString())


def test_a_restarted_counter_counts_each_joined_event_once(tmp_path):
    store = open_store(str(tmp_path / "store"))
    try:
        events = [joined(i, i % 7 < 3, float(i % 2)) for i in range(40)]
        events += [joined(40, False, 5.0, subject=""), joined(41, False, 5.0, fraction=0.0)]
        store.log.append(Stream.JOINED, "h", events[:20])
        first = LiftCounter(store.log, "h")
        assert first.step() == 20
        first.save()
        store.log.append(Stream.JOINED, "h", events[20:])
        assert first.step() == 22  # counted, not saved: lost in a crash
        restarted = LiftCounter(store.log, "h")
        assert restarted.step() == 22
        assert restarted.state.lift() == first.state.lift()
        assert (restarted.state.lift().treatment_subjects, restarted.state.lift().holdout_subjects) == (4, 3)
        # left out: the decision without a subject, and the one made while the loop had no holdout
        assert restarted.state.lift().treatment == pytest.approx(12 / 24)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.skipif(nats_server_binary() is None, reason="no nats-server executable")
def test_a_full_state_fits_a_nats_cursor(tmp_path):
    """At MAX_SUBJECTS the saved state stays under NATS's default message size (1 MB)."""
    state = LiftState(seq=7)
    for i in range(MAX_SUBJECTS):
        state.add(subject_key("h", f"s{i}"), i % 5 == 0, float(i % 3))
    assert state.shift == 0
    with running_nats(tmp_path / "nats") as url, open_store(url, prefix="lift") as store:
        store.log.set_cursor(cursor_name("h", "lift"), state.encode())
        back = LiftState.saved(store.log, "h")
    assert (back.seq, back.lift()) == (7, state.lift())
    assert back.lift().treatment_subjects + back.lift().holdout_subjects == MAX_SUBJECTS
