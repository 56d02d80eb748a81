"""`nextbest bench`: the payload, the echo baseline, open-loop scheduling and a short end-to-end bench.

Nothing here asserts a throughput or a latency: only that the bench measures and reports them.
"""

import asyncio
import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from nextbest.cli import build_parser
from nextbest.server import validation
from nextbest.server.bench import batch, echo, load
from nextbest.server.bench.load import Load, Service, Workload, measure, rank_request
from nextbest.server.commands.bench import SUBJECT_RATE_SHARE, Plan
from nextbest.server.config import Limits
from nextbest.v1 import decision_pb2

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]


def test_payload_is_a_valid_rank_request_of_the_documented_size():
    request = rank_request(random.Random(0), "bench")
    assert len(validation.rank_request(request, Limits()).candidates) == 10
    assert sorted(request.context) == ["history", "session", "user"]
    for features in request.context.values():
        assert len(features.numeric) + len(features.categorical) + len(features.tokens) == 20
        assert features.numeric and features.categorical and features.tokens
    for action in request.actions:
        (offer,) = action.features.values()
        assert len(offer.numeric) + len(offer.categorical) + len(offer.tokens) == 5
    assert len({a.channel for a in request.actions}) == 6
    assert 2000 < request.ByteSize() < 3000


def test_workload_sends_unique_events_and_rewards_a_fraction():
    workload = Workload("bench", reward_fraction=0.5, seed=1)
    calls = [workload.call(i) for i in range(400)]
    ranks = [decision_pb2.RankRequest.FromString(rank) for rank, _ in calls]
    assert len({r.event_id for r in ranks}) == 400
    assert all(r.loop == "bench" and len(r.actions) == 10 for r in ranks)
    rewards = {
        rank.event_id: decision_pb2.RewardRequest.FromString(reward)
        for rank, (_, reward) in zip(ranks, calls, strict=True)
        if reward is not None
    }
    assert 100 < len(rewards) < 300
    assert all(reward.event_id == event_id and reward.loop == "bench" for event_id, reward in rewards.items())
    assert not any(r.subject_id for r in ranks)


def test_a_workload_with_subjects_cycles_through_their_ids():
    workload = Workload("bench", reward_fraction=0.5, seed=1, subjects=3)
    ranks = [decision_pb2.RankRequest.FromString(workload.call(i)[0]) for i in range(6)]
    assert [r.subject_id for r in ranks] == ["subject-0", "subject-1", "subject-2"] * 2


def test_echo_service_answers_with_the_bytes_it_received_and_drains_streams():
    server, port = echo.serve(threads=2)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(echo.METHOD)
            payload = rank_request(random.Random(0)).SerializeToString()
            assert call(payload, timeout=10) == payload
            assert call(b"", timeout=10) == b""
            drain = channel.stream_unary(echo.STREAM_METHOD)
            assert int.from_bytes(drain(iter([payload] * 50), timeout=10), "big") == 50
    finally:
        server.stop(None)


def test_open_loop_against_echo_schedules_and_measures():
    server, port = echo.serve(threads=4)
    try:
        service = Service("echo", f"127.0.0.1:{port}", echo.METHOD, echo.METHOD)
        workload = Workload("bench", reward_fraction=0.5, seed=1)
        run = asyncio.run(measure(service, workload, Load(rate=200, arrival="fixed"), warmup=0.2, duration=1.0))
    finally:
        server.stop(None)
    assert run["mode"] == "open" and run["rate"] == 200
    assert run["scheduled"] > 0 and run["calls"] > 0 and run["errors"] == {}
    assert run["reward"]["calls"] > 0
    assert set(run["latency_ms"]) == {"p50", "p90", "p99", "p999", "max", "mean"}


def test_every_plan_field_is_a_flag_with_the_same_default():
    args = build_parser().parse_args(["bench"])
    assert Plan(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Plan)}) == Plan()


def test_the_subject_comparison_runs_at_the_rate_asked_or_at_the_rank_runs_own_load():
    closed, ranked = Load(concurrency=16), {"throughput": 500.0}
    assert load._subject_load(Plan(), closed, ranked) == Load(rate=SUBJECT_RATE_SHARE * 500.0)
    assert load._subject_load(Plan(subject_rate=120.0, arrival="fixed"), closed, ranked) == Load(
        rate=120.0, arrival="fixed"
    )
    assert load._subject_load(Plan(subject_rate=0.0), closed, ranked) == closed
    opened = Load(rate=200.0)
    assert load._subject_load(Plan(), opened, ranked) == opened


