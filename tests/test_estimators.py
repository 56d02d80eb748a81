"""Off-policy estimators: hand-computed vectors, a cross-check against vw-estimators, intervals, invalid input."""

import math

import numpy as np
import pytest
from estimators.bandits import clopper_pearson as vw_cp
from estimators.bandits import gaussian as vw_gaussian
from estimators.bandits import ips as vw_ips
from estimators.bandits import snips as vw_snips
from estimators.math import clopper_pearson as vw_clopper_pearson

from nextbest.policies.ope.estimators import (
    DM,
    DR,
    IPS,
    SNIPS,
    BanditFeedback,
    ClippedIPS,
    clopper_pearson,
    cross_fit,
    overlap,
    pad,
)
from nextbest.server import estimates
from nextbest.v1 import admin_pb2, records_pb2

Z = 1.959963984540054

# Four events by hand: w = π/μ = [2, 2, 0, 0.5], w·r = [2, 0, 0, 0.25].
REWARD = [1.0, 0.0, 1.0, 0.5]
LOGGED = [0.5, 0.25, 0.2, 1.0]
CHOSEN = [0, 1, 1, 2]
PMF = pad([[1.0, 0.0], [0.25, 0.5, 0.25], [1.0, 0.0], [0.5, 0.0, 0.5]])
REWARD_HAT = pad([[0.8, 0.2], [0.4, 0.2, 0.6], [0.5, 0.9], [0.1, 0.3, 0.7]])


def hand_feedback():
    return BanditFeedback(REWARD, LOGGED, chosen=CHOSEN, target_pmf=PMF, reward_hat=REWARD_HAT)


@pytest.mark.parametrize(
    "estimator, value, half_width",
    [
        # IPS = 2.25 / 4; deviations from it [1.4375, -.5625, -.5625, -.3125], squares sum 2.796875.
        (IPS(), 0.5625, Z * math.sqrt(2.796875 * 4 / 3) / 4),
        # SNIPS = 2.25 / 4.5; w·r − V·w = [1, -1, 0, 0].
        (SNIPS(), 0.5, Z * math.sqrt(2 * 4 / 3) / 4.5),
        # weights clipped at 1: [1, 1, 0, 0.5], terms [1, 0, 0, 0.25].
        (ClippedIPS(1.0), 0.3125, Z * math.sqrt((0.6875**2 + 2 * 0.3125**2 + 0.0625**2) * 4 / 3) / 4),
        # q̂^π = [0.8, 0.35, 0.5, 0.4].
        (DM(), 0.5125, Z * math.sqrt((0.2875**2 + 0.1625**2 + 0.0125**2 + 0.1125**2) * 4 / 3) / 4),
        # residuals r − q̂(a) = [0.2, -0.2, 0.1, -0.2]; terms q̂^π + w·residual = [1.2, -0.05, 0.5, 0.3].
        (DR(), 0.4875, Z * math.sqrt((0.7125**2 + 0.5375**2 + 0.0125**2 + 0.1875**2) * 4 / 3) / 4),
    ],
)
def test_hand_computed_values_and_gaussian_intervals(estimator, value, half_width):
    e = estimator.estimate(hand_feedback())
    assert e.value == pytest.approx(value)
    assert e.ci == pytest.approx((value - half_width, value + half_width))
    assert (e.estimator, e.interval, e.events) == (estimator.name, "gaussian", 4)
    # ESS = (Σw)² / Σw² = 4.5² / 8.25; the largest weight carries 2 / 4.5 of the total.
    assert (e.ess, e.max_weight) == (pytest.approx(4.5**2 / 8.25), 2.0)
    assert any("44% of the total weight" in w for w in e.warnings)


def random_feedback(n=500, seed=7, max_weight_one=False):
    rng = np.random.default_rng(seed)
    logged = rng.uniform(0.05, 1.0, n)
    target = rng.uniform(0.0, 1.0, n)
    if max_weight_one:
        target = np.minimum(target, logged)
        target[0] = logged[0]
    reward = (rng.random(n) < 0.4).astype(float)
    return logged, target, reward


def test_ips_snips_and_gaussian_interval_match_vw_estimators():
    logged, target, reward = random_feedback()
    ips, snips, gauss = vw_ips.Estimator(), vw_snips.Estimator(), vw_gaussian.Interval()
    for p_log, r, p_pred in zip(logged, reward, target, strict=True):
        for reference in (ips, snips, gauss):
            reference.add_example(p_log, r, p_pred)
    feedback = BanditFeedback(reward, logged, target)
    assert IPS().estimate(feedback).value == pytest.approx(ips.get(), rel=1e-12)
    assert SNIPS().estimate(feedback).value == pytest.approx(snips.get(), rel=1e-12)
    assert IPS().estimate(feedback).ci == pytest.approx(tuple(gauss.get(0.05)), rel=1e-9)


