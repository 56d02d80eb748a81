"""`nextbest demo`: bandits against a scripted customer journey on a simulated world, through a real service."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time

DESCRIPTION = """\
Start a nextbest service on a temporary store and run the pinball world through it: simulated
customers with hidden tastes, fatigue and drift, who answer each contact with clicks soon and
purchases later (or never). Four loops decide side by side for the same customers at the same
moments: the scripted journey (a rules: policy), random, the default VW policy and VW with
SquareCB exploration and pairwise interactions; an oracle that knows every customer's taste runs
alongside. Then print the comparison, and write the learning curves (PNG) and the figures (JSON).
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
        "--plot", metavar="FILE", default="nextbest-demo.png", help="PNG of the learning curves (default: %(default)s)"
    )
    demo.add_argument(
        "--json", metavar="FILE", default="nextbest-demo.json", help="the figures as JSON (default: %(default)s)"
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nextbest.sim import report
    from nextbest.sim.compare import DEMO_POLICIES, demo_config, through_service
    from nextbest.sim.population import Population
    from nextbest.sim.simulate import Run

    population = Population(demo_config(args.seconds), args.seed)
    config = population.config
    print(
        f"pinball world (seed {args.seed}): {config.customers} customers over {config.days:g} days, "
        f"{len(population)} occasions; loops {', '.join(DEMO_POLICIES)}, and the oracle",
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
    result, stats = through_service(population, DEMO_POLICIES, progress=progress)
    elapsed = time.monotonic() - started
    if interactive:
        print(file=sys.stderr)
    print(f"\n{report.table(result)}\n")
    print("the service's own count per loop (GetStats at the end):")
    for name, s in stats.items():
        print(
            f"  {name:12} {s.decisions} decisions logged, {s.rewards} rewards, {s.joined} joined, "
            f"model version {s.model_version}"
        )
    report.plot(result, args.plot, f"pinball world, seed {args.seed}: {len(population)} decisions per policy")
    with open(args.json, "w") as f:
        json.dump(report.document(result, seconds=round(elapsed, 1), policies=DEMO_POLICIES), f, indent=1)
    print(f"\n{elapsed:.0f} s; learning curves in {args.plot}, figures in {args.json}")
    return 0
