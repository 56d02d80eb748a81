"""benchmarks.learner: a short run joins and learns every event exactly once and gives a complete report."""

import itertools
import json

import pytest

from benchmarks import learner

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_a_short_run_joins_and_learns_every_event_once(tmp_path):
    out, png = tmp_path / "learner.json", tmp_path / "learner.png"
    argv = ["--events", "300", "--callers", "4", "--sample-seconds", "0.1", "--json", str(out), "--plot", str(png)]
    assert learner.main(argv) == 0
    report = json.loads(out.read_text())
    fill, trainer = report["fill"], report["trainer"]
    assert fill["decisions"] == 300 and 0 < fill["rewards"] < 300
    assert trainer["joined"] == trainer["learned"] == trainer["published"] == 300
    assert trainer["defaulted"] == 300 - fill["rewards"]  # one reward per rewarded decision, every one joined
    assert 0 < trainer["joined_seconds"] <= trainer["learned_seconds"] <= trainer["published_seconds"]
    assert trainer["publishes"] >= 1
    assert set(trainer["step_seconds"]) == {"join", "learn", "publish", "lift", "outcomes"}
    assert report["vw_direct"]["events"] == report["vw_lines"]["events"] == 300
    assert set(trainer["step_cpu_seconds"]) == set(trainer["step_seconds"]) and trainer["learned_per_cpu_second"] > 0
    assert report["ratio"] > 0 and report["ratio_lines"] > 0 and report["cpu_ratio"] > 0
    assert report["met"] in (True, False) and report["cpu_met"] in (True, False)
    assert report["target_per_second"] == 5000 and report["target_ratio"] > 0 and report["cpu_target_ratio"] > 0
    stages = report["stages_us"]  # the learner's CPU per event split into its steps, the joiner's beside it
    assert list(stages) == ["join", "learn", "lift", "outcomes", "decode", "learn_event", "featurize", "vw"]
    assert all(value > 0 for value in stages.values())
    samples = report["samples"]
    assert samples[-1]["published"] == 300 and samples[-1]["lag_events"] == 0
    assert all(a["t"] < b["t"] and a["published"] <= b["published"] for a, b in itertools.pairwise(samples))
    assert png.stat().st_size > 0


def test_a_policy_outside_vw_has_no_text_line_baseline_nor_stages():
    assert learner.vw_lines("random", []) is None and learner.stages("random", []) is None
