"""`nextbest demo`: bandits against a scripted customer journey on a simulated world, through a real service."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time

DESCRIPTION = """\
Start a nextbest service on a temporary store and run the pinball world through it: simulated
customers with hidden tastes, fatigue and drift, who answer each contact with clicks soon and
purchases later (or never). Four loops decide side by side for the same customers at the same
moments: the scripted journey (a rules: policy), random, the default VW policy and VW with
SquareCB exploration and pairwise interactions; an oracle that knows every customer's taste runs
alongside. Every Rank names its customer (a subject id) and sends only what the caller knows of
them now: the service keeps the contact history and adds its history features. The journey's
weekly cap is a contact rule of the service; a tenth of the default policy's customers stay on
the journey (its holdout). Then print the comparison and the lift over the holdout, and write
the learning curves (PNG) and the figures (JSON).

With --slots, the multi-slot world instead: a weekly email with a lead and a secondary offer, filled by
one multi-slot loop (RankMultiSlot, VW's conditional contextual bandits), by two independent
single-slot loops, and by the marketers' scripted send, on --seeds worlds (--seconds is shared by
them); the comparison says by how much the multi-slot loop beats each, paired by seed, with a 95%
interval over the seeds.
"""


def add(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="watch bandits learn against a scripted journey on a simulated world",
        description=DESCRIPTION,
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="about how long to run (default: 60); sets the number of simulated customers",
    )
    demo.add_argument("--seed", type=int, default=1, help="the world's seed (default: 1)")
    demo.add_argument(
        "--slots", action="store_true", help="run the multi-slot world (a lead and a secondary offer) instead"
    )
    demo.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="with --slots: run the worlds of this many seeds from --seed (default: 1; 2 or more give an interval)",
    )
    demo.add_argument(
        "--plot", metavar="FILE", default="nextbest-demo.png", help="PNG of the learning curves (default: %(default)s)"
    )
    demo.add_argument(
        "--json", metavar="FILE", default="nextbest-demo.json", help="the figures as JSON (default: %(default)s)"
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.slots:
        return run_slots(args)
    from nextbest.sim import report
    from nextbest.sim.compare import DEMO_LOOPS, demo_config, through_service
    from nextbest.sim.journey import CONTACT_POLICY
    from nextbest.sim.population import Population
    from nextbest.sim.simulate import Run

    population = Population(demo_config(args.seconds), args.seed)
    config = population.config
    print(
        f"pinball world (seed {args.seed}): {config.customers} customers over {config.days:g} days, "
        f"{len(population)} occasions; loops {', '.join(DEMO_LOOPS)}, and the oracle\n"
        f"each Rank names its customer (subject id <loop>/<customer>); the service keeps their history\n"
        f"the journey's weekly cap, as the contact policy of its store: {CONTACT_POLICY}",
        flush=True,
    )
    interactive = sys.stderr.isatty()
    width = shutil.get_terminal_size().columns - 1
    shown = [0.0]

    def progress(run: Run, done: int, total: int) -> None:
        if interactive:  # one line, rewritten in place
            line = report.status(run, done, total)[:width].ljust(width)
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif done / total >= shown[0] + 0.1 or done == total:
            shown[0] = done / total
            print(report.status(run, done, total), file=sys.stderr, flush=True)

    server_log = logging.getLogger("nextbest")
    server_log.setLevel(max(server_log.getEffectiveLevel(), logging.WARNING))  # model publications are noise here
    started = time.monotonic()
    result, stats = through_service(population, DEMO_LOOPS, progress=progress)
    elapsed = time.monotonic() - started
    if interactive:
        print(file=sys.stderr)
    print(f"\n{report.table(result)}\n")
    print("the service's own count per loop (GetStats at the end):")
    for name, s in stats.items():
        removed = "".join(f"; {r.suppressed} candidates removed by contact rule {r.rule}" for r in s.suppressed)
        print(
            f"  {name:12} {s.decisions} decisions logged, {s.rewards} rewards, {s.joined} joined, "
            f"model version {s.model_version}{removed}"
        )
    for name, s in stats.items():
        if s.HasField("lift"):
            lift = s.lift
            interval = (
                f"95% interval {lift.ci_low:+.3f} to {lift.ci_high:+.3f}"
                if math.isfinite(lift.ci_low)
                else "too few customers for an interval"
            )
            print(
                f"\n{name} against its holdout (the journey): {lift.treatment:.3f} vs {lift.holdout:.3f} reward per "
                f"decision ({lift.treatment_subjects} vs {lift.holdout_subjects} customers), lift "
                f"{lift.difference:+.3f} ({interval})"
            )
    report.plot(result, args.plot, f"pinball world, seed {args.seed}: {len(population)} decisions per policy")
    with open(args.json, "w") as f:
        policies = {a.name: a.spec for a in result.arms if a.name in DEMO_LOOPS}
        json.dump(report.document(result, seconds=round(elapsed, 1), policies=policies), f, indent=1)
    print(f"\n{elapsed:.0f} s; learning curves in {args.plot}, figures in {args.json}")
    return 0


def run_slots(args: argparse.Namespace) -> int:
    from nextbest.sim import slots

    if args.seeds < 1:
        print(f"--seeds must be at least 1, got {args.seeds}", file=sys.stderr)
        return 2
    seeds = range(args.seed, args.seed + args.seeds)
    sends = max(50, round(args.seconds * slots.SENDS_PER_SECOND / len(seeds)))
    print(f"multi-slot world: {sends} sends per seed, seeds {list(seeds)}; arms {', '.join(slots.ARMS)}", flush=True)
    server_log = logging.getLogger("nextbest")
    server_log.setLevel(max(server_log.getEffectiveLevel(), logging.WARNING))
    started = time.monotonic()
    runs = []
    for seed in seeds:
        runs.append(slots.simulate(sends, seed))
        print(f"seed {seed} done ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    whole, last = slots.compare(runs), slots.compare(runs, since=sends // 2)
    print(f"\nexpected clicks per send (both slots), every send:\n{slots.table(whole, seeds)}")
    print(f"\nthe last half:\n{slots.table(last, seeds)}")
    with open(args.json, "w") as f:
        document = {"sends": sends, "seeds": list(seeds), "ccb_policy": slots.CCB_POLICY}
        json.dump({**document, "all": [vars(c) for c in whole], "last_half": [vars(c) for c in last]}, f, indent=1)
    print(f"\n{elapsed:.0f} s; figures in {args.json}")
    return 0