def test_the_live_estimate_from_running_sums_is_the_offline_snips_estimate():
    logged, target, reward = random_feedback()
    offline = SNIPS().estimate(BanditFeedback(reward, logged, target))
    sums = records_pb2.EstimateSums()
    for p_log, r, p_pred in zip(logged, reward, target, strict=True):
        estimates.add(sums, p_pred / p_log, r)
    live = estimates.estimate("shadow", sums)
    assert live.events == offline.events == 500
    assert live.value == pytest.approx(offline.value, rel=1e-12)
    assert (live.ci_low, live.ci_high) == pytest.approx(offline.ci, rel=1e-12)
    assert live.effective_sample_size == pytest.approx(offline.ess, rel=1e-12)
    assert SNIPS.from_sums(sums).ci == pytest.approx(offline.ci, rel=1e-12)


def test_a_live_estimate_without_weight_has_only_counts_and_one_event_has_no_interval():
    never = records_pb2.EstimateSums(skipped=3)
    estimates.add(never, 0.0, 1.0)
    assert estimates.estimate("never", never) == admin_pb2.PolicyEstimate(spec="never", events=1, skipped_events=3)
    once = records_pb2.EstimateSums()
    estimates.add(once, 2.0, 0.5)
    one = estimates.estimate("once", once, live=True)
    assert (one.value, one.effective_sample_size, one.live) == (0.5, 1.0, True)
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high)  # as offline: no interval from one event
    assert all(math.isnan(c) for c in SNIPS().estimate(BanditFeedback([0.5], [0.5], [1.0])).ci)


def test_clopper_pearson_matches_vw_estimators_where_both_count_n_trials():
    # vw-estimators scales by the largest weight too, but counts n / max w trials: the same when max w = 1.
    logged, target, reward = random_feedback(max_weight_one=True)
    cp = vw_cp.Interval()
    for p_log, r, p_pred in zip(logged, reward, target, strict=True):
        cp.add_example(p_log, r, p_pred)
    estimate = IPS().estimate(BanditFeedback(reward, logged, target), "clopper-pearson")
    assert estimate.ci == pytest.approx(tuple(cp.get(0.05)), rel=1e-9)
    for successes, trials in ((0, 10), (3.5, 10), (10, 10), (41.25, 377.5)):
        assert clopper_pearson(successes, trials, 0.1) == pytest.approx(vw_clopper_pearson(successes, trials, 0.1))


def test_clopper_pearson_is_exact_for_a_deterministic_target_and_binary_rewards():
    # 4 uniformly logged actions, the target always picks action 0: scaled terms w·r / 4 are 0 or 1.
    rng = np.random.default_rng(3)
    chosen = rng.integers(0, 4, 400)
    reward = (rng.random(400) < 0.6).astype(float)
    target = (chosen == 0).astype(float)
    estimate = IPS().estimate(BanditFeedback(reward, np.full(400, 0.25), target), "clopper-pearson", alpha=0.1)
    hits = int(((chosen == 0) & (reward == 1)).sum())
    lo, hi = clopper_pearson(hits, 400, 0.1)
    assert estimate.value == pytest.approx(4 * hits / 400)
    assert estimate.ci == pytest.approx((4 * lo, min(4 * hi, 1.0)))


@pytest.mark.parametrize("estimator", [IPS(), SNIPS(), ClippedIPS(3.0), DM(), DR()])
def test_every_interval_contains_the_value(estimator):
    logged, target, reward = random_feedback(n=300)
    pmf = np.stack([target, 1 - target], axis=1)
    reward_hat = np.clip(pmf[:, ::-1] * 0.5 + 0.2, 0, 1)
    feedback = BanditFeedback(reward, logged, chosen=np.zeros(300, int), target_pmf=pmf, reward_hat=reward_hat)
    for interval in ("gaussian", "clopper-pearson", "bootstrap"):
        e = estimator.estimate(feedback, interval, samples=300)
        assert e.ci[0] < e.value < e.ci[1], interval


def test_bootstrap_is_seeded_and_close_to_the_normal_approximation():
    logged, target, reward = random_feedback(n=2000)
    feedback = BanditFeedback(reward, logged, target)
    first = SNIPS().estimate(feedback, "bootstrap", seed=1)
    assert SNIPS().estimate(feedback, "bootstrap", seed=1) == first
    assert SNIPS().estimate(feedback, "bootstrap", seed=2).ci != first.ci
    gaussian = SNIPS().estimate(feedback).ci
    assert first.ci == pytest.approx(gaussian, abs=0.1 * (gaussian[1] - gaussian[0]))


def test_overlap_warns_about_few_effective_events_and_a_dominating_weight():
    ess, top, warnings = overlap(np.array([1.0] * 50 + [0.0] * 949 + [200.0]))
    assert top == 200.0 and ess == pytest.approx(250**2 / 40050)
    assert len(warnings) == 2 and "effective sample size 2 is 0.2% of 1000 events" in warnings[0]
    assert overlap(np.ones(100))[2] == ()
    _, _, never = overlap(np.zeros(10))
    assert "never chooses a logged action" in never[0]
    none = SNIPS().estimate(BanditFeedback([1.0, 0.0], [0.5, 0.5], [0.0, 0.0]))
    assert math.isnan(none.value) and all(math.isnan(c) for c in none.ci)