def test_short_bench_reports_rank_and_echo(tmp_path):
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    flags = [
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--concurrency",
        "2",
        "--reward-stream",
        "2000",
        "--subjects",
        "50",
        "--subject-rounds",
        "2",
    ]
    outputs = ["--json", str(report_path), "--plot", str(plot_path)]
    out = subprocess.run(
        [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "bench", *flags, *outputs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rank/echo" in out.stdout and "RewardStream" in out.stdout and "Rank with subject ids" in out.stdout
    assert "calls" in out.stderr  # the progress lines
    report = json.loads(report_path.read_text())
    sections = {"version", "machine", "plan", "server", "loop", "payload", "runs", "comparisons", "reward_stream"}
    assert sections <= set(report)
    echo_run, rank_run = report["runs"]
    assert (echo_run["service"], rank_run["service"]) == ("echo", "rank")
    for run in (echo_run, rank_run):
        assert run["mode"] == "closed" and run["concurrency"] == 2
        assert run["throughput"] > 0 and run["calls"] > 0
        assert run["latency_ms"]["p50"] > 0 and run["latency_ms"]["p999"] >= run["latency_ms"]["p99"]
        assert run["reward"]["calls"] > 0
        assert set(run["cpu"]) == {"client", "server", "machine", "other"}
        assert run["timeline"]
    assert rank_run["learner"]["decisions"] > 0
    (comparison,) = report["comparisons"]
    assert comparison["throughput_ratio"] > 0 and comparison["p99_ratio"] > 0
    stream = report["reward_stream"]
    assert stream["accepted"] == 2000 and stream["rewards_per_second"] > 0 and stream["echo_per_second"] > 0
    assert report["loop"]["reward_wait_seconds"] == 0.5
    # without and with subject ids in turn, two rounds, both sides an open loop at 70% of the Rank run's throughput
    assert [r["service"] for r in report["subject_runs"]] == ["rank", "rank+subj"] * 2
    assert all(r["calls"] > 0 and not r["errors"] for r in report["subject_runs"])
    rate = SUBJECT_RATE_SHARE * rank_run["throughput"]
    assert all(r["mode"] == "open" and r["rate"] == pytest.approx(rate) for r in report["subject_runs"])
    (subjects,) = report["subjects"]
    assert subjects["subjects"] == 50 and len(subjects["rounds"]) == 2
    assert subjects["label"] == f"open {rate:,.0f}/s" and subjects["after"] == "closed c=2"
    assert subjects["throughput"] > 0 and subjects["throughput_with_subject"] > 0
    ratios = sorted(r["cpu_ratio"] for r in subjects["rounds"])
    assert 0 < ratios[0] <= subjects["cpu_ratio"] <= ratios[1]
    assert plot_path.read_bytes().startswith(b"\x89PNG")


def test_bench_http_measures_http_rank_and_grpc_rank_with_and_without_http(tmp_path):
    report_path = tmp_path / "bench.json"
    flags = ["--duration", "1", "--warmup", "0.5", "--concurrency", "2", "--http", "--json", str(report_path)]
    out = subprocess.run(
        [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "bench", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "http/grpc" in out.stdout and "+http/rank" in out.stdout
    report = json.loads(report_path.read_text())
    grpc_run, http_run = report["http_runs"]
    assert (grpc_run["service"], http_run["service"]) == ("rank+http", "http")
    for run in (grpc_run, http_run):
        assert run["calls"] > 0 and not run["errors"] and run["reward"]["calls"] > 0 and not run["reward"]["errors"]
    (comparison,) = report["http_comparisons"]
    assert comparison["http_over_grpc"]["throughput_ratio"] > 0
    assert comparison["grpc_with_http_over_without"]["throughput_ratio"] > 0
    assert report["server"]["http_address"].startswith("127.0.0.1:")


def test_bench_http_payloads_are_the_grpc_payloads_in_json():
    workload = Workload("bench", 1.0, seed=3)
    for i in range(3):
        (rank, reward), ((rank_path, rank_body), (reward_path, reward_body)) = workload.call(i), workload.http_call(i)
        expected = decision_pb2.RankRequest.FromString(rank)
        assert rank_path == "/v1/loops/bench:rank"
        parsed = json_format.Parse(rank_body, decision_pb2.RankRequest(loop="bench"))
        assert parsed == expected
        event_id = decision_pb2.RewardRequest.FromString(reward).event_id
        assert reward_path == f"/v1/loops/bench/events/{event_id}:reward" and json.loads(reward_body) == {"value": 1.0}


def test_batch_bytes_are_the_workloads_requests_in_one_rank_batch_request():
    workload = Workload("bench", 0.0, seed=2)
    request = decision_pb2.RankBatchRequest.FromString(batch.batch_bytes(workload.rank, 10, 5))
    assert list(request.requests) == [decision_pb2.RankRequest.FromString(workload.rank(i)) for i in range(10, 15)]


def test_bench_batch_compares_rank_batch_with_single_rank_and_runs_a_campaign(tmp_path):
    report_path = tmp_path / "bench.json"
    flags = ["--duration", "1", "--warmup", "0.5", "--concurrency", "2", "--batch", "20", "--campaign", "2000"]
    out = subprocess.run(
        [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "bench", *flags, "--json", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "RankBatch x20" in out.stdout and "campaign: 2,000 decisions" in out.stdout
    report = json.loads(report_path.read_text())["batch"]
    assert report["single"]["throughput"] > 0 and report["ratio"] > 0
    batched = report["batched"]
    assert batched["decisions"] > 0 and not batched["item_errors"] and not batched["errors"]
    campaign = report["campaign"]
    assert campaign["decisions"] == 2000 and not campaign["item_errors"] and not campaign["errors"]
    memory = campaign["memory"]
    assert memory[0]["decisions"] == 0 and memory[-1]["decisions"] == 2000 and len(memory) >= 3
    assert all(sample["anon_mb"] > 0 and sample["rss_mb"] >= sample["anon_mb"] for sample in memory)


def test_the_sweep_summary_holds_the_issue_targets_at_16_callers_and_half_the_best_throughput():
    best = {"throughput": 500.0, "concurrency": 64}
    comparisons = [{"concurrency": c, "throughput_ratio": r} for c, r in ((1, 0.4), (16, 0.46), (64, 0.3))]
    opened = {"latency_ms": {"p99": 9.0, "p999": 30.0}}
    summary = load._sweep_summary(best, comparisons, opened)
    assert (summary["ratio_concurrency"], summary["throughput_ratio"], summary["throughput_ratio_at_max"]) == (
        16,
        0.46,
        0.3,
    )
    assert summary["half_max_rate"] == 250.0
    assert summary["met"] == {"p99_ms_at_half_max": True, "p999_ms_at_half_max": False, "throughput_ratio": True}
    without_16 = load._sweep_summary(best, [comparisons[0], comparisons[2]], None)
    assert without_16["ratio_concurrency"] == 64 and not any(without_16["met"].values())
