"""The pinball world: deterministic per seed, the truth it reports is right, and bandits beat a script through
the real service."""

import math

import numpy as np
import pytest
import scipy.stats

from benchmarks.inprocess import in_process
from benchmarks.learning import CALLER, JOURNEY_RULE, SUBJECTS, history, history_loops
from nextbest.server.config import DEFAULT_POLICY
from nextbest.sim import features
from nextbest.sim.arms import OracleArm, ServiceArm
from nextbest.sim.catalog import APP_CHANNELS, BUSINESS_DAYPARTS, CHANNELS, CONSENTED, NOTHING
from nextbest.sim.compare import REWARD_WAIT_SECONDS, through_service
from nextbest.sim.config import WorldConfig
from nextbest.sim.journey import CONTACT_POLICY, JOURNEY_SPEC, KEPT_JOURNEY_SPEC, SCRIPT_SPEC
from nextbest.sim.population import Population
from nextbest.sim.simulate import DAY, EPOCH, simulate
from nextbest.sim.world import World
from nextbest.testing import FakeClock, running_server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SMALL = WorldConfig(customers=30, days=6)
NEVER = 2.0  # a drift event at twice the run's length never happens
# the journey capping on the caller's count, random and the server's default policy, with caller-computed history
POLICIES = {"journey": JOURNEY_SPEC, "random": "random", "vw-default": ""}

# One student, no individual taste, no daypart/device/stage effects: the expected rewards are easy sums.
TINY = WorldConfig(
    customers=1,
    days=3,
    individual_sd=0.0,
    drift_sd=0.0,
    click_base=0.0,
    buy_base=0.0,
    channel_taste={"student": {"email": math.log(3), "sms": -math.log(3), "web": -9, "inapp": -9, "call": -9}},
    offer_taste={},
    daypart_effect={},
    device_effect={},
    stage_click={},
    stage_offer={},
    offer_value={"discount": 1.0, "new-arrivals": 0.5, "loyalty": 0.5, "bundle": 0.5},
    channel_cost={"sms": 0.03},
    segment_share={"student": 1},
    app_share={"ios": 1, "android": 1, "desktop": 1},
    consent_share={"email": 1, "push": 1, "sms": 1, "call": 1},
    new_share=1.0,
    shift_at=NEVER,
    launch_at=NEVER,
    withdraw_at=NEVER,
)


def test_a_world_is_a_function_of_its_seed():
    policies = {name: spec or DEFAULT_POLICY for name, spec in POLICIES.items()}
    first, again, other = (in_process(Population(SMALL, seed), policies) for seed in (7, 7, 8))
    for a, b in zip(first.arms, again.arms, strict=True):
        assert (a.action, a.expected, a.reward) == (b.action, b.expected, b.reward)
    assert first.arm("random").action != other.arm("random").action
    occasions = Population(SMALL, 7).occasions()
    assert occasions == Population(SMALL, 7).occasions() != Population(SMALL, 8).occasions()


def test_the_oracle_on_a_tiny_world_checked_by_hand():
    population = Population(TINY, 1)
    world = World(population)
    first, second = population.occasion(0), population.occasion(1)
    moment = world.observe(first)
    expected = dict(zip(moment.action_ids, moment.expected, strict=True))
    # P(click) = sigmoid(taste): email 3/4, push 1/2, sms 1/4; P(buy | click) = sigmoid(0) = 1/2
    assert math.isclose(expected["email-discount"], 0.75 * (0.1 + 0.5 * 1.0))  # 0.45
    assert math.isclose(expected["email-new-arrivals"], 0.75 * (0.1 + 0.5 * 0.5))  # 0.2625
    assert math.isclose(expected["push-discount"], 0.5 * (0.1 + 0.5 * 1.0))  # 0.30
    assert math.isclose(expected["sms-discount"], 0.25 * (0.1 + 0.5 * 1.0) - 0.03)  # 0.12
    assert expected[NOTHING] == 0.0
    assert "email-loyalty" in moment.excluded  # loyalty is for active customers; this one is new
    assert OracleArm().decide(moment, "e0", 0.0) == "email-discount" and moment.best == expected["email-discount"]

    world.respond(moment, moment.action_ids.index("email-discount"))
    # next time: the email and the discount have tired by 2^(-age/1 day), and the email was ignored unless clicked
    age = second.time - first.time
    fatigue = 2.0**-age
    u_click, _, _, e_delay, _ = first.draws
    ignored = 0 if u_click < 0.75 and e_delay * 3.0 / 24.0 <= age else 1
    z = math.log(3) - 0.25 * fatigue - 0.1 * ignored - 0.1 * fatigue - 0.05 * fatigue
    p = 1.0 / (1.0 + math.exp(-z))
    unsubscribe = min(0.2, 0.01 * (fatigue + ignored))
    later = world.observe(second)
    got = later.expected[later.action_ids.index("email-discount")]
    assert math.isclose(got, p * (0.1 + 0.5 * 1.0) - (1 - p) * unsubscribe * 0.5)