def test_cross_fitting_never_predicts_an_event_from_its_own_reward():
    rng = np.random.default_rng(0)
    features = [np.eye(3)[rng.permutation(3)] for _ in range(60)]
    chosen = rng.integers(0, 3, 60)
    reward = rng.random(60)
    before = cross_fit(features, chosen, reward, folds=4)
    changed = reward.copy()
    changed[17] = 1 - reward[17]
    after = cross_fit(features, chosen, changed, folds=4)
    assert np.array_equal(before[17], after[17])
    assert not np.array_equal(before, after)


def test_cross_fitted_ridge_recovers_action_means():
    rng = np.random.default_rng(1)
    means = np.array([0.2, 0.5, 0.9])
    features = [np.eye(3)] * 3000
    chosen = rng.integers(0, 3, 3000)
    reward = np.clip(means[chosen] + rng.normal(0, 0.1, 3000), 0, 1)
    q = cross_fit(features, chosen, reward, seed=4)
    assert q.shape == (3000, 3)
    assert q.mean(axis=0) == pytest.approx(means, abs=0.02)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reward=[], logged_probability=[], target_probability=[]), "no events"),
        (dict(reward=1.0, logged_probability=[1], target_probability=[1]), "reward has shape"),
        (dict(reward=[1, 0], logged_probability=[0.5], target_probability=[0.5, 0.5]), "logged_probability has shape"),
        (dict(reward=[1, 0], logged_probability=[0.5, 0.5], target_probability=[0.5]), "target_probability has shape"),
        (dict(reward=[1, 0], logged_probability=[0.5, 0], target_probability=[1, 1]), r"must be in \(0, 1\]"),
        (dict(reward=[1, 0], logged_probability=[-0.5, 1], target_probability=[1, 1]), r"\(event 0: -0.5\)"),
        (dict(reward=[1, 0], logged_probability=[0.5, 1.5], target_probability=[1, 1]), r"must be in \(0, 1\]"),
        (dict(reward=[1, 0], logged_probability=[0.5, 1], target_probability=[1, -0.1]), r"must be in \[0, 1\]"),
        (dict(reward=[1, math.nan], logged_probability=[0.5, 1], target_probability=[1, 1]), "reward must be finite"),
        (dict(reward=[math.inf, 0], logged_probability=[0.5, 1], target_probability=[1, 1]), "reward must be finite"),
        (dict(reward=[1, 0], logged_probability=[0.5, 1]), "give either target_probability or target_pmf"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[[1.0]]), "target_pmf needs chosen"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[[0.5, 0.4]], chosen=[0]), "sum to 1"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[[1.5, -0.5]], chosen=[0]), "non-negative"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[[0.5, 0.5]], chosen=[2]), r"index in \[0, 2\)"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[[0.5, 0.5]], chosen=[0.0]), "integer indices"),
        (dict(reward=[1], logged_probability=[1], target_pmf=[0.5, 0.5], chosen=[0]), "target_pmf has shape"),
        (
            dict(reward=[1], logged_probability=[1], target_pmf=[[0.5, 0.5]], chosen=[0], reward_hat=[[1.0]]),
            "reward_hat has shape",
        ),
        (
            dict(reward=[1], logged_probability=[1], target_pmf=[[1.0]], chosen=[0], reward_hat=[[math.nan]]),
            "reward_hat must be finite",
        ),
        (dict(reward=[1], logged_probability=[1], target_probability=[1], reward_hat=[[0.0]]), "needs target_pmf"),
    ],
)
def test_invalid_feedback_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BanditFeedback(**kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f: IPS().estimate(f, "wald"), "unknown interval 'wald'"),
        (lambda f: IPS().estimate(f, alpha=0), r"alpha must be in \(0, 1\)"),
        (lambda f: IPS().estimate(f, "bootstrap", samples=0), "samples must be at least 1"),
        (lambda f: DM().estimate(f), "needs target_pmf, chosen and reward_hat"),
        (lambda f: DR().estimate(f), "needs target_pmf, chosen and reward_hat"),
        (lambda f: IPS().estimate(BanditFeedback([2.0, 0], [1, 1], [1, 1]), "clopper-pearson"), r"rewards .* in \[0"),
        (lambda f: ClippedIPS(0), "max_weight must be positive"),
        (lambda f: cross_fit([np.eye(2)] * 3, [0, 1, 0], [1, 0, 1], folds=4), "2 <= folds <= events"),
        (lambda f: cross_fit([np.eye(2)] * 3, [0, 1], [1, 0, 1]), "differ in length"),
    ],
)
def test_invalid_estimator_calls_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(BanditFeedback([1.0, 0.0], [0.5, 0.5], [1.0, 0.0]))
