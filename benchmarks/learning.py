"""Learning quality on the pinball world: what the service loses to VW, and how far bandits get.

    python -m benchmarks.learning                 # every part, about 10 minutes on 2 cores
    python -m benchmarks.learning --only service  # part (a) alone (or long, history)
    python -m benchmarks.learning --only long --policy sq-a='vw:--cb_explore_adf --squarecb -q a:'
                                                  # part (b) with one more policy
    python -m benchmarks.learning --only history --history-policy 'vw:--cb_explore_adf --squarecb -q ::' --seeds 6
                                                  # part (c) for another policy, over 6 worlds

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
(c) history kept by the service vs by the caller, through a real service:
    the default policy (or --history-policy) with the caller's own history
    features, the same policy through subject ids (the caller sends only
    what it knows of the customer now; the service adds its history
    features), and the scripted journey through subject ids under its weekly cap as the store's contact
    rule (on a server of its own, since a contact policy is store-wide), on
    the same worlds. The share of the oracle of both default arms (target:
    the service's history reaches at least the caller's), and the difference
    of expected reward per decision against the journey and between the two
    with 95% intervals from batch means (target: lower bound > 0 against the
    journey).

Results go to a JSON file and a PNG of the learning curves of (b).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import scipy.stats

from benchmarks.inprocess import LocalArm
from nextbest.server.config import DEFAULT_POLICY
from nextbest.sim import report
from nextbest.sim.arms import ORACLE, Arm, OracleArm
from nextbest.sim.compare import REWARD_WAIT_SECONDS, Loop, through_service
from nextbest.sim.config import WorldConfig
from nextbest.sim.journey import CONTACT_POLICY, JOURNEY_SPEC, SCRIPT_SPEC
from nextbest.sim.population import Population
from nextbest.sim.simulate import ArmRecord, Run, simulate

SERVICE_WORLD = WorldConfig(customers=100, days=28)
SERVICE_POLICIES = {"vw-default": DEFAULT_POLICY, "vw-squarecb": "vw:--cb_explore_adf --squarecb -q ::"}
LONG_WORLD = WorldConfig(customers=500, days=60)
# The default policy until SquareCB and the full-name interactions replaced it: the baseline of the README's figures.
PREVIOUS_DEFAULT_POLICY = "vw:--cb_explore_adf --epsilon 0.05 -q ::"
LONG_POLICIES = {
    "journey": JOURNEY_SPEC,
    "random": "random",
    "vw-default": DEFAULT_POLICY,
    "vw-epsilon": PREVIOUS_DEFAULT_POLICY,
    "vw-squarecb": "vw:--cb_explore_adf --squarecb -q ::",
    "vw-squarecb-g1000": "vw:--cb_explore_adf --squarecb --gamma_scale 1000 -q ::",
}
SERVICE_TARGET = 0.97
ORACLE_TARGET = 0.9
HISTORY_WORLD = WorldConfig(customers=150, days=30)
HISTORY_SEEDS = 3
CALLER, SUBJECTS, JOURNEY_RULE = "vw-default-caller", "vw-default-subjects", "journey-contact-rule"


def history_loops(policy: str = DEFAULT_POLICY) -> dict[str, Loop]:
    """Part (c)'s loops: `policy` with the caller's history and through subject ids, and the journey."""
    return {
        CALLER: Loop(policy),
        SUBJECTS: Loop(policy, subjects=True),
        JOURNEY_RULE: Loop(SCRIPT_SPEC, subjects=True, contact_policy=CONTACT_POLICY),
    }


BATCHES = 20  # per world, for the intervals: decisions of one run correlate (same customers, same model versions)


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


def _interval(per_world: list[np.ndarray]) -> dict[str, float]:
    """The mean of per-decision differences pooled over worlds, with a 95% interval from the means of BATCHES
    contiguous batches per world."""
    means = np.array([b.mean() for d in per_world for b in np.array_split(d, BATCHES)])
    half = scipy.stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / math.sqrt(len(means))
    mean = float(np.concatenate(per_world).mean())
    return {"difference": mean, "ci_low": mean - half, "ci_high": mean + half}


def history(
    seed: int, seeds: int = HISTORY_SEEDS, world: WorldConfig = HISTORY_WORLD, policy: str = DEFAULT_POLICY
) -> dict[str, Any]:
    """Part (c): `history_loops(policy)` and the oracle through the service over `seeds` worlds of `world` from
    `seed`."""
    loops = history_loops(policy)
    expected: dict[str, list[np.ndarray]] = {name: [] for name in (*loops, ORACLE)}
    tails: dict[str, list[np.ndarray]] = {name: [] for name in expected}
    for world_seed in range(seed, seed + seeds):
        run, _ = through_service(Population(world, world_seed), loops)
        since = report.last_fifth(run)
        for name in expected:
            arm = run.arm(name)
            expected[name].append(np.asarray(arm.expected))
            tails[name].append(np.asarray(arm.expected)[np.asarray(arm.time) >= since])

    def of_oracle(values: dict[str, list[np.ndarray]], name: str) -> float:
        return float(np.concatenate(values[name]).mean() / np.concatenate(values[ORACLE]).mean())

    def difference(a: str, b: str) -> dict[str, float]:
        return _interval([x - y for x, y in zip(expected[a], expected[b], strict=True)])

    return {
        "seeds": list(range(seed, seed + seeds)),
        "policy": policy,
        "world": {"customers": world.customers, "days": world.days},
        "decisions_per_world": [len(e) for e in expected[ORACLE]],
        "of_oracle": {n: {"all": of_oracle(expected, n), "last_fifth": of_oracle(tails, n)} for n in loops},
        "subjects_vs_journey": difference(SUBJECTS, JOURNEY_RULE),
        "caller_vs_journey": difference(CALLER, JOURNEY_RULE),
        "subjects_vs_caller": difference(SUBJECTS, CALLER),
    }


def _print_history(c: dict[str, Any]) -> None:
    print(
        f"(c) history kept by the service vs by the caller, through the service, worlds {c['seeds']} "
        f"({c['world']['customers']} customers, {c['world']['days']:g} days; {c['seconds']:.0f} s), "
        f"policy {c['policy']!r}, share of the oracle:"
    )
    for name, share in c["of_oracle"].items():
        print(f"  {name:22} {share['all']:.1%} (last fifth {share['last_fifth']:.1%})")
    print("  difference of expected reward per decision, 95% interval:")
    for key in ("subjects_vs_journey", "caller_vs_journey", "subjects_vs_caller"):
        d = c[key]
        print(f"  {key:22} {d['difference']:+.4f} ({d['ci_low']:+.4f} to {d['ci_high']:+.4f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("service", "long", "history"), help="run one part only")
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
    parser.add_argument(
        "--history-policy",
        default=DEFAULT_POLICY,
        metavar="SPEC",
        help="the policy of part (c)'s two default arms (default: the server's default, %(default)r)",
    )
    parser.add_argument("--seeds", type=int, default=HISTORY_SEEDS, help="worlds of part (c) (default: %(default)s)")
    parser.add_argument("--json", default="nextbest-learning.json", help="results (default: %(default)s)")
    parser.add_argument("--plot", default="nextbest-learning.png", help="learning curves of (b) (default: %(default)s)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"seed": args.seed}
    if args.only in (None, "service"):
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
    if args.only in (None, "long"):
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
    if args.only in (None, "history"):
        started = time.monotonic()
        results["history"] = c = history(args.seed, args.seeds, policy=args.history_policy)
        c["seconds"] = round(time.monotonic() - started, 1)
        _print_history(c)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results in {args.json}" + (f", curves in {args.plot}" if args.only in (None, "long") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
