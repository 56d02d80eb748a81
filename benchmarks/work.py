"""What a decision at the work limit costs: the figures of the README's "Work per decision".

    python -m benchmarks.work                       # the default policy, linucb and lints (about 30 s)
    python -m benchmarks.work "vw:--cb_explore_adf --squarecb --interactions :::"

For each spec and a few numbers of actions, the widest context the limit
(`Limits().max_generated_features`) accepts is found, then the policy's pmf
and one learning step are timed in-process (best of 3).
"""

from __future__ import annotations

import sys
import time

from nextbest import policies
from nextbest.client import action
from nextbest.policies.featurize import Namespace
from nextbest.server.config import DEFAULT_POLICY, Limits

DEFAULT_SPECS = (DEFAULT_POLICY, "linucb", "lints")
ACTIONS = (2, 32, 128)


def _example(context: int, actions: int) -> policies.Example:
    tokens = [f"t{i}" for i in range(context)]
    return policies.Example({"u": Namespace({}, {}, tokens)}, [action(f"a{i}") for i in range(actions)])


def widest_context(policy: policies.Policy, actions: int, limit: int, most: int = 32 * 1024) -> int:
    """The most context features (one namespace) a decision among `actions` may have within `limit`."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if policy.work(_example(middle, actions)) <= limit else (low, middle - 1)
    return low


def measure(spec: str, actions: int, limit: int) -> str:
    policy = policies.create(spec)
    context = widest_context(policy, actions, limit)
    rank = learn = float("inf")
    for _ in range(3):
        example = _example(context, actions)
        started = time.perf_counter()
        pmf = policy.pmf(example, "e")
        rank = min(rank, time.perf_counter() - started)
        started = time.perf_counter()
        policy.learn([policies.LearnEvent(example, 0, float(pmf[0]), 1.0)])
        learn = min(learn, time.perf_counter() - started)
    work = policy.work(_example(context, actions))
    return (
        f"{spec:50.50s} {actions:4d} actions, {context:6d} context features: {work:>10,} generated, "
        f"rank {rank * 1000:6.1f} ms, learn {learn * 1000:6.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    specs = (argv if argv is not None else sys.argv[1:]) or DEFAULT_SPECS
    limit = Limits().max_generated_features
    for spec in specs:
        for actions in ACTIONS:
            print(measure(spec, actions, limit), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
