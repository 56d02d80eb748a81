"""`nextbest bench`: load nextbest's Rank path and measure it against a bare gRPC echo in the same run."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nextbest.server.config import DEFAULT_POLICY

SUBJECT_RATE_SHARE = 0.7  # of the closed-loop Rank throughput: the rate both sides of the subject comparison serve


@dataclass
class Plan:
    """What one bench does (`nextbest.server.bench.load.bench`); each field is the flag of the same name."""

    target: str | None = None
    threads: int = 16
    workers: int = 0
    connections: int = 0
    concurrency: int = 16
    rate: float = 0.0
    arrival: str = "poisson"
    duration: float = 10.0
    warmup: float = 2.0
    reward_fraction: float = 0.5
    sweep: bool = False
    sweep_concurrency: tuple[int, ...] = (1, 4, 16, 64)
    reward_stream: int = 0
    subjects: int = 0
    subject_rounds: int = 3
    subject_rate: float | None = None  # calls/s of the runs without and with subject ids (None: see bench.load)
    batch: int = 0
    campaign: int = 1_000_000
    policy: str = DEFAULT_POLICY
    loop: str = "bench"
    timeout: float = 5.0
    max_inflight: int = 1000
    seed: int = 1
    http: bool = False
    json: str | None = None
    plot: str | None = None

    def client_connections(self) -> int:
        """`connections`, or when 0: 1, and 4 per server process with several workers (SO_REUSEPORT spreads
        connections, not calls, over the workers)."""
        return self.connections or (4 * self.workers if self.workers > 1 else 1)

    def closed_loop_levels(self) -> tuple[int, ...]:
        """The concurrencies of the closed-loop runs (none for a plain open-loop run)."""
        if self.sweep:
            return self.sweep_concurrency
        return () if self.rate > 0 else (self.concurrency,)


def _bounded(kind: type, low: float, high: float = math.inf) -> Callable[[str], Any]:
    """An argparse type: `kind(text)` within [low, high]."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within [{low:g}, {high:g}], got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def _levels(text: str) -> tuple[int, ...]:
    return tuple(_bounded(int, 1)(part) for part in text.split(","))


