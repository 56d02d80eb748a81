"""benchmarks.memory: a short run gives a complete report, a curve and a verdict."""

import json

import pytest

from benchmarks import memory

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def sample(decisions: int, rss: float, anon: float) -> dict[str, float]:
    return {"decisions": decisions, "t": 0.0, "rss_mb": rss, "anon_mb": anon, "file_mb": rss - anon, "store_mb": 0.0}


def test_the_verdict_measures_from_the_end_of_the_warm_up():
    samples = [sample(0, 50, 40), sample(100, 100, 80), sample(500, 105, 80), sample(1000, 95, 88)]
    verdict = memory.verdict(samples, 1000)
    assert verdict["baseline"] == {"decisions": 100, "rss_mb": 100, "anon_mb": 80}
    assert verdict["max_deviation_percent"] == 5.0 and verdict["anon_max_deviation_percent"] == 10.0
    assert verdict["met"]


def test_a_short_run_reports_samples_and_draws_them(tmp_path):
    out = tmp_path / "memory.json"
    png = tmp_path / "memory.png"
    argv = ["--decisions", "120", "--callers", "4", "--sample-every", "30", "--json", str(out), "--plot", str(png)]
    assert memory.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["decisions"] == 120 and report["errors"] == {}
    assert [s["decisions"] for s in report["samples"]][0] == 0 and len(report["samples"]) == 5
    assert all(s["rss_mb"] > 0 and s["anon_mb"] > 0 for s in report["samples"])
    assert report["baseline"]["decisions"] == 30 and report["met"] in (True, False)
    assert png.stat().st_size > 0
