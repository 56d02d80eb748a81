"""Learning quality on the pinball world: what the service loses to VW, and how far bandits get.

    python -m benchmarks.learning                 # both parts, about 5 minutes on 2 cores
    python -m benchmarks.learning --only service  # part (a) alone
    python -m benchmarks.learning --only long --policy sq-a='vw:--cb_explore_adf --squarecb -q a:'
                                                  # part (b) with one more policy

(a) service vs VW-direct: the same world (same customers, occasions and
    draws) through loops of a real nextbest service and through the same VW
    arguments in-process, sampled with the same seeds. The ratio of their
    average rewards measures what logging, joining and publishing cost
    (target: >= 0.97).
(b) bandits vs the scripted journey vs the oracle over a long run with drift
    (tastes shift, an offer launches, sms consent is withdrawn), in-process,
    one process per policy: the average reward over the last fifth of the run
    and the fraction of the oracle's it reaches (target: >= 0.9 for the best
    VW policy).

Results go to a JSON file and a PNG of the learning curves of (b).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks.inprocess import LocalArm
from nextbest.server.config import DEFAULT_POLICY
from nextbest.sim import report
from nextbest.sim.arms import ORACLE, Arm, OracleArm
from nextbest.sim.compare import REWARD_WAIT_SECONDS, through_service
from nextbest.sim.config import WorldConfig
from nextbest.sim.journey import JOURNEY_SPEC
from nextbest.sim.population import Population
from nextbest.sim.simulate import ArmRecord, Run, simulate

SERVICE_WORLD = WorldConfig(customers=100, days=28)
SERVICE_POLICIES = {"vw-default": DEFAULT_POLICY, "vw-squarecb": "vw:--cb_explore_adf --squarecb -q ::"}
LONG_WORLD = WorldConfig(customers=500, days=60)
LONG_POLICIES = {
    "journey": JOURNEY_SPEC,
    "random": "random",
    "vw-default": DEFAULT_POLICY,
    "vw-squarecb": "vw:--cb_explore_adf --squarecb -q ::",
    "vw-squarecb-g1000": "vw:--cb_explore_adf --squarecb --gamma_scale 1000 -q ::",
}
SERVICE_TARGET = 0.97
ORACLE_TARGET = 0.9


def service_vs_direct(seed: int, seeds: int = 5) -> dict[str, Any]:
    """Part (a): each of SERVICE_POLICIES through the service and in-process, over `seeds` worlds from `seed`.

    A service run is not exactly repeatable (which model version serves a
    decision depends on when the learner publishes, in wall-clock time), so
    the ratio is pooled over several worlds: total service reward over total
    direct reward, and per world.
    """
    totals = {
        name: {"service": [], "direct": [], "service_expected": [], "direct_expected": []} for name in SERVICE_POLICIES
    }
    for world_seed in range(seed, seed + seeds):
        twins = [
            LocalArm(f"{n}-direct", spec, REWARD_WAIT_SECONDS, seed_loop=n) for n, spec in SERVICE_POLICIES.items()
        ]
        run, _ = through_service(Population(SERVICE_WORLD, world_seed), SERVICE_POLICIES, extra=twins)
        for name, t in totals.items():
            for side, arm in (("service", run.arm(name)), ("direct", run.arm(f"{name}-direct"))):
                t[side].append(sum(arm.reward))
                t[f"{side}_expected"].append(sum(arm.expected))
    out: dict[str, Any] = {"seeds": list(range(seed, seed + seeds)), "policies": {}}
    for name, t in totals.items():
        out["policies"][name] = {
            "policy": SERVICE_POLICIES[name],
            "ratio": sum(t["service"]) / sum(t["direct"]),
            "expected_ratio": sum(t["service_expected"]) / sum(t["direct_expected"]),
            "ratio_per_seed": [s / d for s, d in zip(t["service"], t["direct"], strict=True)],
        }
    return out


def _arm(config: WorldConfig, seed: int, name: str, spec: str) -> ArmRecord:
    """One policy alone over the world: arms do not interact, so this equals running them side by side."""
    arm: Arm = OracleArm(name) if spec == ORACLE else LocalArm(name, spec, REWARD_WAIT_SECONDS)
    return simulate(Population(config, seed), [arm]).arms[0]


def long_run(seed: int, jobs: int, policies: dict[str, str]) -> Run:
    """Part (b): every policy of `policies` (LONG_POLICIES and any added) and the oracle over LONG_WORLD,
    one process each."""
    work = [*policies.items(), (ORACLE, ORACLE)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        records = pool.map(_arm, *zip(*[(LONG_WORLD, seed, name, spec) for name, spec in work], strict=True))
        return Run(LONG_WORLD, seed, list(records))


def _long_figures(run: Run, policies: dict[str, str]) -> dict[str, Any]:
    since = report.last_fifth(run)
    tails = {a.name: report.summary(run, a, since) for a in run.arms}
    vw = {n: t["of_oracle"] for n, t in tails.items() if policies.get(n, "").startswith("vw:")}
    best = max(vw, key=vw.get)
    return {
        "decisions": len(run.arms[0].time),
        "last_fifth": {n: {k: t[k] for k in ("reward", "expected", "regret", "of_oracle")} for n, t in tails.items()},
        "best_vw": {"name": best, "of_oracle": vw[best], "target": ORACLE_TARGET},
    }


def _named_spec(value: str) -> tuple[str, str]:
    name, equals, spec = value.partition("=")
    if not (name and equals and spec):
        raise argparse.ArgumentTypeError(f"expected NAME=SPEC, got {value!r}")
    return name, spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("service", "long"), help="run one part only")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed (default: 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for part (b)")
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        type=_named_spec,
        help="one more policy for part (b), next to LONG_POLICIES (repeatable)",
    )
    parser.add_argument("--json", default="nextbest-learning.json", help="results (default: %(default)s)")
    parser.add_argument("--plot", default="nextbest-learning.png", help="learning curves of (b) (default: %(default)s)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"seed": args.seed}
    if args.only != "long":
        started = time.monotonic()
        results["service_vs_direct"] = a = service_vs_direct(args.seed)
        a["seconds"] = round(time.monotonic() - started, 1)
        print(f"(a) service vs VW-direct, worlds {a['seeds']} ({a['seconds']:.0f} s), average reward ratio:")
        for name, p in a["policies"].items():
            each = ", ".join(f"{r:.3f}" for r in p["ratio_per_seed"])
            print(
                f"  {name:12} {p['ratio']:.3f} (per world {each}; of expected reward {p['expected_ratio']:.3f}; "
                f"target >= {SERVICE_TARGET})"
            )
    if args.only != "service":
        started = time.monotonic()
        policies = {**LONG_POLICIES, **dict(args.policy)}
        run = long_run(args.seed, args.jobs, policies)
        results["long_run"] = b = _long_figures(run, policies)
        b["seconds"] = round(time.monotonic() - started, 1)
        print(f"(b) long run with drift, {b['decisions']} decisions per policy ({b['seconds']:.0f} s), last fifth:")
        print(f"  {'':18}{'reward':>8}{'expected':>10}{'of oracle':>11}")
        for name, t in b["last_fifth"].items():
            print(f"  {name:18}{t['reward']:>8.3f}{t['expected']:>10.3f}{t['of_oracle']:>11.1%}")
        best = b["best_vw"]
        print(
            f"  best VW policy: {best['name']} at {best['of_oracle']:.1%} of the oracle (target >= {ORACLE_TARGET:.0%})"
        )
        document = report.document(run)
        b["world"], b["arms"] = document["world"], document["arms"]  # with each policy's learning curve
        report.plot(run, args.plot, f"pinball world, {LONG_WORLD.days:g} days with drift: learning curves")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results in {args.json}" + ("" if args.only == "service" else f", curves in {args.plot}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