def add(commands: argparse._SubParsersAction) -> None:
    d = Plan()
    bench = commands.add_parser(
        "bench",
        help="measure Rank throughput and latency against a bare gRPC echo service",
        description="Load nextbest with realistic Rank calls (3 context namespaces x 20 features, 10 actions "
        "x 5 features), each followed by a Reward for a fraction of them, with the learner running; measure a "
        "bare gRPC echo of the same bytes with the same client in the same run, and print throughput, "
        "p50/p99/p999 latency, errors by status and the Rank/echo ratios. Starts its own server and echo "
        "service on 127.0.0.1 (or loads --target). Every run lasts warm-up + duration (+ at most 2 x timeout).",
    )
    load = bench.add_argument_group("load")
    load.add_argument(
        "--concurrency",
        type=_bounded(int, 1),
        default=d.concurrency,
        help="closed loop: callers (default: %(default)s)",
    )
    load.add_argument(
        "--rate", type=_bounded(float, 0), default=d.rate, help="open loop at this many calls/s (default: closed loop)"
    )
    load.add_argument(
        "--arrival",
        choices=("poisson", "fixed"),
        default=d.arrival,
        help="open-loop interarrival times: exponential or constant (default: %(default)s)",
    )
    load.add_argument(
        "--duration",
        type=_bounded(float, 0.1),
        default=d.duration,
        help="seconds measured per run (default: %(default)s)",
    )
    load.add_argument(
        "--warmup",
        type=_bounded(float, 0),
        default=d.warmup,
        help="seconds of load before each run (default: %(default)s)",
    )
    load.add_argument(
        "--reward-fraction",
        type=_bounded(float, 0, 1),
        default=d.reward_fraction,
        help="share of Ranks followed by a Reward (default: %(default)s)",
    )
    load.add_argument(
        "--sweep",
        action="store_true",
        help="closed loop at each of --sweep-concurrency, then open loop at half of the best Rank throughput",
    )
    load.add_argument(
        "--sweep-concurrency",
        type=_levels,
        default=d.sweep_concurrency,
        metavar="N,N,...",
        help="concurrencies of --sweep (default: 1,4,16,64)",
    )
    load.add_argument(
        "--reward-stream",
        type=_bounded(int, 0),
        default=d.reward_stream,
        metavar="N",
        help="at the end, send N rewards through one RewardStream and report rewards/s",
    )
    load.add_argument(
        "--subjects",
        type=_bounded(int, 0),
        default=d.subjects,
        metavar="N",
        help="after each Rank run, run Rank without and with subject ids from a pool of N under a contact policy "
        "of 5 rules, both at the same rate (--subject-rate), and report the server CPU per Rank of each (default: no "
        "such run)",
    )
    load.add_argument(
        "--subject-rounds",
        type=_bounded(int, 1, 20),
        default=d.subject_rounds,
        metavar="N",
        help="with --subjects: measure N pairs of runs without and with subject ids, in turn, and report the "
        "median ratio (default: %(default)s)",
    )
    load.add_argument(
        "--subject-rate",
        type=_bounded(float, 0),
        default=d.subject_rate,
        metavar="R",
        help="with --subjects: run both sides at R calls/s, an open loop (default: "
        f"{SUBJECT_RATE_SHARE * 100:.0f}%% of the closed-loop Rank throughput; 0: the Rank run's own load, so in "
        "a closed loop each side at its own throughput)",
    )
    load.add_argument(
        "--batch",
        type=_bounded(int, 0, 1000),
        default=d.batch,
        metavar="N",
        help="then measure RankBatch of N requests against single-call Rank (decisions/s), and run a campaign "
        "(default: no such run)",
    )
    load.add_argument(
        "--campaign",
        type=_bounded(int, 0),
        default=d.campaign,
        metavar="N",
        help="with --batch: decisions of the campaign sent in batches, with the server's memory at its start and "
        "end (default: %(default)s; 0: none)",
    )
    load.add_argument(
        "--connections",
        type=_bounded(int, 0),
        default=d.connections,
        help="client connections, calls spread over them round-robin (default: 1, or 4 per worker with --workers)",
    )
    load.add_argument(
        "--timeout",
        type=_bounded(float, 0.01),
        default=d.timeout,
        help="deadline of each call (default: %(default)s s)",
    )
    load.add_argument(
        "--max-inflight",
        type=_bounded(int, 1),
        default=d.max_inflight,
        help="open loop: calls in flight at most (default: %(default)s)",
    )
    load.add_argument("--seed", type=int, default=d.seed, help="seed of payloads and arrivals (default: %(default)s)")
    server = bench.add_argument_group("server")
    server.add_argument(
        "--target", metavar="HOST:PORT", help="load a running nextbest instead of starting one on a temporary store"
    )
    server.add_argument(
        "--threads",
        type=_bounded(int, 1),
        default=d.threads,
        help="gRPC threads of the nextbest the bench starts and of the echo (default: %(default)s, as serve)",
    )
    server.add_argument(
        "--workers",
        type=_bounded(int, 0),
        default=d.workers,
        help="server processes, passed to serve (when it has --workers)",
    )
    server.add_argument(
        "--http",
        action="store_true",
        help="also start a nextbest serving HTTP (--http-port) and, at each load, measure gRPC Rank on it (against "
        "the one without HTTP) and Rank over the JSON API (against its gRPC Rank)",
    )
    server.add_argument("--loop", default=d.loop, help="the loop loaded, created if missing (default: %(default)s)")
    server.add_argument("--policy", default=d.policy, help="policy of the created loop (default: %(default)s)")
    output = bench.add_argument_group("output")
    output.add_argument("--json", metavar="FILE", help="write the report as JSON")
    output.add_argument("--plot", metavar="FILE", help="draw throughput and latency, Rank vs echo, to a PNG")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nextbest.server.bench.load import bench, summary

    plan = Plan(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Plan)})
    if plan.http and plan.target:
        raise SystemExit("nextbest bench: --http starts its own servers; it does not go with --target")
    print(summary(bench(plan)), end="")
    return 0
