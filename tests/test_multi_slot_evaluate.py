"""Off-policy evaluation of multi-slot (CCB) logs: VW's CCB DSJSON in, per-slot and total estimates out.

The files under data/vw/ccb come from Vowpal Wabbit's test suite (see data/vw/README.md).
"""

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import vowpalwabbit

from nextbest.cli import main
from nextbest.policies.ope import dsjson, multislot
from nextbest.policies.ope.estimators import DR, BanditFeedback

CCB_DATA = Path(__file__).parent / "data" / "vw" / "ccb"
ACTIONS = ("x", "y", "z")
SLOTS = ("lead", "second")
# Planted mean reward by (slot, user segment, action): the lead slot prefers x for "a" and y for "b",
# the second slot prefers z.
MEANS = {
    ("lead", "a"): {"x": 0.8, "y": 0.2, "z": 0.1},
    ("lead", "b"): {"x": 0.1, "y": 0.7, "z": 0.2},
    ("second", "a"): {"x": 0.2, "y": 0.1, "z": 0.6},
    ("second", "b"): {"x": 0.1, "y": 0.3, "z": 0.7},
}
CCB_SPEC = "vw:--ccb_explore_adf --epsilon 0.05 -q ::"


def ccb_line(event_id, segment, outcomes, **fields):
    """A CCB DSJSON line over ACTIONS and SLOTS; `outcomes` are (chosen, probability, reward, eligible) per slot."""
    return json.dumps(
        {
            "EventId": event_id,
            **fields,
            "c": {
                "user": {"segment": segment},
                "_multi": [{"_tag": a, "item": {"kind": a}} for a in ACTIONS],
                "_slots": [{"_id": s, "slot": {"size": s}} for s in SLOTS[: len(outcomes)]],
            },
            "_outcomes": [
                {
                    "_id": s,
                    "_label_cost": -reward,
                    "_a": [chosen, *(a for a in eligible if a != chosen)],
                    "_p": [p, *[(1 - p) / max(len(eligible) - 1, 1)] * (len(eligible) - 1)],
                }
                for s, (chosen, p, reward, eligible) in zip(SLOTS, outcomes, strict=False)
            ],
        }
    )


def simulate(n, seed):
    """n CCB lines logged uniformly at random over each slot's eligible actions, rewards drawn from MEANS."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        segment = "ab"[rng.integers(2)]
        eligible, outcomes = list(range(3)), []
        for slot in SLOTS:
            chosen = int(rng.choice(eligible))
            reward = float(rng.random() < MEANS[slot, segment][ACTIONS[chosen]])
            outcomes.append((chosen, 1 / len(eligible), reward, list(eligible)))
            eligible = [a for a in eligible if a != chosen]
        lines.append(ccb_line(f"e{i}", segment, outcomes))
    return lines


def vw_learns(lines, args="--ccb_explore_adf"):
    """VW's own DSJSON parser reads and learns every line (raises on one it refuses)."""
    ws = vowpalwabbit.Workspace(f"{args} --dsjson --quiet")
    try:
        for text in lines:
            examples = ws.parse(text)
            ws.learn(examples)
            ws.finish_example(examples)
    finally:
        ws.finish()


# ---- reading VW's CCB DSJSON


def test_vws_ccb_lines_are_read_with_every_slot():
    events = list(dsjson.read_multi_slot(CCB_DATA / "ccb_data_excerpt.json"))
    assert [e.event_id for e in events] == ["0000000", "0000001", "0000007"]
    first = events[0]
    assert first.example.action_ids == ["Mocha", "Latte", "Cappuccino", "Americano"]
    assert [s.id for s in first.slots] == ["MainArticle", "SideBar"]
    main, side = first.slots
    assert (main.chosen_index, main.probability, main.reward, main.eligible) == (3, 0.25, 0.0, (0, 1, 2, 3))
    assert main.pmf == (0.25, 0.25, 0.25, 0.25)
    # Americano went to the main article: the side bar chose among the other three.
    assert (side.chosen_index, side.probability, side.eligible) == (0, 0.33333334, (0, 1, 2))
    assert side.pmf == (0.33333334, 0.33333334, 0.33333334, 0.0)
    assert side.features["sj"].tokens == ("sizeMedium", "positionRight")
    assert events[1].slots[1].reward == 0.4 and events[1].slots[1].eligible == (0, 2, 3)
    assert [s.id for s in events[2].slots] == ["slot_0"] and events[2].slots[0].reward == 0.42


