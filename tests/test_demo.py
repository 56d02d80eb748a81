"""`nextbest demo` as a user runs it: a short run prints the comparison and writes the PNG and the JSON."""

import json
import subprocess
import sys

import pytest

from nextbest.sim.compare import DEMO_LOOPS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_a_short_demo_prints_the_table_and_writes_the_png_and_the_json(tmp_path):
    png, doc = tmp_path / "demo.png", tmp_path / "demo.json"
    out = subprocess.run(
        [sys.executable, "-m", "nextbest", "demo", "--seconds", "8", "--seed", "2", "--plot", png, "--json", doc],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {*DEMO_LOOPS, "oracle"} <= rows
    for header in (
        "regret",
        "of oracle",
        "channel mix",
        "subject id",
        "contact policy of its store",
        "by contact rule weekly",
    ):
        assert header in out.stdout
    assert "vw-default against its holdout (the journey)" in out.stdout
    assert "day" in out.stderr  # progress
    assert png.read_bytes().startswith(b"\x89PNG")
    figures = json.loads(doc.read_text())
    assert [a["name"] for a in figures["arms"]] == [*DEMO_LOOPS, "oracle"]
    decisions = {a["all"]["decisions"] for a in figures["arms"]}
    assert len(decisions) == 1 and decisions.pop() > 100
    assert figures["arms"][-1]["all"]["of_oracle"] == 1.0


def test_a_short_multi_slot_demo_prints_each_arm_against_the_multi_slot_loop_over_the_seeds(tmp_path):
    doc = tmp_path / "slots.json"
    command = [sys.executable, "-m", "nextbest", "demo", "--slots", "--seconds", "2", "--seed", "1", "--seeds", "2"]
    out = subprocess.run([*command, "--json", doc], capture_output=True, text=True, check=True, timeout=300)
    rows = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"ccb", "independent", "journey"} <= rows
    assert "seed 2 done" in out.stderr  # progress
    figures = json.loads(doc.read_text())
    assert figures["sends"] == 50 and figures["seeds"] == [1, 2]
    assert [c["arm"] for c in figures["all"]] == ["ccb", "independent", "journey"]
    for c in figures["all"][1:]:
        assert len(c["per_seed"]) == 2 and c["low"] <= c["difference"] <= c["high"]
