"""What interactions cost VW on `nextbest bench`'s payload: predict and learn per event, spec against spec.

    python -m benchmarks.interactions                     # SPECS, 3,000 events (about a minute on 2 cores)
    python -m benchmarks.interactions --events 1000 --spec="--cb_explore_adf -q ::" --spec="--cb_explore_adf -q a:"

Events: `--events` RankRequests of `nextbest.server.bench.load.rank_request` (3 context namespaces `user`,
`session`, `history` of 20 features; 10 actions with `action`, `channel` and `offer` of 5 features), featurized
as the service does, a seeded chosen action and reward. Every spec gets its own VW workspace; on each event
every spec predicts the unlabeled lines then learns the labeled ones, in a rotating order, and the thread's
CPU time of each call is summed per spec: load from other processes on a shared machine hits every spec
alike, so the ratios hold where absolute figures do not. VW's text parse of one event is timed apart (VW
parses the text again in each call). `features/action`: what VW generates per action (its own count,
shared features included once per action), for the first event.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time

import vowpalwabbit

from nextbest.policies.featurize import Example
from nextbest.server.bench.load import rank_request

_FULL = "--experimental_full_name_interactions"
SPECS = (
    "--cb_explore_adf --epsilon 0.05 -q ::",
    "--cb_explore_adf --epsilon 0.05 -q a: -q c:",
    f"--cb_explore_adf --epsilon 0.05 {_FULL} action|: {_FULL} channel|:",
    "--cb_explore_adf --epsilon 0.05",
    "--cb_explore_adf --squarecb -q ::",
    "--cb_explore_adf --squarecb -q a: -q c:",
    "--cb_explore_adf --squarecb -q a: -q c: -q o:",
    f"--cb_explore_adf --squarecb {_FULL} action|: {_FULL} channel|:",
    f"--cb_explore_adf --squarecb {_FULL} action|: {_FULL} channel|: {_FULL} offer|:",
)

Lines = list[str]


def events(count: int, seed: int) -> list[tuple[Lines, Lines]]:
    """(unlabeled, labeled) VW lines of `count` bench requests."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        request = rank_request(rng)
        example = Example(request.context, request.actions)
        chosen = rng.randrange(len(example))
        out.append((example.vw_lines(), example.vw_labeled_lines(chosen, -float(rng.random() < 0.3), 0.1)))
    return out


def _workspace(args: str) -> vowpalwabbit.Workspace:
    return vowpalwabbit.Workspace(arg_list=[*shlex.split(args), "--quiet"])


def generated(args: str, lines: Lines) -> float:
    """VW's count of generated features per action for one example."""
    workspace = _workspace(args)
    parsed = workspace.parse(lines)
    workspace.predict(parsed)
    actions = parsed[1:] if lines[0].startswith("shared") else parsed
    shared = parsed[0].get_feature_number() - 1 if lines[0].startswith("shared") else 0  # its constant
    count = sum(e.get_feature_number() for e in actions) / len(actions) + shared
    workspace.finish_example(parsed)
    workspace.finish()
    return count


def measure(specs: list[str], data: list[tuple[Lines, Lines]]) -> dict[str, dict[str, float]]:
    """CPU µs per event of predict and learn per spec, and of VW's text parse of one event (key "")."""
    workspaces = [_workspace(args) for args in specs]
    predict, learn = [0.0] * len(specs), [0.0] * len(specs)
    parse = 0.0
    clock = time.thread_time
    for i, (unlabeled, labeled) in enumerate(data):
        for k in [(i + j) % len(specs) for j in range(len(specs))]:
            started = clock()
            workspaces[k].predict(unlabeled)
            predicted = clock()
            workspaces[k].learn(labeled)
            predict[k] += predicted - started
            learn[k] += clock() - predicted
        started = clock()
        workspaces[0].finish_example(workspaces[0].parse(labeled))
        parse += clock() - started
    for workspace in workspaces:
        workspace.finish()
    n = len(data) / 1e6
    out = {args: {"predict": predict[k] / n, "learn": learn[k] / n} for k, args in enumerate(specs)}
    out[""] = {"parse": parse / n}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interactions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", action="append", help="VW arguments, repeatable; the first is the reference")
    parser.add_argument("--events", type=int, default=3000, help="events (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    specs = args.spec or list(SPECS)
    data = events(args.events, args.seed)
    figures = measure(specs, data)
    base = figures[specs[0]]["predict"] + figures[specs[0]]["learn"]
    print(f"{args.events:,} events; CPU µs per event; VW's text parse of one event: {figures['']['parse']:.0f} µs")
    print(f"{'features/action':>16}{'predict':>9}{'learn':>9}{'both':>9}{'1st/this':>10}  VW arguments")
    for spec in specs:
        f = figures[spec]
        both = f["predict"] + f["learn"]
        print(
            f"{generated(spec, data[0][0]):>16,.0f}{f['predict']:>9.0f}{f['learn']:>9.0f}{both:>9.0f}"
            f"{base / both:>9.2f}x  {spec}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
