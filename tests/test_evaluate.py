"""Counterfactual evaluation: progressive validation, a planted problem, search, importance, the CLI."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from planted import ACTIONS, BEST, SEGMENTS

from nextbest.cli import main
from nextbest.client import action
from nextbest.client import namespaces as features
from nextbest.policies import Example, Policy
from nextbest.policies.ope.dsjson import to_dsjson
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.policies.ope.replay import namespaces, replay, without_namespace
from nextbest.policies.ope.report import EstimateReport, evaluate, format_report, search_grid

ORACLE = "rules:" + json.dumps({"rules": [{"if": {"user.segment": s}, "then": [a]} for s, a in BEST.items()]})
PERSONALIZING = "vw:--cb_explore_adf --epsilon 0.05 -q ::"
IDS = [a.id for a in ACTIONS]
TRUE_VALUE = {ORACLE: 0.8, "random": 0.8 / 4 + 0.1 * 3 / 4}
# Two reports as `nextbest evaluate --json` wrote them before the report was typed (see `test_the_json_document...`).
DOCUMENTS = Path(__file__).parent / "data" / "evaluate_report.json"


def planted_events(n, seed=0):
    """Uniformly logged decisions over the planted problem: reward ~ Bernoulli(0.8) for the best action, else 0.1."""
    rng = np.random.default_rng(seed)
    actions = [action(a.id, a.channel, {"offer": {"kind": a.id.split("-")[1]}}) for a in ACTIONS]
    events = []
    for i in range(n):
        segment = SEGMENTS[rng.integers(len(SEGMENTS))]
        context = features({"user": {"segment": segment}, "time": {"hour": float(rng.integers(24))}})
        chosen = int(rng.integers(len(actions)))
        reward = float(rng.random() < (0.8 if IDS[chosen] == BEST[segment] else 0.1))
        example = Example(context, actions)
        events.append(LoggedEvent(f"e{i}", example, chosen, 0.25, reward, pmf=(0.25,) * 4, skip_learn=i % 10 == 9))
    return events


@pytest.fixture(scope="module")
def events():
    return planted_events(2000)


@pytest.fixture(scope="module")
def report(events):
    return evaluate(events, [ORACLE, PERSONALIZING])


class Recorder(Policy):
    """Uniform; records the order of its calls by event."""

    def __init__(self, spec="recorder"):
        super().__init__(spec)
        self.calls = []

    def _pmf(self, example, event_id):
        self.calls.append(("pmf", event_id))
        return np.ones(len(example))

    def _learn(self, events):
        self.calls += [("learn", e.reward, e.probability) for e in events]

    def _save(self):
        return b""

    @classmethod
    def _create(cls, spec, params):
        return cls(spec)

    @classmethod
    def _load(cls, spec, params, data):
        return cls(spec)


class Cheater(Recorder):
    """Would put all mass on a rewarded logged action if it had learned the example's outcome before scoring it."""

    def __init__(self, spec="cheater"):
        super().__init__(spec)
        self.seen = {}

    def _pmf(self, example, event_id):
        p = np.ones(len(example))
        if id(example) in self.seen:
            chosen, reward = self.seen[id(example)]
            p = np.eye(len(example))[chosen] if reward > 0 else 1 - np.eye(len(example))[chosen]
        return p

    def _learn(self, events):
        self.seen.update({id(e.example): (e.chosen_index, e.reward) for e in events})


