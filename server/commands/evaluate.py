"""`nextbest evaluate`: estimate offline how candidate policies would have done on logged events."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from typing import TextIO


def add(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="off-policy evaluation of candidate policies on DSJSON logs",
        description="Replay candidate policies through logged events (learning policies learn as they go, "
        "each event scored before the policy learns from it) and estimate each one's average reward with "
        "IPS, SNIPS, clipped IPS, DM and DR, with intervals. The logged policy, 'baseline' and 'random' are "
        "always reported. Prints a table; --json and --plot write the report. A CCB log (VW's --ccb_explore_adf "
        "DSJSON, with _slots and _outcomes) is estimated per slot and in total; vw:--ccb_explore_adf candidates "
        "replay as CCB, other specs as one independent single-slot policy per slot.",
    )
    evaluate.add_argument(
        "--log", action="append", required=True, metavar="FILE", help="a DSJSON log (repeatable; read in order)"
    )
    evaluate.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="a candidate policy spec, as for SetPolicy: vw:…, random, baseline, fixed:…, rules:…, linucb:…, "
        "lints:…, python:… (repeatable)",
    )
    evaluate.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    evaluate.add_argument("--plot", metavar="OUT.png", help="write a PNG: estimates with intervals, value over time")
    evaluate.add_argument(
        "--interval", default="gaussian", help="gaussian (default), clopper-pearson (rewards in [0, 1]) or bootstrap"
    )
    evaluate.add_argument("--alpha", type=float, default=0.05, help="1 − the intervals' level (default: 0.05)")
    evaluate.add_argument("--max-weight", type=float, default=100.0, help="weight clip of clipped IPS (default: 100)")
    evaluate.add_argument("--folds", type=int, default=5, help="cross-fitting folds of DM/DR's reward model")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap (default: 0)")
    evaluate.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes replaying policies (default: the cores)"
    )
    evaluate.add_argument(
        "--importance",
        action="store_true",
        help="replay the best candidate with each context and action namespace left out; report the drop in value",
    )
    evaluate.add_argument(
        "--policy-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="allow `python:MODULE:Class` policy specs from this module (repeatable)",
    )
    search = evaluate.add_argument_group(
        "policy search", "--search adds a grid of vw: candidates: every exploration × interactions × rate × cb_type."
    )
    search.add_argument("--search", action="store_true", help="evaluate the grid; print the best spec for SetPolicy")
    search.add_argument(
        "--explore",
        action="append",
        metavar="ARGS",
        help="VW exploration arguments, written --explore='--squarecb' (repeatable; "
        "default: --epsilon 0.05, --squarecb, --softmax --lambda 10)",
    )
    search.add_argument(
        "--interactions", action="append", metavar="Q", help="a -q value, or none (repeatable; default: :: and none)"
    )
    search.add_argument(
        "--learning-rate", action="append", type=float, metavar="L", help="-l (repeatable; default: 0.1, 0.5, 1)"
    )
    search.add_argument("--cb-type", action="append", metavar="T", help="--cb_type (repeatable; default: ips, dm, mtr)")
    evaluate.set_defaults(run=run)


class _Progress:
    """Progress on a stream: a bar redrawn in place on a terminal, a line every 10% otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total
        step = percent if self._tty else percent // 10 * 10
        if step == self._shown:
            return
        self._shown = step
        text = f"evaluating [{'#' * (percent // 5):<20}] {percent:3d}% ({done:,} of {total:,} event replays)"
        end = "\n" if not self._tty or done >= total else ""
        print(("\r" if self._tty else "") + text, end=end, file=self._stream, flush=True)


def run(args: argparse.Namespace) -> int:
    from nextbest import policies
    from nextbest.policies.ope import dsjson
    from nextbest.policies.ope.report import evaluate, format_report, plot, search_grid

    def fail(message: str) -> int:
        print(f"nextbest evaluate: {message}", file=sys.stderr)
        return 2

    try:
        policies.allow_python_modules(args.policy_module)
        if dsjson.is_multi_slot(args.log[0]):
            return _run_multi_slot(args)
        specs = list(args.policy)
        if args.search:
            grid = {
                "explorations": args.explore,
                "interactions": [q if q != "none" else "" for q in args.interactions or []] or None,
                "learning_rates": args.learning_rate,
                "cb_types": args.cb_type,
            }
            found, refused = search_grid(**{k: v for k, v in grid.items() if v})
            if refused:
                spec, reason = refused[0]
                print(f"search: skipped {len(refused)} combinations VW refuses, e.g. {spec}: {reason}", file=sys.stderr)
            specs += found
        report = evaluate(
            itertools.chain.from_iterable(dsjson.read(path) for path in args.log),
            specs,
            interval=args.interval,
            alpha=args.alpha,
            max_weight=args.max_weight,
            folds=args.folds,
            seed=args.seed,
            importance=args.importance,
            jobs=args.jobs,
            progress=_Progress(sys.stderr),
        )
    except (ValueError, OSError) as e:
        return fail(str(e))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            f.write(report.to_json(indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0


def _run_multi_slot(args: argparse.Namespace) -> int:
    """`run` on CCB logs: the per-slot report (`policies.ope.multislot`)."""
    from nextbest.policies.ope import dsjson, multislot

    if args.search or args.importance:
        raise ValueError("--search and --importance work on single-slot logs only, not on CCB (multi-slot) logs")
    report = multislot.evaluate(
        itertools.chain.from_iterable(dsjson.read_multi_slot(path) for path in args.log),
        args.policy,
        interval=args.interval,
        alpha=args.alpha,
        max_weight=args.max_weight,
        folds=args.folds,
        seed=args.seed,
        jobs=args.jobs,
        progress=_Progress(sys.stderr),
    )
    print(multislot.format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            f.write(report.to_json(indent=2))
    if args.plot:
        multislot.plot(report, args.plot)
    return 0
