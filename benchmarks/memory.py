"""Resident memory over a long run of decisions: does it stay flat?

    python -m benchmarks.memory --decisions 1000000 --json memory.json --plot memory.png

Starts a real nextbest server (catalog, trainer: joiner, learner, retention) on a temporary LMDB store
and makes `--decisions` Rank calls in this process, straight into its DecisionService (no gRPC: the
figure is nextbest's own memory, and a million calls fit in minutes), from `--callers` threads; a
seeded `--reward-fraction` of them are followed by a Reward. The payload is `nextbest bench`'s
(`benchmarks.load.Workload`: 64 feature variants, a unique event id per call). The loop keeps events
`--retention-seconds`, so retention runs during the run and the store stays bounded on disk.

Every `--sample-every` decisions it reads this process's VmRSS, RssAnon and RssFile
(/proc/self/status) and the store's size on disk. The verdict: the largest deviation of VmRSS from
its value at the end of the warm-up (the first `WARMUP_SHARE` of the decisions), in %, against
`TARGET_PERCENT`. RssFile counts the pages of the store's memory map this process touched: page
cache the kernel can reclaim, reported apart.

With `--max-seconds` the run stops early; the warm-up is then the first `WARMUP_SHARE` of the decisions
made. The report (`--json`): {"version": 1, "plan": {...}, "calls": "in-process DecisionService",
"decisions", "rewards", "seconds", "decisions_per_second", "errors",
"samples": [{"decisions", "t", "rss_mb", "anon_mb", "file_mb", "store_mb"}],
"baseline": {"decisions", "rss_mb", "anon_mb"}, "max_deviation_percent", "anon_max_deviation_percent",
"target_percent", "met"}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import PUBLISH_SECONDS, REWARD_WAIT_SECONDS, Workload
from nextbest.server.app import NextbestServer
from nextbest.server.config import DEFAULT_POLICY, normalized
from nextbest.server.decision_service import DecisionService
from nextbest.server.errors import ServiceError
from nextbest.server.store import StoreFullError, open_store
from nextbest.v1 import decision_pb2, types_pb2

WARMUP_SHARE = 0.1
TARGET_PERCENT = 10.0
RETENTION_INTERVAL_SECONDS = 10.0
LOOP = "memory"


@dataclass(frozen=True)
class Plan:
    decisions: int = 1_000_000
    callers: int = 16
    reward_fraction: float = 0.5
    sample_every: int = 0  # 0: decisions / 200
    retention_seconds: float = 120.0
    max_seconds: float = 0.0  # 0: no limit; else stop after this long, with the decisions made so far
    policy: str = DEFAULT_POLICY
    seed: int = 1

    def every(self) -> int:
        return self.sample_every or max(1, self.decisions // 200)


def rss() -> dict[str, float]:
    """This process's VmRSS, RssAnon and RssFile in MB (Linux /proc/self/status)."""
    wanted = {"VmRSS:": "rss_mb", "RssAnon:": "anon_mb", "RssFile:": "file_mb"}
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, *rest = line.split()
            if name in wanted:
                out[wanted[name]] = int(rest[0]) / 1024  # kB
    return out


def disk_mb(directory: Path) -> float:
    """Bytes the files of `directory` hold on disk (sparse files count what is allocated), in MB."""
    return sum(p.stat().st_blocks * 512 for p in directory.iterdir() if p.is_file()) / 2**20