def test_slot_ids_default_to_positions_and_pdrop_weighs_the_first_slot_once():
    (plain,) = dsjson.read_multi_slot(CCB_DATA / "ccb_simple.json")
    (dropped,) = dsjson.read_multi_slot(CCB_DATA / "ccb_simple_pdrop.json")
    assert [s.probability for s in plain.slots] == [0.5, 0.5]
    assert dropped.slots[0].probability == pytest.approx(0.5 * (1 - 0.9))
    assert dropped.slots[1].probability == 0.5
    no_ids = json.loads(ccb_line("e", "a", [(0, 1 / 3, 1.0, [0, 1, 2]), (1, 0.5, 0.0, [1, 2])]))
    for item in [*no_ids["c"]["_slots"], *no_ids["_outcomes"]]:
        del item["_id"]
    (event,) = dsjson.read_multi_slot([json.dumps(no_ids)])
    assert [s.id for s in event.slots] == ["0", "1"]


def test_included_actions_and_skip_learn_are_read():
    obj = json.loads(ccb_line("e", "a", [(2, 0.5, 1.0, [1, 2]), (0, 1.0, 0.0, [0])], _skipLearn=True))
    obj["c"]["_slots"][0]["_inc"] = [1, 2]
    obj["c"]["_slots"][1]["_inc"] = [0, 2]
    (event,) = dsjson.read_multi_slot([json.dumps(obj)])
    assert [s.eligible for s in event.slots] == [(1, 2), (0,)]
    assert event.slots[0].pmf == (0.0, 0.5, 0.5)
    assert event.skip_learn
    vw_learns([json.dumps(obj)])


def test_lines_written_by_the_tests_are_vw_valid():
    vw_learns(simulate(20, seed=1))
    vw_learns((CCB_DATA / "ccb_data_excerpt.json").read_text().splitlines())


GOOD = ccb_line("e", "a", [(0, 1 / 3, 1.0, [0, 1, 2]), (1, 0.5, 0.0, [1, 2])])


def bad(edit):
    obj = json.loads(GOOD)
    edit(obj)
    return json.dumps(obj)