def test_each_event_is_scored_before_it_is_learned_and_skipped_events_are_not_learned():
    events = [
        LoggedEvent(f"e{i}", Example({}, ACTIONS[: 2 + i]), 0, 0.5 - i / 10, float(i), skip_learn=i == 1)
        for i in range(3)
    ]
    recorder = Recorder()
    pmfs = replay(events, recorder)
    assert recorder.calls == [("pmf", "e0"), ("learn", 0.0, 0.5), ("pmf", "e1"), ("pmf", "e2"), ("learn", 2.0, 0.3)]
    assert np.allclose(pmfs, [[1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [1 / 4] * 4])


def test_events_may_have_different_numbers_of_actions():
    rng = np.random.default_rng(2)
    events = []
    for i in range(300):
        k = int(rng.integers(2, 5))
        chosen = int(rng.integers(k))
        events.append(LoggedEvent(f"e{i}", Example({}, ACTIONS[:k]), chosen, 1 / k, float(chosen == k - 1)))
    report = evaluate(events, [])
    mean = np.mean([e.reward for e in events])
    random = report.policies[2]
    assert random.spec == "random" and random.estimates["ips"].value == pytest.approx(mean)
    assert report.policies[1].estimates["ips"].value == 0.0  # the first action is never rewarded


def test_a_policy_that_would_use_the_events_own_reward_gains_nothing(events):
    honest = replay(events, Cheater())
    assert np.array_equal(honest, np.full((len(events), 4), 0.25))
    # The same events twice: on the second pass the cheater knows every outcome, and its estimate soars.
    twice = replay(events + events, Cheater())
    logged = np.array([e.chosen_index for e in events])
    reward = np.array([e.reward for e in events])
    second = twice[len(events) :][np.arange(len(events)), logged] / 0.25 * reward
    assert second.mean() > 3 * reward.mean()


def test_the_planted_best_policy_is_estimated_above_random_and_near_the_truth(report, events):
    assert [p.spec for p in report.policies] == ["logged", "baseline", "random", ORACLE, PERSONALIZING]
    assert report.events == 2000 and report.best == ORACLE
    for name in ("ips", "snips", "clipped_ips", "dm", "dr"):
        oracle, learner, rand = (report.policy(s).estimates[name] for s in (ORACLE, PERSONALIZING, "random"))
        assert oracle.ci[0] > rand.ci[1], name
        assert learner.ci[0] > rand.ci[1], name
    for spec, truth in TRUE_VALUE.items():
        for name in ("ips", "snips", "dr"):
            lo, hi = report.policy(spec).estimates[name].ci
            assert lo < truth < hi, (spec, name)
    average = np.mean([e.reward for e in events])
    logged, oracle = report.policy("logged"), report.policy(ORACLE)
    assert logged.estimates["dr"].value == pytest.approx(average)
    assert logged.ess == 2000 and logged.max_weight == 1.0
    assert oracle.max_weight == 4.0 and oracle.warnings == ()
    assert len(oracle.curve.events) == len(oracle.curve.snips) == 200 and oracle.curve.events[-1] == 2000
    assert oracle.curve.snips[-1] == pytest.approx(oracle.estimates["snips"].value)


def test_the_report_prints_a_table_and_the_best_spec(report):
    text = format_report(report)
    assert "2000 events; values with 95% gaussian intervals" in text
    assert f"spec for SetPolicy: {ORACLE}" in text
    lines = text.splitlines()
    assert lines[2].endswith("logged") and lines[5].endswith(ORACLE)


def same_document(actual, expected, where="report"):
    """The same keys in the same order, the same types and lengths, the same values (numbers up to rounding)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), where
        for key, value in expected.items():
            same_document(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same_document(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float) and actual == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert type(actual) is type(expected) and actual == expected, where


def test_the_json_document_keeps_its_keys_structure_and_values():
    planted = evaluate(planted_events(80, seed=4), [ORACLE, 'fixed:{"sms-coupon": 1}'], importance=True)
    never_logged = [LoggedEvent(f"n{i}", Example({}, ACTIONS[:2]), 0, 0.5, float(i)) for i in range(2)]
    never = evaluate(never_logged, ['fixed:{"push-tip": 1}'], interval="bootstrap", alpha=0.1)  # nulls, no importance
    documents = {"planted": json.loads(planted.to_json(indent=2)), "never": json.loads(never.to_json())}
    same_document(documents, json.loads(DOCUMENTS.read_text()))
    assert never.policy('fixed:{"push-tip": 1}').estimates["snips"] == EstimateReport(None, (None, None))


def test_weights_that_make_an_estimate_unreliable_are_flagged(events):
    report = evaluate(events[:200], ["baseline"], interval="clopper-pearson")
    assert [p.spec for p in report.policies] == ["logged", "baseline", "random"]
    assert report.policies[1].warnings == ()
    # A logger that gave the baseline's action 0.9 mostly, but 0.01 on a few events: those carry weights of 100.
    rare = [
        dataclasses.replace(e, probability=0.01 if i % 10 == 0 else 0.9) if e.chosen_index == 0 else e
        for i, e in enumerate(events[:200])
    ]
    baseline = evaluate(rare, []).policy("baseline")
    assert baseline.max_weight == 100.0
    assert any("effective sample size" in w for w in baseline.warnings)
    assert any("of the total weight" in w for w in baseline.warnings)
    assert "warning: baseline: effective sample size" in format_report(evaluate(rare, []))


def test_search_and_importance_find_the_interactions_and_the_namespace_that_matter(events):
    specs, refused = search_grid(["--epsilon 0.05", "--squarecb"], ["::", ""], [0.5], ["ips"])
    assert specs == [
        "vw:--cb_explore_adf --epsilon 0.05 --cb_type ips -q :: -l 0.5",
        "vw:--cb_explore_adf --epsilon 0.05 --cb_type ips -l 0.5",
    ]
    assert [s for s, _ in refused] == [
        "vw:--cb_explore_adf --squarecb --cb_type ips -q :: -l 0.5",
        "vw:--cb_explore_adf --squarecb --cb_type ips -l 0.5",
    ]
    assert "not a valid choice" in refused[0][1]
    report = evaluate(events[:600], specs, importance=True, jobs=2)
    assert report.best == specs[0]
    importance = report.importance
    assert importance.spec == specs[0] and importance.estimator == "dr"
    rows = {(r.side, r.namespace): r for r in importance.namespaces}
    assert set(rows) == {("context", "user"), ("context", "time"), ("action", "offer"), ("action", "channel")}
    assert importance.namespaces[0].namespace == "user" and rows["context", "user"].drop > 0.2
    assert abs(rows["context", "time"].drop) < 0.05


def test_leaving_a_namespace_out_changes_only_that_namespace(events):
    assert namespaces(events[:5]) == [
        ("action", "channel"),
        ("action", "offer"),
        ("context", "time"),
        ("context", "user"),
    ]
    event = events[0]
    no_user = without_namespace(event, "context", "user").example.vw_lines()
    assert "|user" not in no_user[0] and "|time" in no_user[0]
    no_channel = without_namespace(event, "action", "channel").example
    assert no_channel.action_ids == IDS and "|channel" not in " ".join(no_channel.vw_lines())
    assert "|offer" in " ".join(no_channel.vw_lines())
    with pytest.raises(ValueError, match="side must be"):
        without_namespace(event, "shared", "user")


@pytest.mark.parametrize(
    "args, match",
    [
        (([], [PERSONALIZING]), "at least 2 events"),
        ((None, []), None),
        ((None, ["vw:--epsilon 0.1"]), "must include --cb_explore_adf"),
    ],
)
def test_unusable_input_is_refused_before_replay(events, args, match):
    evs, specs = args
    if match is None:
        with pytest.raises(ValueError, match="importance needs a candidate"):
            evaluate(events[:10], specs, importance=True)
        return
    with pytest.raises(ValueError, match=match):
        evaluate(events[:10] if evs is None else evs, specs)


def write_log(path, events):
    path.write_text("".join(to_dsjson(e) + "\n" for e in events))
    return str(path)


@pytest.mark.slow
def test_cli_writes_the_documented_json_and_a_png(tmp_path, events):
    log = write_log(tmp_path / "log.json", events[:600])
    out, png = tmp_path / "report.json", tmp_path / "report.png"
    args = ["--log", log, "--policy", 'fixed:{"push-tip": 1}', "--json", str(out), "--plot", str(png), "--jobs", "1"]
    done = subprocess.run([sys.executable, "-m", "nextbest", "evaluate", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "evaluating [####################] 100%" in done.stderr
    assert 'spec for SetPolicy: fixed:{"push-tip": 1}' in done.stdout
    report = json.loads(out.read_text())
    assert report["events"] == 600
    assert [p["spec"] for p in report["policies"]] == ["logged", "baseline", "random", 'fixed:{"push-tip": 1}']
    for entry in report["policies"]:
        for name in ("ips", "snips", "dr"):
            estimate = entry["estimates"][name]
            assert isinstance(estimate["value"], float) and len(estimate["ci"]) == 2
            assert estimate["ci"][0] <= estimate["value"] <= estimate["ci"][1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_search_with_importance_prints_the_best_spec(tmp_path, events, capsys):
    log = write_log(tmp_path / "log.json", events[:500])
    args = ["--search", "--explore=--epsilon 0.05", "--interactions", "::", "--interactions", "none"]
    args += ["--learning-rate", "0.5", "--cb-type", "mtr", "--jobs", "2", "--importance"]
    assert main(["evaluate", "--log", log, *args]) == 0
    out = capsys.readouterr().out
    assert "spec for SetPolicy: vw:--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 0.5" in out
    assert "namespace importance for vw:" in out


def test_cli_reports_errors_with_exit_code_2(tmp_path, events, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json\n")
    assert main(["evaluate", "--log", str(bad)]) == 2
    assert "line 1: not JSON" in capsys.readouterr().err
    assert main(["evaluate", "--log", str(tmp_path / "missing.json")]) == 2
    assert "No such file" in capsys.readouterr().err
    good = write_log(tmp_path / "log.json", events[:5])
    assert main(["evaluate", "--log", good, "--policy", "nope"]) == 2
    assert "unknown policy family 'nope'" in capsys.readouterr().err