def _excluded_by_the_rules(m):
    out = set()
    for i, action_id in enumerate(m.action_ids[:-1]):
        channel, offer = CHANNELS[i // len(m.offers)], m.offers[i % len(m.offers)]
        if (
            (channel in CONSENTED and channel not in m.consent)
            or (channel in APP_CHANNELS and not m.customer.has_app)
            or (channel == "call" and m.daypart not in BUSINESS_DAYPARTS)
            or (offer == "loyalty" and m.stage != "active")
        ):
            out.add(action_id)
    return out


def test_consent_eligibility_and_drift_decide_the_candidates():
    config = WorldConfig(customers=60, days=10)
    population = Population(config, 3)
    world = World(population)
    rng = np.random.default_rng(0)
    for occasion in population.occasions():
        m = world.observe(occasion)
        assert m.excluded == _excluded_by_the_rules(m)
        assert m.consent <= m.customer.consent
        assert ("bundle" in m.offers) == (occasion.time >= config.launch_at * config.days)
        if occasion.time >= config.withdraw_at * config.days:
            assert "sms" not in m.consent
        world.respond(m, int(rng.choice(np.flatnonzero(m.eligible))))


def test_rewards_come_late_and_average_to_the_expected_reward():
    population = Population(WorldConfig(customers=200, days=10), 5)
    world = World(population)
    rng = np.random.default_rng(1)
    gaps, late, surprise = [], [], []
    for occasion in population.occasions():
        m = world.observe(occasion)
        index = int(rng.choice(np.flatnonzero(m.eligible)))
        rewards = world.respond(m, index)
        surprise.append(sum(r.value for r in rewards) - m.expected[index])
        times = {r.reward_id: r.time for r in rewards}
        assert all(t >= occasion.time for t in times.values())
        if "purchase" in times:
            gaps.append(times["purchase"] - times["click"])
            late.append(times["purchase"] - occasion.time > REWARD_WAIT_SECONDS / DAY)
    assert np.median(gaps) > 0.25  # purchases come hours after the click...
    assert 0.02 < np.mean(late) < 0.3  # ...and some after the service's window: it never learns of them
    assert abs(np.mean(surprise)) < 3 * np.std(surprise) / math.sqrt(len(surprise))


def _lower_bound(differences: np.ndarray, batches: int) -> float:
    """95% lower confidence bound of the mean of `differences`, from the means of contiguous batches
    (decisions of one run correlate: the same customers, the same model versions)."""
    means = np.array([d.mean() for d in np.array_split(differences, batches)])
    t = scipy.stats.t.ppf(0.975, batches - 1)
    return float(means.mean() - t * means.std(ddof=1) / math.sqrt(batches))


def test_the_default_policy_beats_random_and_the_journey_through_the_service():
    """Two short worlds (30 days, ~1,800 decisions each), through a real service; the second half of each."""
    gains: dict[str, list[np.ndarray]] = {"journey": [], "random": []}
    for seed in (1, 2):
        run, stats = through_service(Population(WorldConfig(customers=60, days=30), seed), POLICIES)
        assert {name: s.decisions for name, s in stats.items()} == {name: len(run.arm(name).time) for name in POLICIES}
        half = len(run.arm("random").time) // 2
        bandit = np.asarray(run.arm("vw-default").expected[half:])
        for other, pooled in gains.items():
            pooled.append(bandit - np.asarray(run.arm(other).expected[half:]))
    for other, pooled in gains.items():
        differences = np.concatenate(pooled)
        bound = _lower_bound(differences, batches=20)
        print(f"vw-default - {other}: mean {differences.mean():.3f}, 95% lower bound {bound:.3f}")
        assert bound > 0.015, other  # about 8% of the journey's expected reward per decision


def test_through_subject_ids_the_service_keeps_the_history_and_the_weekly_cap_is_a_contact_rule(tmp_path):
    """The journey scripted without its cap, under the cap as the store's contact rule, chooses exactly as the
    journey capping on the caller's own count, and so does the journey capping on the service's count (its history
    feature); a bandit through subject ids sends no history and learns."""
    population = Population(WorldConfig(customers=20, days=10), 3)
    moment = World(population).observe(population.occasion(0))
    assert set(features.context(moment, history=False)) == {"user", "time"}
    assert "last" not in features.context(moment, history=False)["user"]
    assert all(set(a.features) <= {"offer", "fit"} for a in features.actions(moment, history=False))
    clock = FakeClock(EPOCH)
    with (
        running_server(tmp_path / "a", clock=clock) as (_, plain),
        running_server(tmp_path / "b", clock=clock) as (
            _,
            capped,
        ),
    ):
        capped.set_contact_policy(CONTACT_POLICY)
        journey = ServiceArm.create(plain, "journey", JOURNEY_SPEC, REWARD_WAIT_SECONDS, 0.05)
        ruled = ServiceArm.create(capped, "journey-rule", SCRIPT_SPEC, REWARD_WAIT_SECONDS, 0.05, subjects=True)
        bandit = ServiceArm.create(capped, "vw", DEFAULT_POLICY, REWARD_WAIT_SECONDS, 0.05, subjects=True)
        kept = ServiceArm.create(plain, "journey-kept", KEPT_JOURNEY_SPEC, REWARD_WAIT_SECONDS, 0.05, subjects=True)
        assert ruled.subject_id(moment) == "journey-rule/" + str(moment.customer.index)
        run = simulate(population, [journey, ruled, bandit, kept], clock=clock)
        stats = {name: c.stats(name) for c, name in ((plain, "journey"), (capped, "journey-rule"), (capped, "vw"))}
    capped_by_the_script = [f"3-{k}" for k, chosen in enumerate(run.arm("journey").action) if chosen == NOTHING]
    assert 20 < len(capped_by_the_script) < len(population) / 2
    assert run.arm("journey-rule").action == run.arm("journey").action
    assert run.arm("journey-kept").action == run.arm("journey").action  # capping on the service's count
    assert ruled.suppressed == capped_by_the_script  # the rule removed candidates exactly when the script capped
    assert journey.suppressed == []
    assert [(r.rule, r.suppressed > 0) for r in stats["journey-rule"].suppressed] == [("weekly", True)]
    # the bandit under the same store-wide rule: never more than the cap in any 7 days per customer
    assert bandit.suppressed
    contacts: dict[int, list[float]] = {}
    for k, chosen in enumerate(run.arm("vw").action):
        if chosen != NOTHING:
            contacts.setdefault(population.occasion(k).customer, []).append(population.occasion(k).time)
    for times in contacts.values():
        assert all(sum(0 <= t - s < 7 for s in times) <= 6 for t in times)
    assert stats["vw"].decisions == len(population) and stats["vw"].joined > 0


def test_the_history_benchmark_measures_both_histories_against_the_journey_under_its_rule():
    figures = history(seed=4, seeds=1, world=WorldConfig(customers=10, days=4))
    assert set(figures["of_oracle"]) == set(history_loops()) == {CALLER, SUBJECTS, JOURNEY_RULE}
    assert all(0 < share["all"] < 1 for share in figures["of_oracle"].values())
    for key in ("subjects_vs_journey", "caller_vs_journey", "subjects_vs_caller"):
        d = figures[key]
        assert d["ci_low"] < d["difference"] < d["ci_high"]