BAD = [
    ("not json", "not JSON"),
    (bad(lambda o: o["c"].pop("_multi")), "no actions: the context 'c' must hold a non-empty '_multi' list"),
    (bad(lambda o: o["c"].update(_slots=[])), "no slots: the context 'c' must hold a non-empty '_slots' list"),
    (bad(lambda o: o.pop("_outcomes")), "_outcomes must be a list with one outcome per slot"),
    (bad(lambda o: o["_outcomes"].pop()), "_outcomes must be a list with one outcome per slot"),
    (bad(lambda o: o["c"]["_slots"].__setitem__(0, 3)), r"_slots\[0\]: a slot must be an object"),
    (bad(lambda o: o["_outcomes"].__setitem__(1, [])), r"_outcomes\[1\]: an outcome must be an object"),
    (bad(lambda o: o["c"]["_slots"][0].update(_id=7)), r"_slots\[0\]._id must be a string"),
    (bad(lambda o: o["_outcomes"][1].update(_id="lead")), r"_outcomes\[1\]._id 'lead' is not the slot's _id"),
    (bad(lambda o: o["c"]["_slots"][1].update(_id="lead") or o["_outcomes"][1].update(_id="lead")), "two slots"),
    (bad(lambda o: o["_outcomes"][0].pop("_a")), r"_outcomes\[0\]._a must be a non-empty list of action indices"),
    (bad(lambda o: o["_outcomes"][0].update(_a=[0, "1"])), r"_outcomes\[0\]._a must be a non-empty list"),
    (bad(lambda o: o["_outcomes"][0].update(_a=[3, 1, 2])), r"_outcomes\[0\]._a: action 3 is not one of the 3"),
    (bad(lambda o: o["_outcomes"][0].update(_a=[0, 0, 2])), r"_outcomes\[0\]._a names an action twice"),
    (bad(lambda o: o["_outcomes"][1].update(_a=[0, 2])), r"_outcomes\[1\]._a: action 0 was chosen for slot 0"),
    (bad(lambda o: o["c"]["_slots"][1].update(_inc=[2])), r"_outcomes\[1\]._a: action 1 is not in the slot's _inc"),
    (bad(lambda o: o["c"]["_slots"][1].update(_inc=[5])), r"_slots\[1\]._inc: action 5 is not one of the 3"),
    (bad(lambda o: o["_outcomes"][0].update(_p=[0.5])), r"_outcomes\[0\]._p must be a list of numbers as long as _a"),
    (bad(lambda o: o["_outcomes"][0].update(_p=[0, 0.5, 0.5])), r"_outcomes\[0\]._p: the chosen one's probability"),
    (bad(lambda o: o["_outcomes"][1].update(_label_cost="x")), r"_outcomes\[1\]._label_cost must be a number"),
    (bad(lambda o: o["_outcomes"][1].pop("_label_cost")), r"_outcomes\[1\]._label_cost is missing"),
    (bad(lambda o: o.update(pdrop=2)), r"pdrop must be in \[0, 1\]"),
    (bad(lambda o: o.update(EventId=3)), "EventId must be a string"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_ccb_line_raises_naming_its_line_and_field(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        list(dsjson.read_multi_slot([GOOD, text]))
    assert str(caught.value).startswith("line 2: ")


def test_each_reader_refuses_the_others_lines(tmp_path):
    with pytest.raises(ValueError, match=r"^line 1: _slots: a multi-slot \(CCB\) event"):
        list(dsjson.read([GOOD]))
    single = json.dumps({"_label_cost": 0, "_label_probability": 1, "_labelIndex": 0, "c": {"_multi": [{}]}})
    with pytest.raises(ValueError, match="^line 1: no slots"):
        list(dsjson.read_multi_slot([single]))
    ccb, plain = tmp_path / "ccb.json", tmp_path / "plain.json"
    ccb.write_text(f"\n{GOOD}\n")
    plain.write_text(single)
    assert dsjson.is_multi_slot(ccb) and not dsjson.is_multi_slot(plain)


# ---- replay


def test_a_ccb_candidate_scores_each_slot_after_the_logged_earlier_slots_before_learning():
    lines = simulate(200, seed=2)
    events = list(dsjson.read_multi_slot(lines))
    pmfs = multislot.replay(events, CCB_SPEC)
    for e, slot_pmfs in zip(events, pmfs, strict=True):
        for slot, pmf in zip(e.slots, slot_pmfs, strict=True):
            assert pmf.sum() == pytest.approx(1.0)
            assert np.flatnonzero(pmf).tolist() == list(slot.eligible)  # epsilon > 0: every eligible action
    # Trained: the lead slot prefers the planted best action of the event's segment.
    best = {"segmenta": 0, "segmentb": 1}
    late = [p[0].argmax() == best[e.example.context["user"].tokens[0]] for e, p in zip(events, pmfs, strict=True)]
    assert np.mean(late[100:]) > 0.8
    # An event's own reward never changes its score: flip the last event's rewards.
    flipped = json.loads(lines[-1])
    for outcome in flipped["_outcomes"]:
        outcome["_label_cost"] = -1.0 - outcome["_label_cost"]
    again = multislot.replay(list(dsjson.read_multi_slot([*lines[:-1], json.dumps(flipped)])), CCB_SPEC)
    assert all(np.array_equal(a, b) for a, b in zip(again[-1], pmfs[-1], strict=True))


def test_events_to_skip_are_scored_but_not_learned():
    lines = [json.dumps({**json.loads(text), "_skipLearn": True}) for text in simulate(50, seed=4)]
    for spec in (CCB_SPEC, "vw:--cb_explore_adf --epsilon 0.05"):
        pmfs = multislot.replay(list(dsjson.read_multi_slot(lines)), spec)
        assert len({tuple(np.round(p[0], 9)) for p in pmfs}) == 1  # the untrained policy's, every time


def test_a_single_slot_spec_runs_as_one_independent_policy_per_slot():
    events = tiny_events()
    pmfs = multislot.replay(events, "baseline")
    assert [p[0].tolist() for p in pmfs] == [[1.0, 0.0, 0.0]] * 4
    # The second slot's first eligible action: a was taken in events 0 and 2, b in 1, c in 3.
    assert [p[1].tolist() for p in pmfs] == [[0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_replays_in_worker_processes_give_the_same_report():
    events = list(dsjson.read_multi_slot(simulate(40, seed=5)))
    specs = [CCB_SPEC, "vw:--cb_explore_adf --epsilon 0.05"]
    assert multislot.evaluate(events, specs, jobs=2).to_dict() == multislot.evaluate(events, specs).to_dict()


def test_a_bad_candidate_spec_is_refused_before_replay():
    with pytest.raises(ValueError, match="VW option --data is not allowed"):
        multislot.evaluate(tiny_events(), ["vw:--ccb_explore_adf --data x"])
    with pytest.raises(ValueError, match="VW rejected the arguments"):
        multislot.evaluate(tiny_events(), ["vw:--ccb_explore_adf --cb_explore_adf --squarecb --cb_type ips"])
    with pytest.raises(ValueError, match="at least 2 events"):
        multislot.evaluate(tiny_events()[:1], [])


# ---- estimates per slot and in total

# Three actions a, b, c logged uniformly (1/3 for the first slot, 1/2 among the two left for the second):
# (first slot's action and reward, second slot's action and reward).
TINY = [((0, 1.0), (1, 1.0)), ((1, 0.0), (0, 1.0)), ((0, 1.0), (2, 0.0)), ((2, 0.0), (1, 0.0))]


def tiny_events():
    lines = []
    for i, ((a1, r1), (a2, r2)) in enumerate(TINY):
        rest = [a for a in range(3) if a != a1]
        lines.append(ccb_line(f"t{i}", "a", [(a1, 1 / 3, r1, [0, 1, 2]), (a2, 0.5, r2, rest)]))
    return list(dsjson.read_multi_slot(lines))


def test_per_slot_and_total_estimates_match_hand_computed_values():
    report = multislot.evaluate(tiny_events(), [], folds=2)
    z = NormalDist().inv_cdf(0.975)
    logged = report.policy("logged")
    assert [s.estimates["ips"].value for s in logged.slots] == [0.5, 0.5]
    assert logged.total["ips"].value == 1.0
    # baseline takes the first eligible action: a in the first slot (weight 3 on events 0 and 2), then b
    # where a is gone (the second slot's weight 2 on event 0, where a was logged first and b second;
    # event 1's a in the second slot has prefix weight 0).
    base = report.policy("baseline")
    first, second = base.slots
    assert first.estimates["ips"].value == pytest.approx(1.5)  # (3 + 3) / 4
    assert first.estimates["snips"].value == pytest.approx(1.0)
    se = math.sqrt(4 * 2.25 / 3) / 2  # the terms 3, 0, 3, 0
    assert first.estimates["ips"].ci == pytest.approx((1.5 - z * se, 1.5 + z * se))
    assert second.estimates["ips"].value == pytest.approx(1.5)  # 3 · 2 · 1 / 4
    assert second.estimates["snips"].value == pytest.approx(1.0)
    assert base.total["ips"].value == pytest.approx(3.0)  # per event: 3 + 6, 0, 3 + 0, 0
    se = math.sqrt((36 + 9 + 0 + 9) / 3) / 2
    assert base.total["ips"].ci == pytest.approx((3.0 - z * se, 3.0 + z * se))
    assert base.total["snips"].value == pytest.approx(2.0)
    # random is the logging policy: every weight 1.
    assert [s.estimates["ips"].value for s in report.policy("random").slots] == pytest.approx([0.5, 0.5])


def test_the_logged_row_leaves_out_the_holdout_events():
    lines = [ccb_line("h", "a", [(1, 1 / 3, 0.0, [0, 1, 2]), (0, 0.5, 0.0, [0, 2])], _holdout=True)]
    events = tiny_events() + list(dsjson.read_multi_slot(lines))
    assert events[-1].holdout
    report = multislot.evaluate(events, [], folds=2)
    assert [s.estimates["dr"].value for s in report.policy("logged").slots] == [0.5, 0.5]
    assert [s.events for s in report.policy("random").slots] == [5, 5]


def test_dr_weighs_the_reward_model_by_the_earlier_slots_weight():
    reward_hat = np.array([[0.5, 0.2], [0.4, 0.1]])
    feedback = BanditFeedback(
        [1.0, 0.0],
        [0.5, 0.25],
        chosen=[0, 1],
        target_pmf=np.array([[1.0, 0.0], [0.5, 0.5]]),
        reward_hat=reward_hat,
        prefix_weight=[2.0, 0.0],
    )
    t, d = DR().terms(feedback)
    # ρ (q̂^π + w (r − q̂(a))): 2 (0.5 + 2 · 0.5) and 0.
    assert t.tolist() == pytest.approx([3.0, 0.0]) and d.tolist() == [1.0, 1.0]
    assert feedback.weights.tolist() == [4.0, 0.0]


def truth(segment_share=0.5):
    """baseline's true value per slot: x in the lead slot, then y (the first action left) in the second."""
    lead = segment_share * MEANS["lead", "a"]["x"] + (1 - segment_share) * MEANS["lead", "b"]["x"]
    second = segment_share * MEANS["second", "a"]["y"] + (1 - segment_share) * MEANS["second", "b"]["y"]
    return lead, second


@pytest.mark.slow
def test_intervals_cover_the_true_per_slot_and_total_values():
    lead, second = truth()
    runs, hits = 40, {"lead": 0, "second": 0, "total": 0}
    for seed in range(runs):
        events = list(dsjson.read_multi_slot(simulate(300, seed)))
        base = multislot.evaluate(events, [], seed=seed).policy("baseline")
        for name, estimates, value in [
            ("lead", base.slot("lead").estimates, lead),
            ("second", base.slot("second").estimates, second),
            ("total", base.total, lead + second),
        ]:
            lo, hi = estimates["dr"].ci
            hits[name] += lo <= value <= hi
    # nominal 95%: at least 33 of 40 (P < 1% of fewer with true coverage 95%)
    assert all(h >= 33 for h in hits.values()), hits


def test_the_bootstrap_total_agrees_with_the_gaussian_one_and_is_seeded():
    events = list(dsjson.read_multi_slot(simulate(300, seed=3)))
    gaussian = multislot.evaluate(events, [], seed=3).policy("baseline").total["dr"]
    boot = [multislot.evaluate(events, [], interval="bootstrap", seed=3).policy("baseline").total["dr"] for _ in "ab"]
    assert boot[0] == boot[1]
    assert boot[0].value == gaussian.value
    width = gaussian.ci[1] - gaussian.ci[0]
    assert boot[0].ci == pytest.approx(gaussian.ci, abs=0.15 * width)


# ---- nextbest evaluate on a CCB log


def test_cli_evaluates_a_ccb_candidate_per_slot_and_in_total(tmp_path, capsys):
    log, out, png = tmp_path / "ccb.json", tmp_path / "report.json", tmp_path / "report.png"
    log.write_text("\n".join(simulate(1000, seed=7)) + "\n")
    args = ["evaluate", "--log", str(log), "--policy", CCB_SPEC, "--json", str(out), "--plot", str(png)]
    assert main([*args, "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "total = sum over slots of the reward per event" in printed
    assert f"spec for SetPolicy: {CCB_SPEC}" in printed
    report = json.loads(out.read_text())
    assert report["slots"] == ["lead", "second"] and report["events"] == 1000
    assert [p["spec"] for p in report["policies"]] == ["logged", "baseline", "random", CCB_SPEC]
    by_spec = {p["spec"]: p for p in report["policies"]}
    ccb, rand = by_spec[CCB_SPEC], by_spec["random"]
    assert [s["slot"] for s in ccb["slots"]] == ["lead", "second"]
    assert set(ccb["slots"][0]) == {"slot", "events", "estimates", "ess", "max_weight", "warnings", "curve"}
    assert set(ccb["total"]) == {"ips", "snips", "clipped_ips", "dm", "dr"}
    # The learned CCB policy beats random in each slot and in total, beyond the intervals.
    for k in range(2):
        assert ccb["slots"][k]["estimates"]["dr"]["ci"][0] > rand["slots"][k]["estimates"]["dr"]["value"]
    assert ccb["total"]["dr"]["ci"][0] > rand["total"]["dr"]["ci"][1]
    total = sum(s["estimates"]["dr"]["value"] for s in ccb["slots"])
    assert ccb["total"]["dr"]["value"] == pytest.approx(total)  # every event has both slots
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_search_on_a_ccb_log_and_names_a_bad_line(tmp_path, capsys):
    log = tmp_path / "ccb.json"
    log.write_text("\n".join([GOOD, GOOD]) + "\n")
    assert main(["evaluate", "--log", str(log), "--search"]) == 2
    assert "single-slot logs only" in capsys.readouterr().err
    log.write_text("\n".join([GOOD, bad(lambda o: o["_outcomes"][0].update(_a=[9]))]) + "\n")
    assert main(["evaluate", "--log", str(log)]) == 2
    assert f"{log}, line 2: _outcomes[0]._a: action 9" in capsys.readouterr().err
    log.write_text("\n".join([GOOD, GOOD]) + "\n")
    assert main(["evaluate", "--log", str(log), "--policy", "vw:--ccb_explore_adf --data x"]) == 2
    assert "VW option --data is not allowed" in capsys.readouterr().err