class Sampler:
    """Samples of memory and store size, one each `every` decisions; prints a progress line each."""

    def __init__(self, plan: Plan, store_dir: Path) -> None:
        self._plan = plan
        self._dir = store_dir
        self._start = time.perf_counter()
        self._lock = threading.Lock()
        self.samples: list[dict[str, float]] = []

    def sample(self, decisions: int) -> None:
        t = time.perf_counter() - self._start
        row = {"decisions": decisions, "t": t, **rss(), "store_mb": disk_mb(self._dir)}
        with self._lock:
            self.samples.append(row)
        rate = decisions / t if t else 0.0
        print(
            f"{decisions:>10,}/{self._plan.decisions:,} decisions, {rate:,.0f}/s, RSS {row['rss_mb']:.1f} MB "
            f"(anon {row['anon_mb']:.1f}, file {row['file_mb']:.1f}), store {row['store_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )


def _create_loop(server: NextbestServer, plan: Plan) -> None:
    config = normalized(
        types_pb2.LoopConfig(
            name=LOOP,
            policy=plan.policy,
            reward_wait_seconds=REWARD_WAIT_SECONDS,
            publish_interval_seconds=PUBLISH_SECONDS,
            retention_days=plan.retention_seconds / 86400,
        )
    )
    config.version = 1
    server.store.configs.create(LOOP, config.SerializeToString())
    deadline = time.monotonic() + 30
    while LOOP not in server.catalog.names():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the catalog did not see the loop {LOOP!r}")
        time.sleep(0.05)


def _drive(service: DecisionService, plan: Plan, sampler: Sampler) -> tuple[int, int, Counter[str]]:
    """The plan's decisions from `plan.callers` threads: (decisions made, rewards sent, errors by kind)."""
    workload = Workload(LOOP, plan.reward_fraction, plan.seed)
    indices, made, rewards = itertools.count(1), itertools.count(), itertools.count()
    errors: Counter[str] = Counter()
    every = plan.every()
    deadline = time.monotonic() + (plan.max_seconds or float("inf"))

    def caller() -> None:
        while (i := next(indices)) <= plan.decisions and time.monotonic() < deadline:
            rank, reward = workload.call(i)
            try:
                service.Rank(decision_pb2.RankRequest.FromString(rank), None)
                if reward is not None:
                    service.Reward(decision_pb2.RewardRequest.FromString(reward), None)
                    next(rewards)
            except (ServiceError, StoreFullError) as e:
                errors[type(e).__name__] += 1
            next(made)
            if i % every == 0:
                sampler.sample(i)

    threads = [threading.Thread(target=caller, name=f"caller-{k}") for k in range(plan.callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return next(made), next(rewards), errors


def verdict(samples: list[dict[str, float]], decisions: int) -> dict[str, Any]:
    """Baseline (the first sample at or past the warm-up) and the largest deviations from it after it, in %."""
    warm = [s for s in samples if s["decisions"] >= WARMUP_SHARE * decisions]
    if not warm:
        return {"baseline": None, "max_deviation_percent": None, "anon_max_deviation_percent": None, "met": None}
    base = warm[0]

    def deviation(key: str) -> float:
        return max(abs(s[key] - base[key]) / base[key] * 100 for s in warm)

    worst = deviation("rss_mb")
    return {
        "baseline": {k: base[k] for k in ("decisions", "rss_mb", "anon_mb")},
        "max_deviation_percent": worst,
        "anon_max_deviation_percent": deviation("anon_mb"),
        "target_percent": TARGET_PERCENT,
        "met": worst <= TARGET_PERCENT,
    }


def run(plan: Plan) -> dict[str, Any]:
    """The plan on a fresh server and store in a temporary directory; the report (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="nextbest-memory-") as tmp:
        store_dir = Path(tmp)
        server = NextbestServer(
            open_store(tmp), "127.0.0.1", 0, retention_interval_seconds=RETENTION_INTERVAL_SECONDS
        ).start()
        try:
            _create_loop(server, plan)
            service = DecisionService(server.store.log, server.catalog, server.limits)
            sampler = Sampler(plan, store_dir)
            sampler.sample(0)
            start = time.perf_counter()
            decisions, rewards, errors = _drive(service, plan, sampler)
            seconds = time.perf_counter() - start
        finally:
            server.stop(grace=2.0)
    return {
        "version": 1,
        "plan": asdict(plan),
        "calls": "in-process DecisionService (no gRPC)",
        "decisions": decisions,
        "rewards": rewards,
        "seconds": seconds,
        "decisions_per_second": decisions / seconds,
        "errors": dict(errors),
        "samples": sampler.samples,
        **verdict(sampler.samples, decisions),
    }


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"{report['decisions']:,} decisions ({report['rewards']:,} rewarded) in {report['seconds']:.0f} s = "
        f"{report['decisions_per_second']:,.0f}/s, {report['calls']}; errors {report['errors'] or 'none'}"
    ]
    if report["baseline"]:
        base = report["baseline"]
        lines.append(
            f"RSS after warm-up ({base['decisions']:,} decisions): {base['rss_mb']:.1f} MB; largest deviation after "
            f"it {report['max_deviation_percent']:.1f}% (anon {report['anon_max_deviation_percent']:.1f}%); "
            f"target <= {report['target_percent']:g}%: {'met' if report['met'] else 'NOT met'}"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str) -> None:
    """RSS (total, anonymous, file-backed) and the store's size on disk against decisions, with the ±target band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    x = [s["decisions"] for s in samples]
    fig, memory = plt.subplots(figsize=(10, 5))
    for key, label, style in (("rss_mb", "VmRSS", "-"), ("anon_mb", "RssAnon", "--"), ("file_mb", "RssFile", ":")):
        memory.plot(x, [s[key] for s in samples], style, label=label)
    if base := report["baseline"]:
        band = base["rss_mb"] * report["target_percent"] / 100
        target = f"±{report['target_percent']:g}%"
        memory.axhspan(base["rss_mb"] - band, base["rss_mb"] + band, alpha=0.15, label=target)
        memory.axvline(base["decisions"], color="gray", lw=0.8, label="end of warm-up")
    memory.set(xlabel="decisions", ylabel="MB", title="nextbest resident memory over decisions")
    disk = memory.twinx()
    disk.plot(x, [s["store_mb"] for s in samples], color="tab:red", alpha=0.5, label="store on disk")
    disk.set_ylabel("store on disk (MB)")
    handles = memory.get_legend_handles_labels()[0] + disk.get_legend_handles_labels()[0]
    memory.legend(handles=handles, fontsize=8, loc="lower right")
    memory.grid(alpha=0.3)
    verdict_text = (
        f"max deviation {report['max_deviation_percent']:.1f}%" if report["baseline"] else "no sample after warm-up"
    )
    fig.suptitle(f"{report['decisions']:,} decisions at {report['decisions_per_second']:,.0f}/s; {verdict_text}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    d = Plan()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=d.decisions, help="Rank calls (default: %(default)s)")
    parser.add_argument("--callers", type=int, default=d.callers, help="calling threads (default: %(default)s)")
    parser.add_argument(
        "--reward-fraction", type=float, default=d.reward_fraction, help="share rewarded (default: %(default)s)"
    )
    parser.add_argument("--sample-every", type=int, default=d.sample_every, help="default: decisions / 200")
    parser.add_argument(
        "--retention-seconds", type=float, default=d.retention_seconds, help="events kept (default: %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=d.max_seconds, help="stop after this long (default: no limit)"
    )
    parser.add_argument("--policy", default=d.policy, help="policy of the loop (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="draw the RSS curve to a PNG")
    args = parser.parse_args(argv)
    plan = Plan(
        decisions=args.decisions,
        callers=args.callers,
        reward_fraction=args.reward_fraction,
        sample_every=args.sample_every,
        retention_seconds=args.retention_seconds,
        max_seconds=args.max_seconds,
        policy=args.policy,
        seed=args.seed,
    )
    report = run(plan)
    print(summary(report), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
